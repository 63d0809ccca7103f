"""The three UAT sessions: what each one does while it runs, and how its scenarios are judged afterwards.

Each ``run_*`` function starts a session, drives it (faults, API actions, crafted orders), stops it, reads the
evidence (warehouse SQL in a child process, ibsim's own books, API answers) and returns one result per scenario.
If the session cannot run to the end, every scenario it owns fails with the reason.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ibstream.config import Settings
from ibstream.market_hours import EXCHANGE_TZ
from tooling.progress import current as progress
from tooling.uat.catalogue import BY_ID, RISK_CHECKS, SCENARIOS
from tooling.uat.harness import Session, SessionPlan, UatError, own_broker_settings
from tooling.uat.model import Evidence, Judge, ScenarioResult, by_key, failed, first, number

_TZ = "America/New_York"


def _ts(moment: dt.datetime) -> str:
    """A ClickHouse UTC timestamp literal."""
    return f"toDateTime64('{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}', 6, 'UTC')"


def _judge(scenario_id: str) -> Judge:
    return Judge(BY_ID[scenario_id])


def _all_failed(session: str, why: str) -> list[ScenarioResult]:
    return [failed(s, why) for s in SCENARIOS if s.session == session]


def _harness_evidence(
    name: str, rows: list[list[Any]], columns: list[str], what: str, source: str = "ibsim"
) -> Evidence:
    return Evidence(name, source, what, columns, rows)


def main_queries(open_at: dt.datetime) -> dict[str, str]:
    """The main session's evidence queries."""
    return {
        "bars_by_source": "SELECT source, count() FROM md_bars_5s_v1 FINAL GROUP BY source ORDER BY source",
        "quotes": "SELECT count() FROM md_quotes_v1 FINAL",
        "signals_before_open": f"SELECT count() FROM signals_v1 FINAL WHERE bar_start < {_ts(open_at)}",
        "signals_after_open": f"SELECT count() FROM signals_v1 FINAL WHERE bar_start >= {_ts(open_at)}",
        "live_bars_before_open": f"SELECT count() FROM md_bars_5s_v1 FINAL WHERE source = 'live' "
        f"AND start < {_ts(open_at)}",
        "fills_before_open": f"SELECT count() FROM executions_v1 FINAL WHERE exec_time < {_ts(open_at)}",
        "manual_runs": "SELECT run_id, any(r.actor) AS approver FROM orchestration_runs_v1 AS r FINAL "
        "WHERE state = 'approved' AND approval_mode = 'manual' GROUP BY run_id ORDER BY run_id",
        "manual_run_orders": "SELECT i.order_id AS order_id, i.for_run AS run_id, d.approved AS approved, "
        "e.status AS status FROM (SELECT order_id, any(run_id) AS for_run FROM orders_intents_v1 FINAL "
        "WHERE run_id IN (SELECT run_id FROM orchestration_runs_v1 FINAL WHERE state = 'approved' "
        "AND approval_mode = 'manual') GROUP BY order_id) AS i "
        "LEFT JOIN (SELECT order_id, any(r.approved) AS approved FROM risk_decisions_v1 AS r FINAL GROUP BY order_id) "
        "AS d ON d.order_id = i.order_id LEFT JOIN (SELECT order_id, argMax(o.status, o.event_time) AS status "
        "FROM orders_events_v1 AS o FINAL WHERE o.leg = 'parent' GROUP BY order_id) AS e ON e.order_id = i.order_id "
        "ORDER BY order_id SETTINGS join_use_nulls = 1",
        "reviews": "SELECT order_id, signal_id, run_id, symbol, side, planned_entry, planned_stop, entry_quantity, "
        "entry_price, entry_time, exit_quantity, exit_price, exit_time, exit_reason, entry_slippage, exit_slippage, "
        "r_multiple, net_pnl, holding_seconds, outcome FROM trade_reviews ORDER BY entry_time",
        "gaps": "SELECT gap_id, any(g.symbol) AS symbol, min(g.start) AS gap_start, "
        "argMax(g.state, g.updated_time) AS state, argMax(g.cause, g.updated_time) AS cause, "
        "argMax(g.recovered_bars, g.updated_time) AS recovered FROM md_gaps_v1 AS g FINAL GROUP BY gap_id "
        "ORDER BY gap_start, symbol",
        "alerts": "SELECT kind, state, count() FROM ops_alerts_v1 FINAL GROUP BY kind, state ORDER BY kind, state",
        "broker_codes": "SELECT broker_code, count() FROM orders_events_v1 FINAL WHERE broker_code IS NOT NULL "
        "GROUP BY broker_code ORDER BY broker_code",
        "parents": "SELECT order_id, arraySort(groupUniqArray(p.status)) AS statuses "
        "FROM orders_events_v1 AS p FINAL WHERE p.leg = 'parent' GROUP BY order_id ORDER BY order_id",
    }


def close_queries(close_at: dt.datetime) -> dict[str, str]:
    """The close session's evidence queries."""
    return {
        "quotes_by_source": "SELECT source, count() FROM md_quotes_v1 FINAL GROUP BY source ORDER BY source",
        "bars_after_close": f"SELECT count() FROM md_bars_5s_v1 FINAL WHERE start >= {_ts(close_at)}",
        "signals_before_close": f"SELECT count() FROM signals_v1 FINAL WHERE bar_start < {_ts(close_at)}",
        "signals_after_close": f"SELECT count() FROM signals_v1 FINAL WHERE bar_start >= {_ts(close_at)}",
        "bars_by_source": "SELECT source, count() FROM md_bars_5s_v1 FINAL GROUP BY source ORDER BY source",
        "order_signals": "SELECT i.order_id AS order_id, s.bar_start AS signal_bar FROM (SELECT order_id, "
        "any(signal_id) AS sid FROM orders_intents_v1 FINAL GROUP BY order_id) AS i "
        "LEFT JOIN (SELECT signal_id, any(bar_start) AS bar_start FROM signals_v1 FINAL GROUP BY signal_id) AS s "
        "ON s.signal_id = i.sid ORDER BY signal_bar SETTINGS join_use_nulls = 1",
        "entries_after_close": "SELECT count() FROM (SELECT order_id, toString(side) AS side, exec_time "
        "FROM executions_v1 FINAL) AS e INNER JOIN (SELECT order_id, any(toString(side)) AS side "
        "FROM orders_intents_v1 FINAL GROUP BY order_id) AS i ON e.order_id = i.order_id "
        f"WHERE e.side = i.side AND e.exec_time >= {_ts(close_at)}",
        "policy_runs": "SELECT run_id, any(r.actor) AS approver FROM orchestration_runs_v1 AS r FINAL "
        "WHERE state = 'approved' AND approval_mode = 'policy' GROUP BY run_id ORDER BY run_id",
        "policy_fills": "SELECT e.order_id AS order_id, sum(e.quantity) AS shares FROM executions_v1 AS e FINAL "
        "WHERE e.order_id IN (SELECT order_id FROM orders_intents_v1 FINAL WHERE run_id IN (SELECT run_id "
        "FROM orchestration_runs_v1 FINAL WHERE state = 'approved' AND approval_mode = 'policy')) "
        "GROUP BY e.order_id ORDER BY order_id",
        "quote_ages": "SELECT min(c.value), max(c.value), count() FROM risk_decisions_v1 FINAL "
        "ARRAY JOIN checks AS c WHERE c.name = 'stale_quote' AND c.value IS NOT NULL",
    }


