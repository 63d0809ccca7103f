"""Pure logic behind the console's routes: the risk pre-check (compared with the risk gate's own checks on the same
inputs), session P&L, Agent0's circuit, kill-switch state, feed staleness, bar buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.charts import BarPoint, Book, bucket, pnl_series
from api.pipeline import circuit_state, feed_health, kill_switch_states, trading_state_views
from api.precheck import PrecheckLimits, kill_switch_for, precheck_checks
from ibstream import risk  # the gate itself: tests may import any package; the api may not
from ibstream.config import load_settings
from ibstream.contracts import ControlCommand, Execution, OrchestrationRun, OrderIntent, Plan, Position, Quote
from ibstream.contracts.enums import (
    ControlCommandKind,
    ExecutionSource,
    MarketDataSource,
    OrderType,
    RunState,
    Side,
    TradingState,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SETTINGS = load_settings()


def _plan(**overrides: object) -> Plan:
    values: dict[str, object] = {
        "plan_id": "p",
        "side": Side.BUY,
        "quantity": 40,
        "order_type": OrderType.LMT,
        "limit_price": 100.0,
        "stop_loss": 99.0,
        "take_profit": 102.0,
        "rationale": "r",
    }
    values.update(overrides)
    return Plan.model_validate(values)


def _quote(age_seconds: float = 1.0, bid: float = 99.99, ask: float = 100.01) -> Quote:
    at = NOW - timedelta(seconds=age_seconds)
    return Quote(
        symbol="AAPL",
        con_id=1,
        bid=bid,
        ask=ask,
        last=100.0,
        event_time=at,
        ingest_time=at,
        source=MarketDataSource.SIM,
    )


def _kill(kind: ControlCommandKind, target: str = "global", minute: int = 0) -> ControlCommand:
    return ControlCommand(
        command_id=f"c{minute}{kind}",
        command=kind,
        target=target,
        reason="drill",
        actor="alice",
        parameters={},
        issued_time=NOW + timedelta(minutes=minute),
    )


CASES = {
    "within limits": (_plan(), _quote(), 0.0, None),
    "stop on the wrong side": (_plan(stop_loss=100.5), _quote(), 0.0, None),
    "stop too tight": (_plan(stop_loss=99.95), _quote(), 0.0, None),
    "stop too far": (_plan(stop_loss=80.0), _quote(), 0.0, None),
    "notional too large": (_plan(quantity=400), _quote(), 0.0, None),
    "loss at stop too large": (_plan(quantity=240, stop_loss=97.0), _quote(), 0.0, None),
    "position limit": (_plan(), _quote(), 990.0, None),
    "stale quote": (_plan(), _quote(age_seconds=60), 0.0, None),
    "no quote, limit order": (_plan(), None, 0.0, None),
    "no quote, market order": (_plan(order_type=OrderType.MKT, limit_price=None), None, 0.0, None),
    "market order": (_plan(order_type=OrderType.MKT, limit_price=None), _quote(), 0.0, None),
    "outside the price band": (_plan(limit_price=90.0, stop_loss=89.0), _quote(), 0.0, None),
    "sell": (_plan(side=Side.SELL, stop_loss=101.0, take_profit=98.0), _quote(), -20.0, None),
    "kill switch on": (_plan(), _quote(), 0.0, _kill(ControlCommandKind.KILL_SWITCH_ON)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_precheck_agrees_with_the_risk_gate(case: str) -> None:
    plan, quote, position, kill = CASES[case]
    ours = precheck_checks(
        plan,
        "AAPL",
        PrecheckLimits.from_settings(SETTINGS),
        quote=quote,
        position_quantity=position,
        kill_switch=kill,
        now=NOW,
    )
    view = risk.RiskView()
    if quote is not None:
        view.apply_quote(quote)
    if position:
        view.apply_position(
            Position(
                account="DU1",
                symbol="AAPL",
                con_id=1,
                quantity=position,
                avg_cost=100.0,
                source=ExecutionSource.LIVE,
                time=NOW,
            )
        )
    if kill is not None:
        view.apply_control(kill)
    intent = OrderIntent(
        order_id="o",
        symbol="AAPL",
        side=plan.side,
        quantity=plan.quantity,
        order_type=plan.order_type,
        limit_price=plan.limit_price,
        stop_price=plan.stop_price,
        stop_loss=plan.stop_loss,
        take_profit=plan.take_profit,
        requested_by="test",
        created_time=NOW,
    )
    gate = {
        check.name: check for check in risk.decide(intent, view, risk.RiskLimits.from_settings(SETTINGS), NOW).checks
    }
    assert ours, case
    for check in ours:
        theirs = gate[check.name]
        assert (check.passed, check.limit, check.reason) == (theirs.passed, theirs.limit, theirs.reason), check.name
        assert check.value == pytest.approx(theirs.value), check.name
    # Every check the gate runs is either pre-checked or named as deferred.
    from api.precheck import DEFERRED_CHECKS

    assert set(gate) == {c.name for c in ours} | set(DEFERRED_CHECKS)


def test_precheck_cases_cover_passes_and_failures() -> None:
    outcomes = {
        case: all(
            c.passed
            for c in precheck_checks(
                plan,
                "AAPL",
                PrecheckLimits.from_settings(SETTINGS),
                quote=q,
                position_quantity=p,
                kill_switch=k,
                now=NOW,
            )
        )
        for case, (plan, q, p, k) in CASES.items()
    }
    assert outcomes["within limits"] and outcomes["sell"] and outcomes["market order"]
    assert not outcomes["kill switch on"] and not outcomes["stale quote"] and not outcomes["notional too large"]


def test_kill_switch_state_is_keyed_as_the_gate_keys_it() -> None:
    on, off = ControlCommandKind.KILL_SWITCH_ON, ControlCommandKind.KILL_SWITCH_OFF
    sequences = [
        [_kill(on, "ALL", 0), _kill(off, "all", 1)],
        [_kill(on, "ALL", 0), _kill(off, "global", 1)],  # another spelling: the gate keeps "all" engaged
        [_kill(on, "MSFT", 0)],
        [_kill(on, "global", 0), _kill(on, "MSFT", 1), _kill(off, "MSFT", 2)],
    ]
    for commands in sequences:
        view = risk.RiskView()
        for command in commands:
            view.apply_control(command)
        for symbol in ("AAPL", "MSFT"):
            ours, theirs = kill_switch_for(symbol, commands), view.kill_switch_for(symbol)
            assert (ours is None) == (theirs is None), (commands, symbol)
        engaged = {s.target for s in kill_switch_states(commands) if s.engaged}
        assert engaged == set(view.kill_switches), commands


def _fill(n: int, side: Side, quantity: float, price: float, at: datetime, commission: float = 1.0) -> Execution:
    return Execution(
        exec_id=f"e{n}",
        order_id="o",
        symbol="AAPL",
        account="DU1",
        ib_order_id=1,
        perm_id=1,
        side=side,
        quantity=quantity,
        price=price,
        cumulative_quantity=quantity,
        avg_price=price,
        commission=commission,
        commission_currency="USD",
        source=ExecutionSource.LIVE,
        exec_time=at,
        ingest_time=at,
    )


def test_book_averages_cost_realizes_and_flips() -> None:
    book = Book()
    book.apply(Side.BUY, 10, 100.0, 1.0)
    book.apply(Side.BUY, 10, 102.0, 1.0)
    assert (book.quantity, book.avg_cost) == (20, 101.0)
    book.apply(Side.SELL, 25, 104.0, 1.0)  # closes 20 at +3, opens 5 short at 104
    assert book.realized == pytest.approx(60.0)
    assert (book.quantity, book.avg_cost) == (-5, 104.0)
    assert book.value(103.0) == pytest.approx(60.0 + 5.0 - 3.0)
    book.apply(Side.BUY, 5, 103.0, 0.0)
    assert (book.quantity, book.realized) == (0.0, pytest.approx(65.0))


def test_pnl_series_marks_the_open_position_at_each_close() -> None:
    start = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    closes = [100.0, 101.0, 103.0, 102.0]
    bars = [
        BarPoint(time=start + timedelta(seconds=5 * i), open=c, high=c, low=c, close=c, volume=1)
        for i, c in enumerate(closes)
    ]
    fills = [
        _fill(1, Side.BUY, 10, 100.0, start + timedelta(seconds=6)),
        _fill(2, Side.SELL, 10, 103.0, start + timedelta(seconds=12)),
    ]
    points, book = pnl_series(bars, fills, 5)
    assert [p.value for p in points] == [0.0, 10.0 - 1.0, 30.0 - 2.0, 30.0 - 2.0]
    assert (book.quantity, book.realized) == (0.0, 30.0)


def _run(state: RunState, seconds: int, reason: str | None = None) -> OrchestrationRun:
    return OrchestrationRun(
        run_id="r",
        signal_id="s",
        symbol="AAPL",
        state=state,
        actor="orchestration",
        attempt=1,
        reason=reason,
        time=NOW + timedelta(seconds=seconds),
    )


def test_circuit_state_follows_the_newest_plan_or_refusal() -> None:
    assert circuit_state([]).state == "unknown"
    refused = _run(RunState.FAILED, 10, "agent0 circuit open after 5 consecutive failures")
    assert circuit_state([_run(RunState.PLANNED, 0), refused]).state == "open"
    assert circuit_state([refused, _run(RunState.PLANNED, 20)]).state == "closed"
    # A failure for another cause says nothing about the breaker.
    assert circuit_state([_run(RunState.PLANNED, 0), _run(RunState.FAILED, 30, "agent0 timed out")]).state == "closed"


def test_feed_health_marks_stale_and_missing_symbols() -> None:
    rows = feed_health(
        ["AAPL", "SPY", "QQQ"],
        {"AAPL": NOW - timedelta(seconds=3), "SPY": NOW - timedelta(minutes=2)},
        {"AAPL": NOW - timedelta(seconds=8), "IWM": NOW - timedelta(seconds=1)},
        NOW,
        30.0,
    )
    assert [(r.symbol, r.stale) for r in rows] == [("AAPL", False), ("SPY", True), ("QQQ", True), ("IWM", False)]
    assert rows[0].age_seconds == pytest.approx(3.0) and rows[2].age_seconds is None


def test_bucket_is_epoch_aligned() -> None:
    at = datetime(2026, 3, 2, 15, 0, 7, 500_000, tzinfo=UTC)
    assert bucket(at, 5) == datetime(2026, 3, 2, 15, 0, 5, tzinfo=UTC)
    assert bucket(at, 60) == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _trading(scope: str, state: TradingState, minute: int) -> ControlCommand:
    return _kill(ControlCommandKind.TRADING_STATE, scope, minute).model_copy(update={"state": state})


def test_precheck_and_pipeline_read_trading_states_as_the_gate_does() -> None:
    controls = [
        _trading("AAPL", TradingState.REDUCING, 2),
        _kill(ControlCommandKind.KILL_SWITCH_ON, "global", 3),
        _kill(ControlCommandKind.KILL_SWITCH_OFF, "global", 1),  # older: stale, written late
    ]
    view = risk.RiskView()
    for command in controls:
        view.apply_control(command)
    # The pipeline shows what the gate holds: the kill switch on (the late off is stale), AAPL reducing.
    assert [(s.target, s.engaged) for s in kill_switch_states(controls)] == [("account", True)]
    assert set(view.kill_switches) == {"account"}
    assert {(t.scope, t.state) for t in trading_state_views(controls)} == {
        ("AAPL", TradingState.REDUCING),
        ("account", TradingState.HALTED),
    }
    limits = PrecheckLimits.from_settings(SETTINGS)
    checks = precheck_checks(
        _plan(), "AAPL", limits, quote=_quote(), position_quantity=0.0, kill_switch=None, now=NOW, controls=controls
    )
    assert {c.name for c in checks if not c.passed} == {"kill_switch"}
    reducing_only = precheck_checks(
        _plan(), "AAPL", limits, quote=_quote(), position_quantity=0.0, kill_switch=None, now=NOW, controls=controls[:1]
    )
    assert {c.name for c in reducing_only if not c.passed} == {"trading_state"}  # a buy with nothing held
