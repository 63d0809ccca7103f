"""UAT without I/O: the go/no-go verdict over trading days, the day plot, judging the desk session's evidence,
and the report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ibstream import market_hours
from tooling.uat.catalogue import BY_ID, RISK_CHECKS, RISK_CHECKS_NOT_DRILLED, SCENARIOS, SESSIONS
from tooling.uat.model import Evidence, Judge, summarise
from tooling.uat.plot import day_data, render_day_svg
from tooling.uat.report import render_html, render_markdown
from tooling.uat.sessions import DESK_PLAN, RATE_BURST, _judge_desk, at_ibsim, positions_without_stops
from tooling.uat.verdict import (
    FULL,
    GATEWAY,
    OUTSIDE,
    REHEARSAL,
    SessionRecord,
    coverage,
    market_date,
    minutes_to_close,
    previous_trading_day,
    refuse_sign_off,
    verdict,
)


def _gw(session_id: str, day: str, passed: bool = True, *, kind: str = GATEWAY, cover: str = FULL) -> SessionRecord:
    failed = () if passed else ("risk.max_position",)
    return SessionRecord(session_id, kind, dt.date.fromisoformat(day), cover, passed, failed)


# Fri 9 Jan 2026, (weekend), Mon 12 … Fri 16, (MLK day Mon 19 is an exchange holiday), Tue 20, Wed 21.
WEEK = ["2026-01-12", "2026-01-13", "2026-01-14", "2026-01-15", "2026-01-16"]


def test_go_needs_consecutive_trading_days_across_a_weekend_and_a_holiday() -> None:
    across = [_gw("fri9", "2026-01-09"), _gw("mon12", "2026-01-12"), _gw("fri16", "2026-01-16")]
    across += [_gw("tue20", "2026-01-20"), _gw("wed21", "2026-01-21")]
    # Fri 16 → Tue 20 skips the weekend and the holiday; Fri 9 → Mon 12 skips a weekend. But 13-15 are missing.
    result = verdict(across, 3)
    assert result.run_days == (dt.date(2026, 1, 21), dt.date(2026, 1, 20), dt.date(2026, 1, 16))
    assert result.go and result.counted_sessions == ("fri16", "tue20", "wed21")
    assert "2026-01-15" in result.broken_by and "no gateway session" in result.broken_by
    assert not verdict(across, 4).go
    assert "needs 1 more" in verdict(across, 4).render()
    five = [_gw(f"s{i}", day) for i, day in enumerate(WEEK)]
    assert verdict(five, 5).go and verdict(five, 5).consecutive_days == 5
    assert not verdict([], 1).go and "no gateway session" in verdict([], 1).broken_by


def test_a_rehearsal_never_counts_and_is_reported_separately() -> None:
    rehearsals = [_gw(f"r{i}", day, kind=REHEARSAL) for i, day in enumerate(WEEK)]
    result = verdict(rehearsals, 1)
    assert not result.go and result.consecutive_days == 0 and result.gateway_sessions == 0
    assert result.rehearsals.total == 5 and result.rehearsals.passed == 5
    assert "rehearsals on ibsim (never counted): 5 of 5 passed" in result.render()
    # A failed rehearsal neither breaks a gateway run nor counts; its failures are shown.
    failing = SessionRecord("rbad", REHEARSAL, dt.date(2026, 1, 16), FULL, False, ("risk.daily_loss",))
    mixed = verdict([_gw("g", "2026-01-16"), failing], 1)
    assert mixed.go and mixed.counted_sessions == ("g",)
    assert "risk.daily_loss" in mixed.render()


def test_two_sessions_on_one_day_count_once() -> None:
    twice = [_gw("a", "2026-01-15"), _gw("b", "2026-01-15"), _gw("c", "2026-01-16")]
    result = verdict(twice, 2)
    assert result.go and result.consecutive_days == 2
    assert result.counted_sessions == ("a", "b", "c")
    assert not verdict(twice, 3).go


def test_a_failed_day_breaks_the_run_even_after_a_rerun() -> None:
    days = [_gw(f"s{i}", day) for i, day in enumerate(WEEK)]
    broken = [*days, _gw("fail14", "2026-01-14", passed=False)]
    result = verdict(broken, 3)
    assert not result.go and result.run_days == (dt.date(2026, 1, 16), dt.date(2026, 1, 15))
    assert "2026-01-14 failed" in result.broken_by and "risk.max_position" in result.render()
    # A failing newest day: no run at all.
    assert verdict([*days, _gw("late", "2026-01-16", passed=False)], 1).consecutive_days == 0


def test_a_session_off_the_calendar_or_outside_the_hours_is_listed_not_counted() -> None:
    saturday = _gw("sat", "2026-01-17")
    evening = _gw("eve", "2026-01-16", cover=OUTSIDE)
    result = verdict([saturday, evening, _gw("thu", "2026-01-15")], 1)
    assert result.go and result.run_days == (dt.date(2026, 1, 15),)
    assert {r.session_id for r in result.not_counted} == {"sat", "eve"}


def test_coverage_and_market_date_follow_the_exchange_calendar() -> None:
    ny = market_hours.EXCHANGE_TZ
    open_, close = dt.datetime(2026, 1, 16, 9, 0, tzinfo=ny), dt.datetime(2026, 1, 16, 16, 5, tzinfo=ny)
    assert coverage(open_, close) == FULL
    assert coverage(open_, dt.datetime(2026, 1, 16, 10, 0, tzinfo=ny)) == "window 09:30-10:00"
    assert coverage(dt.datetime(2026, 1, 16, 17, 0, tzinfo=ny), dt.datetime(2026, 1, 16, 18, 0, tzinfo=ny)) == OUTSIDE
    assert coverage(dt.datetime(2026, 1, 19, 10, 0, tzinfo=ny), dt.datetime(2026, 1, 19, 11, 0, tzinfo=ny)) == OUTSIDE
    # 01:00 UTC on Saturday is still Friday evening in New York.
    assert market_date(dt.datetime(2026, 1, 17, 1, 0, tzinfo=dt.UTC)) == dt.date(2026, 1, 16)
    assert previous_trading_day(dt.date(2026, 1, 20)) == dt.date(2026, 1, 16)
    # --full-session: the minutes to today's close; after it, or on a holiday, none.
    assert minutes_to_close(dt.datetime(2026, 1, 16, 9, 0, tzinfo=ny)) == 420
    assert minutes_to_close(dt.datetime(2026, 11, 27, 12, 0, tzinfo=ny)) == 60  # the day after Thanksgiving: 13:00
    assert minutes_to_close(dt.datetime(2026, 1, 16, 16, 0, tzinfo=ny)) is None
    assert minutes_to_close(dt.datetime(2026, 1, 19, 10, 0, tzinfo=ny)) is None


def test_only_a_go_can_be_signed_off() -> None:
    no_go = verdict([_gw("a", "2026-01-16", passed=False)], 1)
    reason = refuse_sign_off(no_go)
    assert reason is not None and "NO-GO" in reason and "2026-01-16 failed" in reason
    assert refuse_sign_off(verdict([_gw("a", "2026-01-16")], 1)) is None


def test_the_day_plot_draws_prices_signals_fills_and_pnl() -> None:
    t0 = "2026-01-16T14:30:00+00:00"
    t1 = "2026-01-16T14:31:00+00:00"
    evidence = {
        "day_prices": Evidence(
            "p",
            "warehouse",
            "",
            ["symbol", "minute", "close"],
            [["AAPL", t0, 100.0], ["AAPL", t1, 101.0], ["MSFT", t0, 300.0]],
        ),
        "day_signals": Evidence("s", "warehouse", "", ["bar_start", "symbol", "side"], [[t0, "AAPL", "BUY"]]),
        "day_fills": Evidence(
            "f",
            "warehouse",
            "",
            ["exec_time", "symbol", "side", "price", "realized_pnl"],
            [[t1, "AAPL", "BUY", 101.0, 2.5]],
        ),
        "day_pnl": Evidence("a", "warehouse", "", ["time", "daily_pnl"], []),
    }
    data = day_data(evidence)
    assert data.pnl == [(dt.datetime.fromisoformat(t1), 2.5)]  # from realized P&L when the account has none
    svg = render_day_svg("main", data)
    assert svg.count("<polyline") == 3  # AAPL, MSFT, P&L
    assert svg.count("<polygon") == 1 and svg.count("<circle") == 1
    assert "AAPL BUY signal" in svg and "2 symbols, 1 signals, 1 fills" in svg
    # Account P&L within the bars' hours is plotted as it is; on another clock (ibsim's wall-clock account
    # updates against simulated bars) the fills' realized P&L is used.
    evidence["day_pnl"].rows = [[t1, -4.0], ["2026-01-17T05:00:00+00:00", -9.0]]
    assert day_data(evidence).pnl == [
        (dt.datetime.fromisoformat(t1), -4.0),
        (dt.datetime(2026, 1, 17, 5, tzinfo=dt.UTC), -9.0),
    ]
    evidence["day_pnl"].rows = [["2026-01-17T05:00:00+00:00", -9.0]]
    assert day_data(evidence).pnl == [(dt.datetime.fromisoformat(t1), 2.5)]
    empty = {name: Evidence(name, "warehouse", "", [], []) for name in evidence}
    assert "nothing to plot" in render_day_svg("gateway", day_data(empty))


def test_catalogue_covers_each_risk_check_once_and_every_session() -> None:
    assert {f"risk.{check}" for check in RISK_CHECKS} <= set(BY_ID)
    assert len(BY_ID) == len(SCENARIOS)
    assert {s.session for s in SCENARIOS} == set(SESSIONS)


def test_risk_checks_match_the_gate() -> None:
    from ibstream import risk
    from ibstream.contracts import OrderIntent
    from ibstream.contracts.enums import OrderType, Side

    # Every check of the gate reports its name; an intent with no quote makes each one produce a result.
    intent = OrderIntent(
        order_id="o",
        symbol="AAPL",
        side=Side.BUY,
        quantity=1,
        order_type=OrderType.MKT,
        requested_by="t",
        created_time=dt.datetime(2026, 1, 5, 15, tzinfo=dt.UTC),
    )
    view = risk.RiskView()
    decision = risk.decide(intent, view, risk.RiskLimits.from_settings(_settings()), intent.created_time)
    # Every check is either drilled by the desk session or listed, with its reason, as not drilled yet.
    assert {check.name for check in decision.checks} == set(RISK_CHECKS) | set(RISK_CHECKS_NOT_DRILLED)
    assert not set(RISK_CHECKS) & set(RISK_CHECKS_NOT_DRILLED)


def _settings() -> Any:
    from ibstream.config import load_settings

    return load_settings()


def _desk_evidence(broken: str | None = None) -> tuple[dict[str, Evidence], dict[str, Any]]:
    """What a good desk session records; ``broken`` names a check whose breach got through."""
    tags = [
        "max_order_notional",
        "stale_quote",
        "partial_fill",
        "max_position",
        "max_gross_exposure",
        "price_band",
        "stop_distance",
        "risk_per_trade",
        "conflicting_position",
        "broker_reject",
        "working_entry",
        "beyond_working",
        "reducing_add",
        "reducing_sell",
        "resting",
        "kill_switch",
        "trading_state",
        "fill",
        *RATE_BURST,
        "close",
        "daily_loss",
        "flatten_entry",
        "flatten",
        "buying_power",
        "after_broker_restart",
    ]
    orders = {tag: f"id-{tag}" for tag in tags}
    failing = {check: [check] for check in RISK_CHECKS if check != "order_rate"}
    failing[RATE_BURST[2]] = ["order_rate"]  # the burst's order risk saw sixth (partitions may reorder them)
    failing["after_broker_restart"] = ["daily_loss"]
    failing["reducing_add"] = ["trading_state"]
    failing["beyond_working"] = ["max_position"]
    if broken is not None:
        failing = {tag: [c for c in checks if c != broken] for tag, checks in failing.items()}
    decisions = [[orders[tag], not failing.get(tag), failing.get(tag, [])] for tag in tags]
    status = {
        "partial_fill": "filled",
        "broker_reject": "rejected",
        "resting": "cancelled",
        "working_entry": "cancelled",
        "fill": "filled",
        "close": "filled",
        "flatten": "filled",
    }
    final = [
        [orders[t], s, 0.0, ["partially_filled", s] if t == "partial_fill" else [s], 201 if s == "rejected" else None]
        for t, s in status.items()
    ]
    executions = [
        [orders["partial_fill"], 3, 30.0, None],
        [orders["fill"], 1, 5.0, None],
        [orders["close"], 1, 5.0, -1.05],
    ]
    rejections: dict[str, int] = {}
    for checks in failing.values():
        for check in checks:
            rejections[check] = rejections.get(check, 0) + 1
    ev = {
        "decisions": Evidence("decisions", "warehouse", "…", ["order_id", "approved", "failed_checks"], decisions),
        "final_status": Evidence(
            "final_status", "warehouse", "…", ["order_id", "status", "filled", "statuses", "broker_code"], final
        ),
        "executions": Evidence(
            "executions", "warehouse", "…", ["order_id", "executions", "shares", "realized"], executions
        ),
        "rejections_by_check": Evidence(
            "r", "warehouse", "…", ["check_name", "rejections"], [[k, v] for k, v in sorted(rejections.items())]
        ),
        "stale_alerts": Evidence(
            "s", "warehouse", "…", ["symbol", "state", "n"], [["QQQ", "firing", 1], ["QQQ", "resolved", 1]]
        ),
        "kill_commands": Evidence("k", "warehouse", "…", ["command"], [["kill_switch_on"], ["kill_switch_off"]]),
        "bars_after_broker_restart": Evidence(
            "b", "warehouse", "…", ["symbol", "n"], [[s, 50] for s in DESK_PLAN.symbols]
        ),
        "dead_letters": Evidence("d", "warehouse", "…", ["count()"], [[0]]),
    }
    # At the kill switch: AAPL held from the partial fill, its stop kept working; the resting entry cancelled.
    after_kill_switch = {
        "positions": [{"symbol": "AAPL", "quantity": 30}],
        "orders": [
            {"request": {"symbol": "AAPL", "order_type": "STP"}, "status": "PreSubmitted"},
            {"request": {"symbol": "MSFT", "order_type": "STP"}, "status": "Cancelled"},
        ],
    }
    marks = {
        "desk": orders,
        "orders": [{"order_ref": orders["resting"], "status": "Cancelled"}],
        "after_kill_switch": after_kill_switch,
        "aapl_held_when_reducing": 30.0,
        "aapl_held_before_working": 30.0,
        "working_entry_at_ibsim": ["Cancelled", "Cancelled", "Cancelled"],
        "flatten_held_before": 30.0,
        "flatten_at_ibsim": (0.0, 0),
    }
    return ev, marks


def test_a_good_desk_session_passes_every_desk_scenario() -> None:
    ev, marks = _desk_evidence()
    results = _judge_desk(ev, marks, DESK_PLAN)
    assert {r.id for r in results} == {s.id for s in SCENARIOS if s.session == "desk"}
    assert [(r.id, r.failures) for r in results if not r.passed] == []


@pytest.mark.parametrize("broken", ["max_position", "order_rate", "daily_loss", "kill_switch", "trading_state"])
def test_a_check_that_never_fires_fails_its_own_scenario(broken: str) -> None:
    ev, marks = _desk_evidence(broken)
    results = {r.id: r for r in _judge_desk(ev, marks, DESK_PLAN)}
    assert not results[f"risk.{broken}"].passed
    assert any(f"`{broken}`" in failure for failure in results[f"risk.{broken}"].failures)
    others = {rid for rid, r in results.items() if not r.passed and rid.startswith("risk.")}
    # A max_position that never fires also lets the buy past the working order through.
    also = {"risk.working_orders_count"} if broken == "max_position" else set()
    assert others == {f"risk.{broken}"} | also


@pytest.mark.parametrize(
    ("marks", "failure"),
    [
        ({"flatten_at_ibsim": (10.0, 0)}, "ibsim still holds 10.0 QQQ"),
        ({"flatten_at_ibsim": (0.0, 2)}, "2 QQQ orders still working"),
        ({"flatten_held_before": 0.0}, "no QQQ position to flatten"),
    ],
)
def test_a_flatten_that_leaves_a_position_or_a_working_order_fails(marks: dict[str, Any], failure: str) -> None:
    ev, good = _desk_evidence()
    results = {r.id: r for r in _judge_desk(ev, {**good, **marks}, DESK_PLAN)}
    assert not results["control.flatten"].passed
    assert any(failure in f for f in results["control.flatten"].failures), results["control.flatten"].failures


def test_ibsim_answers_give_the_symbols_position_and_working_orders() -> None:
    positions = [{"symbol": "AAPL", "quantity": 0.0}, {"symbol": "MSFT", "quantity": 5.0}]
    orders = [
        {"request": {"symbol": "AAPL"}, "status": "Cancelled"},
        {"request": {"symbol": "AAPL"}, "status": "Filled"},
        {"request": {"symbol": "MSFT"}, "status": "Submitted"},
    ]
    assert at_ibsim(positions, orders, "AAPL") == (0.0, 0)
    assert at_ibsim(positions, orders, "MSFT") == (5.0, 1)


def test_a_kill_switch_that_cancels_a_filled_positions_stop_fails_its_scenario() -> None:
    ev, marks = _desk_evidence()
    marks["after_kill_switch"]["orders"][0]["status"] = "Cancelled"
    results = {r.id: r for r in _judge_desk(ev, marks, DESK_PLAN)}
    assert not results["control.kill_switch"].passed
    assert results["control.kill_switch"].figures["positions_without_a_working_stop"] == ["AAPL"]
    assert [rid for rid, r in results.items() if not r.passed] == ["control.kill_switch"]


def test_reducing_judges_the_sell_by_the_position_held_at_the_drill() -> None:
    ev, marks = _desk_evidence()
    assert {r.id: r.passed for r in _judge_desk(ev, marks, DESK_PLAN)}["control.reducing"]
    # AAPL flat at the drill (its stop closed it): the approved sell opened a short while reducing.
    marks["aapl_held_when_reducing"] = 0.0
    results = {r.id: r for r in _judge_desk(ev, marks, DESK_PLAN)}
    assert not results["control.reducing"].passed
    assert any("opening a short" in failure for failure in results["control.reducing"].failures)


def test_a_working_order_not_counted_fails_its_scenario() -> None:
    ev, marks = _desk_evidence()
    rows = ev["decisions"].rows
    ev["decisions"].rows[:] = [[r[0], True, []] if r[0] == "id-beyond_working" else r for r in rows]
    results = {r.id: r for r in _judge_desk(ev, marks, DESK_PLAN)}
    assert not results["risk.working_orders_count"].passed
    assert [rid for rid, r in results.items() if not r.passed] == ["risk.working_orders_count"]


def test_a_cancel_that_leaves_a_leg_working_at_ibsim_fails_its_scenario() -> None:
    ev, marks = _desk_evidence()
    marks["working_entry_at_ibsim"] = ["Cancelled", "PreSubmitted", "Cancelled"]
    results = {r.id: r for r in _judge_desk(ev, marks, DESK_PLAN)}
    assert [rid for rid, r in results.items() if not r.passed] == ["control.cancel_order"]


def test_report_shows_each_scenario_its_failures_and_the_evidence_sql() -> None:
    good, bad = Judge(BY_ID["feed.stale"]), Judge(BY_ID["risk.max_position"])
    bad.expect(False, "`max_position` did not fail")
    bad.attach(Evidence("decisions", "warehouse", "SELECT 1 FROM risk_decisions_v1", ["approved"], [[True]]))
    results = [good.result(), bad.result()]
    meta = {"session_id": "s1", "target": "ibsim", "started_at": "a", "finished_at": "b", "seconds": 1.0, "log": []}
    markdown, page = render_markdown(meta, results), render_html(meta, results)
    for text in (markdown, page):
        assert "feed.stale" in text and "risk.max_position" in text
        assert "did not fail" in text and "SELECT 1 FROM risk_decisions_v1" in text
    assert markdown.startswith("# UAT session s1: FAIL")
    assert summarise(results) == {"total": 2, "passed": 1, "failed": ["risk.max_position"], "skipped": []}


def test_positions_without_stops_names_a_held_symbol_whose_stop_is_not_working() -> None:
    def order(symbol: str, order_type: str, status: str) -> dict[str, object]:
        return {"request": {"symbol": symbol, "order_type": order_type}, "status": status}

    at_ibsim = {
        "positions": [
            {"symbol": "AAPL", "quantity": 30},
            {"symbol": "MSFT", "quantity": -5},
            {"symbol": "SPY", "quantity": 0},
        ],
        "orders": [
            order("AAPL", "STP", "PreSubmitted"),  # the filled entry's stop, kept
            order("MSFT", "STP", "Cancelled"),  # cancelled with its entry: MSFT is unprotected
            order("MSFT", "LMT", "Submitted"),  # a take-profit is no stop
            order("SPY", "STP", "Cancelled"),
        ],
    }
    held, unprotected = positions_without_stops(at_ibsim)
    assert held == {"AAPL": 30.0, "MSFT": -5.0}
    assert unprotected == ["MSFT"]
    assert positions_without_stops({}) == ({}, [])