def desk_queries(orders: dict[str, str], up: dt.datetime) -> dict[str, str]:
    """The desk session's evidence queries (``orders``: tag → order id; ``up``: broker back)."""
    ids = ", ".join(f"'{order_id}'" for order_id in orders.values())
    return {
        "decisions": "SELECT d.order_id AS order_id, d.approved AS approved, "
        "arrayMap(c -> c.name, arrayFilter(c -> NOT c.passed, d.checks)) AS failed_checks, "
        "arrayMap(c -> concat(c.name, ': ', c.reason), arrayFilter(c -> NOT c.passed, d.checks)) AS reasons "
        f"FROM risk_decisions_v1 AS d FINAL WHERE d.order_id IN ({ids}) ORDER BY d.decided_time",
        "final_status": "SELECT order_id, argMax(e.status, e.event_time) AS status, max(e.filled_quantity) AS filled, "
        "groupUniqArray(e.status) AS statuses, max(e.broker_code) AS broker_code FROM orders_events_v1 AS e FINAL "
        f"WHERE leg = 'parent' AND order_id IN ({ids}) GROUP BY order_id",
        "executions": "SELECT order_id, count() AS executions, sum(quantity) AS shares, sum(realized_pnl) AS realized "
        f"FROM executions_v1 FINAL WHERE order_id IN ({ids}) GROUP BY order_id",
        "rejections_by_check": "SELECT c.name AS check_name, uniqExact(decision_id) AS rejections "
        "FROM risk_decisions_v1 FINAL ARRAY JOIN checks AS c WHERE NOT approved AND NOT c.passed "
        "GROUP BY check_name ORDER BY check_name",
        "stale_alerts": "SELECT symbol, state, count() FROM ops_alerts_v1 FINAL WHERE kind = 'stale_feed' "
        "GROUP BY symbol, state ORDER BY symbol, state",
        "kill_commands": "SELECT command, target, actor, issued_time FROM control_v1 FINAL ORDER BY issued_time",
        "bars_after_broker_restart": f"SELECT symbol, count() FROM md_bars_5s_v1 FINAL WHERE ingest_time > {_ts(up)} "
        "GROUP BY symbol ORDER BY symbol",
        "dead_letters": "SELECT count() FROM dead_letters FINAL",
    }


#: At 600x a wall second is ten market minutes: signals stay actionable two market hours (12 wall seconds) so
#: the approval path (API read from the warehouse, command, orchestration) has time to act on them.
_FAST_SIGNALS = {"IBSTREAM_SIGNAL_EXPIRY_SECONDS": "7200"}


# --- main: manual approval, open, IB disconnect, gateway restart -----------------------------------------------

MAIN_PLAN = SessionPlan(
    "main",
    speed=600.0,
    start=dt.time(7, 0),
    advance_to=dt.time(9, 15),
    minutes=300,  # until 12:00
    approve="manual",
    # ibsim's market runs around the clock so that bars arrive before 09:30: the pipeline's own hours gate
    # (IBSTREAM_TRADING_HOURS=rth) is what must keep signals and orders out until the open.
    sim_args=("--hours", "24h"),
    env=_FAST_SIGNALS,
)
DROP_AT, RESTART_AT = "10:00", "10:45"
_SLACK = dt.timedelta(minutes=15)


def run_main(
    settings: Settings, directory: Path, session_id: str, plan: SessionPlan = MAIN_PLAN
) -> list[ScenarioResult]:
    session = Session(plan, settings, directory, session_id)
    marks: dict[str, Any] = {}

    def drop() -> None:
        marks["drop"] = session.sim("/faults/drop_connections", {})
        session.note(f"gateway dropped every connection: {marks['drop']}")

    def restart() -> None:
        marks["refs_before_restart"] = sorted({o["order_ref"] for o in session.sim("/orders") if o["order_ref"]})
        session.sim("/faults/restart", {"downtime_seconds": 2, "rollback": 4})
        session.note("gateway restart: 2 s down, nextValidId rolled back by 4")

    try:
        session.start()
        session.run_until(session.demo.end, [(DROP_AT, drop), (RESTART_AT, restart)])
        # After the restart the pipeline needs a reconnect, fresh bars, a signal, an approval and risk before its next
        # order: 75 market minutes are under 8 wall seconds, which a loaded machine can spend before the first one. The
        # market runs on (up to a minute) until an order placed after the restart reaches ibsim; the judge says if none.
        marks["order_after_restart_s"] = session.run_until_seen(
            lambda: _placed_after(session, marks.get("refs_before_restart", [])),
            "an order placed after the gateway restart",
            wall_timeout=60.0,
        )
        time.sleep(3)  # the last intents and fills reach risk, execution and the warehouse
        marks["ready_at"] = session.ready_at
        open_at = session.at("09:30")
        marks["sim_bars_before_open"] = len(
            session.sim(
                f"/bars/{plan.symbols[0]}?start={(open_at - dt.timedelta(minutes=30)).timestamp():.0f}"
                f"&end={open_at.timestamp():.0f}"
            )
        )
        marks["api_review"] = _find_api_review(session)
        session.stop_pipeline()
        # ibsim's books after our pipeline stopped: everything we recorded happened before this snapshot.
        marks["orders"] = session.sim("/orders")
        marks["executions"] = session.sim("/executions")
    except Exception as error:  # the session's scenarios fail with the reason; the campaign goes on
        session.finish()
        return _all_failed("main", f"session main did not complete: {error}")
    session.finish()
    queries = main_queries(session.at("09:30"))
    try:
        ev = session.warehouse_evidence(list(queries.items()))
    except UatError as error:
        return _all_failed("main", str(error))
    return [
        _judge_flow_manual(ev),
        _judge_review(ev, marks),
        _judge_open(ev, marks, session),
        _judge_disconnect(ev, session, plan),
        _judge_restart(ev, session, plan, marks),
    ]


def _find_api_review(session: Session, tries: int = 60) -> dict[str, Any]:
    """A signal whose GET /v1/signals/{id} carries a review (asked while the API still runs)."""
    status, page = session.api_get("/v1/signals?limit=100")
    if status != 200:
        return {"status": status}
    asked = 0
    for item in page.get("items", []):
        if asked >= tries:
            break
        asked += 1
        status, detail = session.api_get(f"/v1/signals/{item['signal_id']}")
        if status == 200 and detail.get("review"):
            return {"status": 200, "signal_id": item["signal_id"], "review": detail["review"], "asked": asked}
    return {"status": 200, "signal_id": None, "review": [], "asked": asked}


def _judge_flow_manual(ev: dict[str, Evidence]) -> ScenarioResult:
    j = _judge("flow.manual")
    sources = by_key(ev["bars_by_source"])
    quotes = j.figure("quotes", int(number(first(ev["quotes"]))))
    live_bars = j.figure("live_bars", int(number(sources.get("live", 0))))
    signals = j.figure("signals", int(number(first(ev["signals_after_open"]))))
    runs = ev["manual_runs"]
    orders = ev["manual_run_orders"].dicts()
    reviews = [r for r in ev["reviews"].dicts() if r["run_id"] in {row[0] for row in runs.rows}]
    j.figure("manual_runs_approved", len(runs.rows))
    j.figure("actors", sorted({row[1] for row in runs.rows}))
    j.figure("orders_of_manual_runs", len(orders))
    filled = j.figure("filled_orders", sum(1 for o in orders if o["status"] == "filled"))
    undecided = [o["order_id"] for o in orders if o["approved"] is None]
    j.figure("closed_trades_reviewed", len(reviews))
    j.expect(quotes > 0 and live_bars > 0, f"no live market data (quotes={quotes}, live bars={live_bars})")
    j.expect(signals > 0, "no signals after the open")
    j.expect(len(runs.rows) > 0, "no run approved manually")
    j.expect(all(row[1] == "demo-trader" for row in runs.rows), f"unexpected approvers {j.figures['actors']}")
    j.expect(not undecided, f"orders without a risk decision: {undecided}")
    j.expect(filled > 0, "no order of a manually approved run filled")
    j.expect(len(reviews) > 0, "no closed trade of a manual run in trade_reviews")
    j.attach(ev["manual_runs"], ev["manual_run_orders"], ev["signals_after_open"])
    return j.result()


def _judge_review(ev: dict[str, Evidence], marks: dict[str, Any]) -> ScenarioResult:
    j = _judge("review.post_trade")
    reviews = ev["reviews"].dicts()
    broker: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for execution in marks.get("executions", []):
        side = "BUY" if str(execution.get("side", "")).upper() in ("BOT", "BUY") else "SELL"
        broker[(execution.get("order_ref") or "", side)].append((float(execution["shares"]), float(execution["price"])))
    mismatches = []
    for review in reviews:
        entry_side = review["side"]
        exit_side = "SELL" if entry_side == "BUY" else "BUY"
        for leg, side in (("entry", entry_side), ("exit", exit_side)):
            fills = broker.get((review["order_id"], side), [])
            quantity = sum(q for q, _ in fills)
            vwap = sum(q * p for q, p in fills) / quantity if quantity else 0.0
            if (
                abs(quantity - number(review[f"{leg}_quantity"])) > 1e-6
                or abs(vwap - number(review[f"{leg}_price"])) > 1e-4
            ):
                mismatches.append(
                    f"{review['order_id'][:8]} {leg}: review {review[f'{leg}_quantity']}@"
                    f"{review[f'{leg}_price']} vs ibsim {quantity}@{vwap:.4f}"
                )
        if str(review["entry_time"]) > str(review["exit_time"]):
            mismatches.append(f"{review['order_id'][:8]}: exit before entry")
        if review["planned_stop"] is not None and review["planned_entry"] is not None and review["r_multiple"] is None:
            mismatches.append(f"{review['order_id'][:8]}: no R multiple despite a plan")
    api = marks.get("api_review", {})
    j.figure("reviewed_trades", len(reviews))
    j.figure("wins", sum(1 for r in reviews if r["outcome"] == "win"))
    j.figure(
        "avg_r_multiple", round(sum(number(r["r_multiple"]) for r in reviews) / len(reviews), 3) if reviews else None
    )
    j.figure(
        "avg_entry_slippage",
        round(sum(number(r["entry_slippage"]) for r in reviews) / len(reviews), 4) if reviews else None,
    )
    j.figure("api_signal_with_review", api.get("signal_id"))
    j.expect(len(reviews) > 0, "no closed trade reviewed")
    j.expect(not mismatches, "; ".join(mismatches[:5]))
    j.expect(bool(api.get("review")), f"GET /v1/signals/{{id}} returned no review (asked {api.get('asked')} signals)")
    j.attach(ev["reviews"])
    if api.get("review"):
        review = api["review"][0]
        j.attach(
            Evidence("api_review", "api", f"GET /v1/signals/{api['signal_id']}", list(review), [list(review.values())])
        )
    return j.result()


def _judge_open(ev: dict[str, Evidence], marks: dict[str, Any], session: Session) -> ScenarioResult:
    j = _judge("market.open")
    ready: dt.datetime | None = marks.get("ready_at")
    j.figure("pipeline_ready_at", f"{ready.astimezone(EXCHANGE_TZ):%H:%M} NY" if ready else None)
    sim_bars = j.figure("ibsim_bars_in_the_half_hour_before_open", marks.get("sim_bars_before_open", 0))
    j.figure("live_bars_recorded_before_open", int(number(first(ev["live_bars_before_open"]))))
    signals_before = j.figure("signals_before_open", int(number(first(ev["signals_before_open"]))))
    fills_before = j.figure("fills_before_open", int(number(first(ev["fills_before_open"]))))
    signals_after = j.figure("signals_after_open", int(number(first(ev["signals_after_open"]))))
    # The gate is exercised when the pipeline was up and ibsim's market was producing bars before 09:30.
    j.expect(ready is not None and ready < session.at("09:30"), "the pipeline was not up before the open")
    j.expect(sim_bars > 0, "ibsim produced no bars before the open: the hours gate was not exercised")
    j.expect(signals_before == 0, f"{signals_before} signals before the open")
    j.expect(fills_before == 0, f"{fills_before} fills before the open")
    j.expect(signals_after > 0, "no signals after the open")
    j.attach(ev["live_bars_before_open"], ev["signals_before_open"], ev["fills_before_open"], ev["signals_after_open"])
    return j.result()


def _parse_time(value: Any) -> dt.datetime:
    moment = dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _gaps_between(ev: dict[str, Evidence], start: dt.datetime, end: dt.datetime | None) -> list[dict[str, Any]]:
    rows = []
    for gap in ev["gaps"].dicts():
        began = _parse_time(gap["gap_start"])
        if began >= start and (end is None or began < end):
            rows.append(gap)
    return rows


def _judge_gaps(j: Judge, gaps: list[dict[str, Any]], symbols: tuple[str, ...], what: str) -> None:
    by_symbol = {symbol: [g for g in gaps if g["symbol"] == symbol] for symbol in symbols}
    j.figure("gaps", len(gaps))
    j.figure(
        "gap_states", dict(sorted({g["state"]: sum(1 for x in gaps if x["state"] == g["state"]) for g in gaps}.items()))
    )
    missing = [symbol for symbol, found in by_symbol.items() if not found]
    open_gaps = [f"{g['symbol']}:{g['state']}" for g in gaps if g["state"] != "backfilled"]
    j.expect(not missing, f"no gap after the {what} for {missing}")
    j.expect(not open_gaps, f"gaps not backfilled after the {what}: {open_gaps}")


def _filled_at_ibsim(session: Session) -> bool:
    """ibsim holds an order our pipeline placed with at least one fill."""
    return any(o["order_ref"] and number(o.get("filled")) > 0 for o in session.sim("/orders"))


def _placed_after(session: Session, refs_before: list[str]) -> bool:
    """ibsim holds an order our pipeline placed that it did not hold before the restart."""
    before = set(refs_before)
    return any(o["order_ref"] and o["order_ref"] not in before for o in session.sim("/orders"))


def _judge_disconnect(ev: dict[str, Evidence], session: Session, plan: SessionPlan) -> ScenarioResult:
    j = _judge("ib.disconnect")
    # Gaps start at the last bar before the outage, up to a few simulated minutes before the fault.
    # A gap starts at the first missing bar, which can be minutes (of fast market time) before the fault landed.
    gaps = _gaps_between(ev, session.at(DROP_AT) - _SLACK, session.at(RESTART_AT) - _SLACK)

    _judge_gaps(j, gaps, plan.symbols, "10:00 drop")
    backfill = j.figure("backfill_bars", int(number(by_key(ev["bars_by_source"]).get("backfill", 0))))
    alerts = {(row[0], row[1]): row[2] for row in ev["alerts"].rows}
    j.figure("alerts", {f"{k[0]}/{k[1]}": v for k, v in alerts.items()})
    j.expect(backfill > 0, "no backfill bars")
    j.expect(any(kind == "ib_disconnected" for kind, _ in alerts), "no ib_disconnected alert")
    j.attach(
        Evidence(
            "gaps_after_drop",
            "warehouse",
            ev["gaps"].query + f"  -- gap_start in [{DROP_AT} - 15 min, {RESTART_AT} - 15 min)",
            ev["gaps"].columns,
            [list(g.values()) for g in gaps],
        ),
        ev["bars_by_source"],
        ev["alerts"],
    )
    return j.result()


def _judge_restart(
    ev: dict[str, Evidence], session: Session, plan: SessionPlan, marks: dict[str, Any]
) -> ScenarioResult:
    j = _judge("gateway.restart")
    gaps = _gaps_between(ev, session.at(RESTART_AT) - _SLACK, None)
    _judge_gaps(j, gaps, plan.symbols, "10:45 restart")
    orders = marks.get("orders", [])
    ids = [(o["client_id"], o["order_id"]) for o in orders]
    duplicates = sorted({f"{c}/{i}" for c, i in ids if ids.count((c, i)) > 1})
    per_ref: dict[str, int] = defaultdict(int)
    for order in orders:
        if order["order_ref"]:
            per_ref[order["order_ref"]] += 1
    before = set(marks.get("refs_before_restart", []))
    after = sorted(set(per_ref) - before)
    codes = {int(row[0]): row[1] for row in ev["broker_codes"].rows if row[0] is not None}
    j.figure("ibsim_orders", len(orders))
    j.figure("orders_after_restart", len(after))
    j.figure("wall_s_to_first_order_after_end", marks.get("order_after_restart_s"))
    j.figure("duplicate_ib_ids", duplicates)
    j.figure("broker_codes", codes)
    j.expect(not duplicates, f"duplicate IB order ids at ibsim: {duplicates}")
    j.expect(103 not in codes, f"{codes.get(103)} duplicate-order-id rejections (103)")
    j.expect(
        all(n <= 3 for n in per_ref.values()), f"an order placed twice: {[r for r, n in per_ref.items() if n > 3]}"
    )
    # A bracket cut off by the restart before IB saw it is reconciled as cancelled and never reaches ibsim; every
    # order IB acknowledged must be there, and ibsim must hold no order we did not record.
    recorded = {row[0]: set(row[1]) for row in ev["parents"].rows}
    acknowledged = {o for o, st in recorded.items() if st & {"acknowledged", "submitted", "partially_filled", "filled"}}
    j.figure("parents_recorded", len(recorded))
    j.figure("parents_acknowledged_by_ib", len(acknowledged))
    j.expect(
        not acknowledged - set(per_ref), f"acknowledged orders missing at ibsim: {sorted(acknowledged - set(per_ref))}"
    )
    j.expect(
        not set(per_ref) - set(recorded), f"orders at ibsim we never recorded: {sorted(set(per_ref) - set(recorded))}"
    )
    j.expect(len(after) > 0, "no order placed after the gateway restart")
    j.attach(
        _harness_evidence(
            "ibsim_orders",
            [[o["client_id"], o["order_id"], o["order_ref"], o["status"]] for o in orders],
            ["client_id", "ib_order_id", "order_ref", "status"],
            "GET /orders",
        ),
        ev["broker_codes"],
        ev["parents"],
    )
    return j.result()


# --- close: policy approval, delayed data, the close ----------------------------------------------------------

CLOSE_PLAN = SessionPlan(
    "close",
    # 300x, not 600x: the policy flow has only the 80 market minutes from 14:40 to the close, 8 wall seconds at 600x,
    # when the streams worker (480 bars/s there, beside every other deployable on two cores) ran seconds behind the
    # bars; CI runs then saw no run approved (signals made late, expired on arrival). At 300x: 16 s, 10.5 s longer.
    speed=300.0,
    start=dt.time(13, 0),
    advance_to=dt.time(14, 40),
    minutes=205,  # until 16:25
    approve="policy",
    sim_args=("--hours", "24h", "--delayed-only"),
    env={
        **_FAST_SIGNALS,
        "IBSTREAM_MARKET_DATA_TYPE": "3",
        # The policy approves every run the orchestrator opens (its confidence floor) up to Agent0's sizes.
        "IBSTREAM_APPROVAL_POLICY_MIN_CONFIDENCE": "0.6",
        "IBSTREAM_APPROVAL_POLICY_MAX_NOTIONAL": "30000",
        # Delayed quotes lag 15 minutes: the stale-quote gate (10 s by default) would reject every order, which is
        # the right default on a feed without live entitlement. This session accepts the lag explicitly so the
        # policy path can trade on it; the scenario checks the gate saw the lag.
        "IBSTREAM_RISK_QUOTE_MAX_AGE_SECONDS": "1500",
    },
)


def run_close(
    settings: Settings, directory: Path, session_id: str, plan: SessionPlan = CLOSE_PLAN
) -> list[ScenarioResult]:
    session = Session(plan, settings, directory, session_id)
    marks: dict[str, Any] = {}
    try:
        session.start()
        session.run_until(session.demo.end)
        # 105 market minutes are 21 wall seconds at 300x: a loaded machine can spend them before a policy-approved
        # entry fills (CI: runs approved, none filled). The market runs on (up to a minute) until one of our orders
        # has a fill at ibsim; the judge says if none. (Every run of this session is approved by the policy.)
        marks["fill_after_end_s"] = session.run_until_seen(
            lambda: _filled_at_ibsim(session), "a fill of a policy-approved order", wall_timeout=60.0
        )
        time.sleep(3)  # the last intents and fills reach risk, execution and the warehouse
        session.stop_pipeline()
        close_at = session.at("16:00")
        marks["orders"] = session.sim("/orders")
        marks["sim_bars_after_close"] = len(
            session.sim(
                f"/bars/{plan.symbols[0]}?start={close_at.timestamp():.0f}"
                f"&end={(close_at + dt.timedelta(minutes=20)).timestamp():.0f}"
            )
        )
    except Exception as error:
        session.finish()
        return _all_failed("close", f"session close did not complete: {error}")
    session.finish()
    queries = close_queries(close_at)
    try:
        ev = session.warehouse_evidence(list(queries.items()))
    except UatError as error:
        return _all_failed("close", str(error))

    policy = _judge("flow.policy")
    policy.figure("policy_runs_approved", len(ev["policy_runs"].rows))
    policy.figure("policy_orders_filled", len(ev["policy_fills"].rows))
    policy.figure("wall_s_to_first_fill_after_end", marks.get("fill_after_end_s"))
    policy.expect(len(ev["policy_runs"].rows) > 0, "no run approved by the policy")
    policy.expect(len(ev["policy_fills"].rows) > 0, "no order of a policy-approved run filled")
    policy.attach(ev["policy_runs"], ev["policy_fills"])

    delayed = _judge("data.delayed")
    sources = by_key(ev["quotes_by_source"])
    bar_sources = by_key(ev["bars_by_source"])
    delayed.figure("quotes_by_source", sources)
    delayed.figure("bars_by_source", bar_sources)
    ages = ev["quote_ages"].rows[0] if ev["quote_ages"].rows else [None, None, 0]
    # Informational: the gate's quote age on a delayed feed (see the report's notes on the market clock).
    delayed.figure("gate_quote_age_min_max_s", [ages[0], ages[1]])
    for name, counts in (("quote", sources), ("bar", bar_sources)):
        delayed.expect(number(counts.get("delayed", 0)) > 0, f"no {name} with source=delayed")
        delayed.expect(number(counts.get("live", 0)) == 0, f"{counts.get('live')} {name}s marked live")
    delayed.attach(ev["quotes_by_source"], ev["bars_by_source"], ev["quote_ages"])

    close = _judge("market.close")
    close_epoch = close_at.timestamp()
    signal_of = {row[0]: row[1] for row in ev["order_signals"].rows}
    late = [o for o in marks["orders"] if o.get("order_ref") and number(o.get("created_at")) >= close_epoch]
    rogue = [
        o["order_ref"][:8]
        for o in marks["orders"]
        if o.get("order_ref")
        and (signal_of.get(o["order_ref"]) is None or _parse_time(signal_of[o["order_ref"]]) >= close_at)
    ]
    sim_bars = close.figure("ibsim_bars_in_the_20_minutes_after_close", marks.get("sim_bars_after_close", 0))
    after_bars = close.figure("bars_recorded_after_close", int(number(first(ev["bars_after_close"]))))
    before = close.figure("signals_before_close", int(number(first(ev["signals_before_close"]))))
    after = close.figure("signals_after_close", int(number(first(ev["signals_after_close"]))))
    # Informational: at 300x a pre-close signal's order can reach ibsim minutes (of market time) after 16:00,
    # and ibsim's 24h market fills resting DAY limit orders after the close, which IB would not.
    close.figure("ibsim_orders_created_after_close", len(late))
    close.figure("entry_fills_after_close", int(number(first(ev["entries_after_close"]))))
    close.expect(sim_bars > 0, "ibsim produced no bars after 16:00: the close gate was not exercised")
    close.expect(after_bars == 0, f"{after_bars} bars recorded after the close")
    close.expect(before > 0, "no signals before the close")
    close.expect(after == 0, f"{after} signals for bars after the close")
    close.expect(not rogue, f"orders at ibsim without a pre-close signal: {rogue[:5]}")
    close.attach(
        ev["bars_after_close"],
        ev["signals_before_close"],
        ev["signals_after_close"],
        ev["order_signals"],
        ev["entries_after_close"],
    )
    return [policy.result(), delayed.result(), close.result()]


# --- desk: tight limits, crafted orders, broker reject, stale feed, kill switch, Kafka restart ---------------

#: The desk's daily loss limit, and the loss booked at ibsim (a fee or loss counted in P&L) to cross it.
DESK_DAILY_LOSS_LIMIT = 1000.0
DESK_BOOKED_LOSS = 2000.0
#: The symbol the desk buys and then flattens through the API.
FLATTEN_SYMBOL = "QQQ"
#: The net liquidation the buying-power drill leaves after its withdrawal (BuyingPower at ibsim: 4 × available funds).
DESK_CASH_LEFT = 500.0
DESK_LIMITS = {
    "IBSTREAM_RISK_MAX_POSITION": "50",
    "IBSTREAM_RISK_MAX_ORDER_NOTIONAL": "12000",
    "IBSTREAM_RISK_MAX_GROSS_EXPOSURE": "16000",
    # ibsim's account (1 000 000, its NetLiquidation once account.v1 flows, the static equity before): 0.01% of it,
    # 100, may be lost at a stop either way.
    "IBSTREAM_ACCOUNT_EQUITY": "1000000",
    "IBSTREAM_RISK_PER_TRADE_PCT": "0.01",
    "IBSTREAM_RISK_MIN_STOP_PCT": "0.2",
    "IBSTREAM_RISK_MAX_STOP_PCT": "3",
    "IBSTREAM_RISK_PRICE_BAND_PCT": "1",
    "IBSTREAM_RISK_MAX_ORDERS_PER_MINUTE": "5",
    # Today's loss is realized + unrealized from IB's P&L: the 30 AAPL held from step 3 (1% stop) and the round
    # trips move it by tens of dollars either way, far from 1 000; step 8 books a 2 000 loss at ibsim to cross it.
    "IBSTREAM_RISK_DAILY_LOSS_LIMIT": str(DESK_DAILY_LOSS_LIMIT),
    # 30x: quotes every 3 market seconds; a stalled symbol is 200 market seconds old after ~7 wall seconds.
    "IBSTREAM_RISK_QUOTE_MAX_AGE_SECONDS": "60",
    # The desk closes a position with an opposite order (step 7): a reduction the netting rule lets through.
    "IBSTREAM_RISK_REDUCE_OPPOSITE": "1",
}
#: The order-rate burst's tags: six orders sent back to back against a limit of five a minute.
RATE_BURST = tuple(f"order_rate_{index}" for index in range(1, 7))
DESK_PLAN = SessionPlan(
    "desk",
    speed=30.0,
    start=dt.time(10, 0),
    minutes=120,
    approve="none",
    symbols=("AAPL", "MSFT", "SPY", "QQQ"),
    sim_args=("--partial-fill", "10"),
    env=DESK_LIMITS,
)


class Desk:
    """Crafted order intents, published like a desk's order ticket, and the API answers about them."""

    def __init__(self, session: Session) -> None:
        from ibstream.config import load_settings
        from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
        from ibstream.kafka.clients import create_producer
        from ibstream.kafka.records import RecordProducer

        self.session = session
        own = load_settings(
            kafka_bootstrap_servers=session.settings.kafka.bootstrap_servers, kafka_topic_prefix=session.demo.prefix
        )
        self.producer = RecordProducer(create_producer(own), SingleObjectCodec(SchemaStore()), session.demo.prefix)
        self.orders: dict[str, str] = {}

    def price(self, symbol: str) -> float:
        bars = self.session.sim(f"/bars/{symbol}")
        return float(bars[-1]["close"])

    def place(
        self,
        tag: str,
        symbol: str,
        side: str,
        quantity: float,
        *,
        limit: float | None = None,
        stop_pct: float = 1.0,
        target_pct: float = 2.0,
    ) -> str:
        from ibstream.contracts.enums import OrderType, Side
        from ibstream.contracts.order_intents import TOPIC, OrderIntent

        reference = limit if limit is not None else self.price(symbol)
        direction = 1 if side == "BUY" else -1
        intent = OrderIntent(
            order_id=str(uuid.uuid4()),
            symbol=symbol,
            side=Side(side),
            quantity=quantity,
            order_type=OrderType.LMT if limit is not None else OrderType.MKT,
            limit_price=limit,
            stop_loss=round(reference * (1 - direction * stop_pct / 100), 2),
            take_profit=round(reference * (1 + direction * target_pct / 100), 2),
            requested_by=f"uat:{tag}",
            created_time=dt.datetime.now(dt.UTC),
        )
        self.producer.send(TOPIC, intent)
        if self.producer.flush(10) > 0 or self.producer.failed:
            raise UatError(f"desk order {tag}: Kafka did not acknowledge it ({self.producer.last_error})")
        self.orders[tag] = intent.order_id
        self.session.note(f"desk order {tag}: {side} {quantity:g} {symbol} {'LMT ' + str(limit) if limit else 'MKT'}")
        return intent.order_id

    def wait(self, tag: str, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """Poll GET /v1/orders/{id} until ``done`` holds for its body."""
        deadline = time.monotonic() + timeout
        body: Any = None
        # A status, not a phase line: the desk waits on each of its ~30 orders right after placing it (a line each).
        progress().status(f"desk order {tag}: waiting for it as expected (at most {timeout:.0f}s)")
        while time.monotonic() < deadline:
            status, body = self.session.api_get(f"/v1/orders/{self.orders[tag]}")
            if status == 200 and done(body):
                return dict(body)
            self.session.alive_check()
            time.sleep(0.25)
        decision = body.get("risk_decision") if isinstance(body, dict) else None
        failed = [c["name"] for c in (decision or {}).get("checks", []) if not c.get("passed")]
        raise UatError(
            f"desk order {tag}: not as expected within {timeout:.0f}s; failed risk checks {failed}; "
            f"last answer {str(body)[:300]}"
        )

    def decided(self, tag: str) -> dict[str, Any]:
        return self.wait(tag, lambda body: body.get("risk_decision") is not None)

    def status(self, tag: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait(tag, lambda body: body["order"]["status"] in statuses, timeout)


def _wait(what: str, condition: Callable[[], bool], timeout: float, session: Session) -> None:
    deadline = time.monotonic() + timeout
    session.waiting_for(f"{what} (at most {timeout:.0f}s)")
    while time.monotonic() < deadline:
        if condition():
            return
        session.alive_check()
        time.sleep(0.25)
    raise UatError(f"desk: {what} did not happen within {timeout:.0f}s")


#: ibsim's order statuses of an order that is done (ibstream.sim.order_values.TERMINAL; tooling does not import ibsim).
IBSIM_DONE = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


def at_ibsim(positions: list[dict[str, Any]], orders: list[dict[str, Any]], symbol: str) -> tuple[float, int]:
    """(position, working orders) of ``symbol`` in ibsim's /positions and /orders answers."""
    held = sum(float(p["quantity"]) for p in positions if p.get("symbol") == symbol)
    working = [o for o in orders if o.get("request", {}).get("symbol") == symbol and o.get("status") not in IBSIM_DONE]
    return held, len(working)


def _desk_flatten(session: Session, desk: Desk, marks: dict[str, Any], symbol: str) -> None:
    """POST /v1/control/flatten for ``symbol``; wait until ibsim holds none of it and has no order of it working."""
    from ibstream import ids

    marks["flatten_held_before"] = at_ibsim(session.sim("/positions"), session.sim("/orders"), symbol)[0]
    accepted = session.api_post("/v1/control/flatten", {"scope": symbol, "reason": "UAT flatten drill"}, "admin")
    desk.orders["flatten"] = ids.flatten_order_id(accepted["command_id"], symbol)
    session.note(f"flatten {symbol} (held {marks['flatten_held_before']:g})")
    if marks["flatten_held_before"] != 0:
        desk.status("flatten", "filled", timeout=60)

    def flat() -> bool:
        return at_ibsim(session.sim("/positions"), session.sim("/orders"), symbol) == (0.0, 0)

    try:
        _wait(f"{symbol} flat at ibsim with no working order", flat, 30, session)
    finally:
        marks["flatten_at_ibsim"] = at_ibsim(session.sim("/positions"), session.sim("/orders"), symbol)


def _todays_loss(session: Session) -> float:
    """Today's loss as risk reads it (IB's daily P&L, else realized + unrealized) from the API's ``/v1/account``."""
    status, body = session.api_get("/v1/account")
    if status != 200 or not isinstance(body, dict):
        return 0.0
    state = body.get("state") or {}
    daily = state.get("daily_pnl")
    if daily is None:
        daily = (state.get("realized_pnl") or 0.0) + (state.get("unrealized_pnl") or 0.0)
    return -float(daily)


def _buying_power(session: Session) -> float:
    """IB's BuyingPower as the risk view reads it, from the API's ``/v1/account`` (infinite before a record)."""
    status, body = session.api_get("/v1/account")
    if status != 200 or not isinstance(body, dict):
        return float("inf")
    value = (body.get("state") or {}).get("buying_power")
    return float("inf") if value is None else float(value)


WORKING_AT_IBSIM = ("PreSubmitted", "Submitted")


def positions_without_stops(at_ibsim: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """The positions ibsim held, and those of them with no working stop order on their symbol: the kill switch
    cancels entries and must keep the protective legs of filled ones."""
    held = {p["symbol"]: float(p["quantity"]) for p in at_ibsim.get("positions", []) if float(p["quantity"]) != 0}
    stopped = {
        o["request"]["symbol"]
        for o in at_ibsim.get("orders", [])
        if o["request"]["order_type"].startswith("STP") and o["status"] in WORKING_AT_IBSIM
    }
    return held, sorted(symbol for symbol in held if symbol not in stopped)


def _desk_script(session: Session, desk: Desk, marks: dict[str, Any], own_stack: Any) -> None:
    """The desk's orders, in an order that keeps each breach to one check where the limits allow."""
    limits = {k.removeprefix("IBSTREAM_").lower(): float(v) for k, v in session.plan.env.items()}
    # Quotes flowing for every symbol (the risk view needs them) before the first order.
    _wait(
        "quotes for every symbol",
        lambda: (
            not session.producer_health().get("stale_symbols") and session.producer_health().get("subscriptions", 0) > 0
        ),
        60,
        session,
    )
    time.sleep(2)
    # 1. Notional: no positions yet, so gross exposure = this order's notional, kept under the gross limit.
    spy = desk.price("SPY")
    quantity = float(int(limits["risk_max_order_notional"] * 1.08 / spy) + 1)
    desk.place("max_order_notional", "SPY", "BUY", quantity, stop_pct=0.3)
    desk.decided("max_order_notional")
    # 2. Stale feed: stall QQQ until the producer calls it stale, order it, resume.
    session.sim("/faults/stall", {"symbol": "QQQ"})
    marks["stall_at"] = dt.datetime.now(dt.UTC).isoformat()
    _wait("QQQ stale", lambda: "QQQ" in session.producer_health().get("stale_symbols", []), 30, session)
    time.sleep(1.0)
    desk.place("stale_quote", "QQQ", "BUY", 5, stop_pct=0.5)
    desk.decided("stale_quote")
    session.sim("/faults/resume", {"symbol": "QQQ"})
    # 3. A 30-share fill in parts (ibsim fills at most 10 shares per execution): approval 1 of the minute.
    desk.place("partial_fill", "AAPL", "BUY", 30, stop_pct=1.0)
    desk.status("partial_fill", "filled")
    _wait(
        "AAPL position at ibsim",
        lambda: any(p["symbol"] == "AAPL" and p["quantity"] >= 30 for p in session.sim("/positions")),
        20,
        session,
    )
    time.sleep(1.5)  # positions.v1 reaches the risk view
    aapl, msft = desk.price("AAPL"), desk.price("MSFT")
    held = 30 * aapl
    # 4. Each of these breaches one limit while AAPL 30 is held.
    desk.place("max_position", "AAPL", "BUY", limits["risk_max_position"] - 30 + 5, stop_pct=0.5)
    gross_qty = float(int((limits["risk_max_gross_exposure"] - held) * 1.05 / msft) + 1)
    desk.place("max_gross_exposure", "MSFT", "BUY", gross_qty, stop_pct=0.25)
    desk.place("price_band", "MSFT", "BUY", 5, limit=round(msft * 0.95, 2), stop_pct=0.5)
    desk.place("stop_distance", "MSFT", "BUY", 5, stop_pct=0.05)
    desk.place("risk_per_trade", "MSFT", "BUY", 20, stop_pct=2.0)
    # A sell past the 30 held would flip AAPL short: one net position per symbol.
    desk.place("conflicting_position", "AAPL", "SELL", 35, stop_pct=0.5)
    for tag in (
        "max_position",
        "max_gross_exposure",
        "price_band",
        "stop_distance",
        "risk_per_trade",
        "conflicting_position",
    ):
        desk.decided(tag)
    # 5. The broker rejects the next order (approval 2).
    session.sim("/faults/reject_next_order", {"code": 201, "message": "Order rejected - reason: UAT broker reject"})
    desk.place("broker_reject", "MSFT", "BUY", 5)
    desk.status("broker_reject", "rejected")
    # 5a. A working order counts toward max position: an AAPL buy resting 0.7% under the market takes held + working
    # to 45; a 10-share buy would then make 55 > 50 (10 more than held alone would allow: without the working order
    # it passes).
    aapl_held = next((float(p["quantity"]) for p in session.sim("/positions") if p["symbol"] == "AAPL"), 0.0)
    marks["aapl_held_before_working"] = aapl_held
    working_quantity = limits["risk_max_position"] - 5 - aapl_held
    desk.place(
        "working_entry", "AAPL", "BUY", working_quantity, limit=round(desk.price("AAPL") * 0.993, 2), stop_pct=0.5
    )
    desk.status("working_entry", "acknowledged", "submitted")
    desk.place("beyond_working", "AAPL", "BUY", 10, stop_pct=0.5)
    desk.decided("beyond_working")
    # 5b. A trader cancels the resting buy through the API (POST /v1/orders/{id}/cancel): cancelled at ibsim, its
    # untriggered bracket with it.
    session.api_post(f"/v1/orders/{desk.orders['working_entry']}/cancel", {"reason": "UAT cancel drill"}, "trader")
    session.note("working_entry cancelled through the API")
    desk.status("working_entry", "cancelled")
    marks["working_entry_at_ibsim"] = [
        o["status"] for o in session.sim("/orders") if o.get("order_ref") == desk.orders["working_entry"]
    ]
    time.sleep(2.5)  # a market minute on, so the drills below are not throttled
    # 5c. AAPL reducing: an adding buy is refused by trading_state; a sell resting 0.7% above the market passes
    # only if it reduces a position (the 30 held, unless AAPL's stop already closed it), else it is refused too. The
    # kill switch below cancels it with the other resting entry.
    reducing = {"scope": "AAPL", "state": "reducing", "reason": "UAT reducing drill"}
    session.api_post("/v1/control/trading-state", reducing, "admin")
    session.note("AAPL reducing")
    time.sleep(2.0)
    marks["aapl_held_when_reducing"] = next(
        (float(p["quantity"]) for p in session.sim("/positions") if p["symbol"] == "AAPL"), 0.0
    )
    desk.place("reducing_add", "AAPL", "BUY", 5, stop_pct=0.5)
    desk.place("reducing_sell", "AAPL", "SELL", 5, limit=round(desk.price("AAPL") * 1.007, 2), stop_pct=1.0)
    desk.decided("reducing_add")
    desk.decided("reducing_sell")
    session.api_post("/v1/control/trading-state", {**reducing, "state": "active", "reason": "UAT drill over"}, "admin")
    session.note("AAPL active")
    time.sleep(2.0)
    time.sleep(2.5)  # a market minute on, so the resting order below is not throttled
    # 6. A resting limit order 0.7% under the market (approval 3), then the kill switch.
    desk.place("resting", "MSFT", "BUY", 5, limit=round(desk.price("MSFT") * 0.993, 2), stop_pct=1.0)
    desk.status("resting", "acknowledged", "submitted")
    session.api_post("/v1/control/kill-switch", {"state": "on", "reason": "UAT kill switch drill"}, "admin")
    session.note("kill switch ON")
    time.sleep(2.0)
    desk.place("kill_switch", "MSFT", "BUY", 5)
    desk.decided("kill_switch")
    desk.status("resting", "cancelled", timeout=20)
    # What the kill switch left at ibsim: the positions held then, and the orders (their protective stops).
    marks["after_kill_switch"] = {"positions": session.sim("/positions"), "orders": session.sim("/orders")}
    session.api_post("/v1/control/kill-switch", {"state": "off", "reason": "UAT drill over"}, "admin")
    session.note("kill switch OFF")
    # 6a. A halted trading state on QQQ alone: its order is refused by trading_state; then active again.
    halt = {"scope": "QQQ", "state": "halted", "reason": "UAT trading-state drill"}
    session.api_post("/v1/control/trading-state", halt, "admin")
    session.note("QQQ halted")
    time.sleep(2.0)
    desk.place("trading_state", "QQQ", "BUY", 5, stop_pct=0.5)
    desk.decided("trading_state")
    session.api_post("/v1/control/trading-state", {**halt, "state": "active", "reason": "UAT drill over"}, "admin")
    session.note("QQQ active")
    time.sleep(2.0)
    # 6b. Order rate: six one-share SPY limit orders resting 0.7% under the market, sent back to back. Risk counts
    # approvals per market minute (two wall seconds at 30x): five are approved, one is refused on order_rate
    # (which one depends on the partitions' order, so the judge looks at all six).
    spy_rest = round(desk.price("SPY") * 0.993, 2)
    for tag in RATE_BURST:
        desk.place(tag, "SPY", "BUY", 1, limit=spy_rest, stop_pct=1.0)
    for tag in RATE_BURST:
        desk.decided(tag)
    time.sleep(3.0)  # past the market minute of the burst (90 market seconds), so step 7 is not throttled
    # 7. Resume: a full fill (approval 4), then close it at a loss (approval 5: spread and two commissions).
    desk.place("fill", "MSFT", "BUY", 5)
    desk.status("fill", "filled")
    desk.place("close", "MSFT", "SELL", 5)
    desk.status("close", "filled")
    # 7a. A position for the flatten drill: QQQ has no order at ibsim so far (its orders were refused), and a 2% stop
    # is not reached in the few seconds before the flatten (3% was the risk gate's maximum: measured from the bar
    # close, a market order's stop came out past it when the quote had moved). A market minute after the close, so
    # not throttled.
    time.sleep(2.5)
    desk.place("flatten_entry", FLATTEN_SYMBOL, "BUY", 5, stop_pct=2.0, target_pct=3.0)
    desk.status("flatten_entry", "filled")
    # 8. An order after a loss past the limit: daily_loss. ibsim books the loss (as a fee or loss counted in P&L);
    # execution's reqPnL brings it to account.v1, which the risk view reads.
    session.sim("/account/cash", {"amount": -DESK_BOOKED_LOSS, "as_pnl": True})
    session.note(f"loss of {DESK_BOOKED_LOSS:g} booked at ibsim")
    _wait("the booked loss in account.v1", lambda: _todays_loss(session) > DESK_DAILY_LOSS_LIMIT, 30, session)
    time.sleep(2.0)  # account.v1 reaches the risk view (the API read the warehouse's copy)
    desk.place("daily_loss", "MSFT", "BUY", 5)
    desk.decided("daily_loss")
    # 8b. Flatten QQQ (bought in 7a) through the API: it passes although the day's loss limit is hit.
    _desk_flatten(session, desk, marks, FLATTEN_SYMBOL)
    # 8c. Buying power: a withdrawal at ibsim leaves the account (almost) no buying power; the next order's notional
    # exceeds IB's BuyingPower as account.v1 reports it.
    net_liquidation = float(session.sim("/account")["NetLiquidation"])
    session.sim("/account/cash", {"amount": -(net_liquidation - DESK_CASH_LEFT), "as_pnl": False})
    session.note(f"cash withdrawn down to {DESK_CASH_LEFT:g} at ibsim")
    order_notional = 5 * desk.price("MSFT")
    _wait("the withdrawal in account.v1", lambda: _buying_power(session) < order_notional, 30, session)
    time.sleep(2.0)  # account.v1 reaches the risk view (the API read the warehouse's copy)
    desk.place("buying_power", "MSFT", "BUY", 5)
    desk.decided("buying_power")
    # 9. Kafka broker restart under the running pipeline; an order afterwards must still be decided.
    marks["broker_down_at"] = dt.datetime.now(dt.UTC)
    own_stack.down()
    session.note("Kafka broker stopped")
    # Down for longer than the static members' 10 s session timeout: the outage every client must survive is the
    # one that fences them (librdkafka#3437), not a blip they ride through.
    time.sleep(12.0)
    own_stack.up()
    marks["broker_up_at"] = dt.datetime.now(dt.UTC)
    session.note("Kafka broker back")
    time.sleep(6.0)
    desk.place("after_broker_restart", "MSFT", "BUY", 5)
    # Every client (Faust, the sink's static member, execution's transactions) must rejoin a restarted broker; on a
    # loaded 2-core CI machine that took over a minute once, so the decided order may take up to 150 s to show.
    desk.wait("after_broker_restart", lambda body: body.get("risk_decision") is not None, timeout=150)
    time.sleep(2.0)
    session.alive_check()


def run_desk(
    settings: Settings, directory: Path, session_id: str, plan: SessionPlan = DESK_PLAN
) -> list[ScenarioResult]:
    from tooling.stack import KafkaStack

    broker_settings = own_broker_settings(directory.parent / f"{directory.name}-kafka")
    stack = KafkaStack(broker_settings)
    marks: dict[str, Any] = {}
    session: Session | None = None
    try:
        stack.up()
        session = Session(plan, broker_settings, directory, session_id)
        session.start()
        desk = Desk(session)
        _desk_script(session, desk, marks, stack)
        session.stop_pipeline()
        marks["orders"] = session.sim("/orders")
        marks["executions"] = session.sim("/executions")
        marks["desk"] = dict(desk.orders)
    except Exception as error:
        if session is not None:
            session.finish()
        stack.down()
        log = "\n".join(session.log[-8:]) if session is not None else ""
        return _all_failed("desk", f"session desk did not complete: {error}\n{log}")
    session.finish()
    stack.down()
    queries = desk_queries(marks["desk"], marks["broker_up_at"])
    try:
        ev = session.warehouse_evidence(list(queries.items()))
    except UatError as error:
        return _all_failed("desk", str(error))
    return _judge_desk(ev, marks, plan)


def _judge_desk(ev: dict[str, Evidence], marks: dict[str, Any], plan: SessionPlan) -> list[ScenarioResult]:
    tag_of = {order_id: tag for tag, order_id in marks["desk"].items()}
    decisions = {tag_of.get(d["order_id"], d["order_id"]): d for d in ev["decisions"].dicts()}
    statuses = {tag_of.get(s["order_id"], s["order_id"]): s for s in ev["final_status"].dicts()}
    executions = {tag_of.get(e["order_id"], e["order_id"]): e for e in ev["executions"].dicts()}
    ibsim_orders = {o["order_ref"]: o for o in marks.get("orders", []) if o.get("order_ref")}
    by_check = by_key(ev["rejections_by_check"])

    def order_evidence(*tags: str) -> Evidence:
        rows = []
        for tag in tags:
            d, s, e = decisions.get(tag, {}), statuses.get(tag, {}), executions.get(tag, {})
            rows.append(
                [
                    tag,
                    marks["desk"].get(tag),
                    d.get("approved"),
                    d.get("failed_checks"),
                    s.get("status"),
                    s.get("broker_code"),
                    e.get("executions"),
                    e.get("shares"),
                ]
            )
        return Evidence(
            "desk_orders",
            "warehouse",
            ev["decisions"].query + "\n" + ev["final_status"].query,
            ["tag", "order_id", "approved", "failed_checks", "final_status", "broker_code", "executions", "shares"],
            rows,
        )

    results = []
    for check in RISK_CHECKS:
        j = _judge(f"risk.{check}")
        tag = check
        if check == "order_rate":
            # The burst's refused order (any of the six); a burst with none refused is judged on its last.
            refused = [t for t in RATE_BURST if t in decisions and not decisions[t]["approved"]]
            approved = [t for t in RATE_BURST if decisions.get(t, {}).get("approved")]
            j.figure("burst_approved", len(approved))
            j.expect(len(approved) <= 5, f"{len(approved)} of six orders in a burst approved (limit 5 a minute)")
            tag = refused[0] if refused else RATE_BURST[-1]
        decision = decisions.get(tag)
        failed_checks = list(decision["failed_checks"]) if decision else []
        j.figure("order", tag)
        j.figure("failed_checks", failed_checks)
        j.figure("rejections_by_check", int(number(by_check.get(check, 0))))
        if decision is None:
            j.expect(False, f"no risk decision for the {tag} breach")
        else:
            j.expect(not decision["approved"], f"the {tag} breach was approved")
            j.expect(check in failed_checks, f"`{check}` did not fail (failed: {failed_checks or 'none'})")
        j.expect(number(by_check.get(check, 0)) > 0, f"the risk-rejections figures list no `{check}` rejection")
        j.attach(order_evidence(*(RATE_BURST if check == "order_rate" else (tag,))), ev["rejections_by_check"])
        results.append(j.result())

    fill = _judge("order.fill")
    s, e, d = statuses.get("fill", {}), executions.get("fill", {}), decisions.get("fill", {})
    fill.figure("final_status", s.get("status"))
    fill.figure("executions", e.get("executions"))
    fill.expect(bool(d.get("approved")), "the fill order was not approved")
    fill.expect(s.get("status") == "filled", f"final status {s.get('status')}")
    fill.expect(number(e.get("shares")) == 5, f"filled {e.get('shares')} of 5 shares")
    fill.attach(order_evidence("fill", "close"))
    results.append(fill.result())

    partial = _judge("order.partial_fill")
    s, e = statuses.get("partial_fill", {}), executions.get("partial_fill", {})
    partial.figure("executions", e.get("executions"))
    partial.figure("statuses", s.get("statuses"))
    partial.expect(number(e.get("executions")) >= 3, f"{e.get('executions')} executions for 30 shares at 10 a time")
    partial.expect("partially_filled" in (s.get("statuses") or []), "no partially_filled event")
    partial.expect(
        s.get("status") == "filled" and number(e.get("shares")) == 30,
        f"final {s.get('status')}, {e.get('shares')} shares",
    )
    partial.attach(order_evidence("partial_fill"))
    results.append(partial.result())

    reject = _judge("order.broker_reject")
    s, d = statuses.get("broker_reject", {}), decisions.get("broker_reject", {})
    reject.figure("final_status", s.get("status"))
    reject.figure("broker_code", s.get("broker_code"))
    reject.expect(bool(d.get("approved")), "risk did not approve the order the broker was to reject")
    reject.expect(s.get("status") == "rejected", f"final status {s.get('status')}")
    reject.expect(s.get("broker_code") == 201, f"broker code {s.get('broker_code')}")
    reject.attach(order_evidence("broker_reject"))
    results.append(reject.result())

    stale = _judge("feed.stale")
    alerts = {(row[0], row[1]): row[2] for row in ev["stale_alerts"].rows}
    stale.figure("stale_alerts", {f"{k[0]}/{k[1]}": v for k, v in alerts.items()})
    decision = decisions.get("stale_quote", {})
    stale.expect(
        any(symbol == "QQQ" and state != "resolved" for symbol, state in alerts), "no stale_feed alert for QQQ"
    )
    stale.expect(("QQQ", "resolved") in alerts, "the QQQ stale_feed alert did not resolve after the stall")
    stale.expect("stale_quote" in (decision.get("failed_checks") or []), "the QQQ order was not rejected as stale")
    stale.attach(ev["stale_alerts"], order_evidence("stale_quote"))
    results.append(stale.result())

    kill = _judge("control.kill_switch")
    resting = ibsim_orders.get(marks["desk"].get("resting", ""), {})
    kill.figure("resting_order_at_ibsim", resting.get("status"))
    kill.figure("commands", [row[0] for row in ev["kill_commands"].rows])
    kill.expect(
        "kill_switch" in (decisions.get("kill_switch", {}).get("failed_checks") or []),
        "the order under the kill switch was not rejected by kill_switch",
    )
    kill.expect(
        statuses.get("resting", {}).get("status") == "cancelled" and resting.get("status") == "Cancelled",
        f"the resting order was not cancelled (ours {statuses.get('resting', {}).get('status')}, ibsim "
        f"{resting.get('status')})",
    )
    kill.expect(
        bool(decisions.get("fill", {}).get("approved")) and statuses.get("fill", {}).get("status") == "filled",
        "no order approved and filled after the release",
    )
    held, unprotected = positions_without_stops(marks.get("after_kill_switch") or {})
    kill.figure("positions_at_kill_switch", held)
    kill.figure("positions_without_a_working_stop", unprotected)
    kill.expect(
        "after_kill_switch" in marks and not unprotected,
        f"positions left without a working stop by the kill switch: {unprotected}",
    )
    kill.attach(ev["kill_commands"], order_evidence("resting", "kill_switch", "fill"))
    results.append(kill.result())

    results.append(_judge_flatten(decisions, statuses, marks, order_evidence("flatten_entry", "flatten")))
    results.append(_judge_working_counts(decisions, marks, order_evidence("working_entry", "beyond_working")))
    cancel = _judge("control.cancel_order")
    at_ibsim = list(marks.get("working_entry_at_ibsim") or [])
    cancel.figure("ours", statuses.get("working_entry", {}).get("status"))
    cancel.figure("at_ibsim", at_ibsim)
    cancel.expect(
        statuses.get("working_entry", {}).get("status") == "cancelled",
        f"the order cancelled through the API ended {statuses.get('working_entry', {}).get('status')}",
    )
    cancel.expect(
        bool(at_ibsim) and all(status == "Cancelled" for status in at_ibsim),
        f"ibsim's legs of the cancelled order: {at_ibsim}",
    )
    cancel.attach(order_evidence("working_entry"))
    results.append(cancel.result())

    reducing = _judge("control.reducing")
    aapl_held = number(marks.get("aapl_held_when_reducing", 0.0))
    add, sell = decisions.get("reducing_add", {}), decisions.get("reducing_sell", {})
    reducing.figure("aapl_held", aapl_held)
    reducing.figure("add_failed_checks", list(add.get("failed_checks") or []))
    reducing.figure("sell_failed_checks", list(sell.get("failed_checks") or []))
    reducing.expect(
        bool(add) and "trading_state" in (add.get("failed_checks") or []),
        "the adding buy was not refused by trading_state",
    )
    if aapl_held >= 5:
        reducing.expect(bool(sell.get("approved")), f"the sell reducing the {aapl_held:g} held was refused: {sell}")
    else:  # AAPL's stop closed the position first: the same sell would open a short, which reducing refuses
        reducing.expect("trading_state" in (sell.get("failed_checks") or []), "a sell opening a short passed")
    reducing.attach(order_evidence("reducing_add", "reducing_sell"))
    results.append(reducing.result())

    broker = _judge("kafka.broker_restart")
    bars = by_key(ev["bars_after_broker_restart"])
    broker.figure("bars_after_restart", bars)
    broker.figure("dead_letters", first(ev["dead_letters"]))
    missing = [symbol for symbol in plan.symbols if number(bars.get(symbol, 0)) == 0]
    broker.expect(not missing, f"no bars after the broker restart for {missing}")
    broker.expect("after_broker_restart" in decisions, "the order after the restart has no risk decision")
    broker.expect(number(first(ev["dead_letters"])) == 0, f"{first(ev['dead_letters'])} dead letters")
    broker.attach(ev["bars_after_broker_restart"], ev["dead_letters"], order_evidence("after_broker_restart"))
    results.append(broker.result())
    return results


def _judge_working_counts(decisions: dict[str, Any], marks: dict[str, Any], orders: Evidence) -> ScenarioResult:
    working = _judge("risk.working_orders_count")
    entry, beyond = decisions.get("working_entry", {}), decisions.get("beyond_working", {})
    failed = list(beyond.get("failed_checks") or [])
    working.figure("aapl_held", marks.get("aapl_held_before_working"))
    working.figure("beyond_failed_checks", failed)
    working.expect(bool(entry.get("approved")), f"the resting entry was not approved ({entry.get('failed_checks')})")
    working.expect(
        bool(beyond) and not beyond.get("approved") and "max_position" in failed,
        f"the buy past max position with the resting entry counted was not refused by max_position ({failed})",
    )
    working.attach(orders)
    return working.result()


def _judge_flatten(
    decisions: dict[str, Any], statuses: dict[str, Any], marks: dict[str, Any], orders: Evidence
) -> ScenarioResult:
    flatten = _judge("control.flatten")
    held_before = marks.get("flatten_held_before", 0)
    position, working = marks.get("flatten_at_ibsim", (None, None))
    decision, status = decisions.get("flatten", {}), statuses.get("flatten", {})
    flatten.figure("held_before", held_before)
    flatten.figure("ibsim_after", {"position": position, "working_orders": working})
    flatten.expect(held_before != 0, f"no {FLATTEN_SYMBOL} position to flatten (its bracket closed it first)")
    flatten.expect(bool(decision.get("approved")), f"the flatten was not approved ({decision.get('failed_checks')})")
    flatten.expect(status.get("status") == "filled", f"the flatten's final status is {status.get('status')}")
    flatten.expect(position == 0, f"ibsim still holds {position} {FLATTEN_SYMBOL} after the flatten")
    flatten.expect(working == 0, f"{working} {FLATTEN_SYMBOL} orders still working at ibsim after the flatten")
    ibsim = Evidence(
        "ibsim_after_flatten",
        "ibsim",
        "GET /positions, GET /orders",
        ["position", "working_orders"],
        [[position, working]],
    )
    flatten.attach(orders, ibsim)
    return flatten.result()


SESSION_RUNNERS: dict[str, Callable[[Settings, Path, str], list[ScenarioResult]]] = {
    "main": run_main,
    "close": run_close,
    "desk": run_desk,
}


def ny(moment: dt.datetime) -> str:
    return f"{moment.astimezone(EXCHANGE_TZ):%H:%M}"
