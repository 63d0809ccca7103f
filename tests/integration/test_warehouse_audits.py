"""Every audit on a scripted scenario; expected figures are computed here from the records, by the definitions
documented in the `.sql` files — never copied from the SQL's output. Also: the chDB lock message and migrations."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import PROJECT_ROOT, load_settings
from ibstream.contracts import (
    TOPICS,
    Bar,
    DeadLetter,
    Execution,
    Gap,
    OrchestrationRun,
    OrderEvent,
    OrderIntent,
    Quote,
    Record,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
    Signal,
    TopicSpec,
    bars,
    executions,
    gaps,
    order_events,
    order_intents,
    quotes,
    risk_decisions,
    routed_orders,
    runs,
    signals,
)
from ibstream.contracts.enums import (
    ExecutionSource,
    GapState,
    MarketDataSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    RunState,
    Side,
)
from ibstream.warehouse import Warehouse, WarehouseLockedError
from ibstream.warehouse.audits import run_audit
from ibstream.warehouse.migrations import build_migrations

pytestmark = pytest.mark.integration

D1 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
D2 = D1 + timedelta(days=1)


class Loader:
    """Writes records to the warehouse at increasing offsets, remembering them for the expected figures."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.offsets: dict[str, int] = defaultdict(int)
        self.records: dict[str, list[Any]] = defaultdict(list)

    def add(self, spec: TopicSpec[Any], *items: Record, table: str | None = None, topic: str | None = None) -> None:
        name = topic or spec.name
        target = (
            self.warehouse.schema.dead_letters if table == "dead_letters" else self.warehouse.schema.for_topic(spec)
        )
        rows = []
        now = datetime.now(UTC)  # Kafka time is "now": the scenario's March dates would be past quotes' retention
        for record in items:
            rows.append((record, 0, self.offsets[name], now))
            self.offsets[name] += 1
            self.records[name].append(record)
        self.warehouse.insert_records(target, name, rows)


@pytest.fixture(params=["chdb", "server"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """The audits on both backends: embedded chDB, and a ClickHouse server over HTTP (a container; skipped with the
    reason where no image can be had) in a database of the test's own."""
    if request.param == "chdb":
        with Warehouse.open(load_settings(warehouse_dir=tmp_path / "wh")) as opened:
            yield opened
        return
    server = request.getfixturevalue("clickhouse_server")
    settings = load_settings(
        clickhouse_url=server.url,
        clickhouse_username=server.username,
        clickhouse_password=server.password,
        warehouse_database=f"t{uuid.uuid4().hex[:10]}",
    )
    with Warehouse.open(settings) as opened:
        try:
            yield opened
        finally:
            opened.command(f"DROP DATABASE IF EXISTS {opened.database}")


def _signal(signal_id: str, strategy: str, side: Side, stop: float, when: datetime = D1) -> Signal:
    return Signal(
        signal_id=signal_id,
        symbol="AAA",
        strategy=strategy,
        side=side,
        confidence=0.8,
        entry=100.0,
        stop=stop,
        take_profit=110.0,
        bar_start=when,
        created_time=when,
        expiry_time=when + timedelta(minutes=5),
        features={"z": 1.0},
    )


def _intent(order_id: str, signal_id: str | None, side: Side, quantity: float, when: datetime = D1) -> OrderIntent:
    return OrderIntent(
        order_id=order_id,
        run_id=f"run-{order_id}",
        signal_id=signal_id,
        symbol="AAA",
        side=side,
        quantity=quantity,
        order_type=OrderType.MKT,
        requested_by="run",
        created_time=when,
    )


def _fill(
    exec_id: str, order_id: str, side: Side, quantity: float, price: float, commission: float, when: datetime
) -> Execution:
    return Execution(
        exec_id=exec_id,
        order_id=order_id,
        symbol="AAA",
        account="DU1",
        side=side,
        quantity=quantity,
        price=price,
        cumulative_quantity=quantity,
        avg_price=price,
        commission=commission,
        source=ExecutionSource.LIVE,
        exec_time=when,
        ingest_time=when,
    )


def _decision(order_id: str, failed: list[str], when: datetime = D1) -> RiskDecision:
    names = ["max_notional", "stale_quote", "kill_switch"]
    checks = [RiskCheck(name=n, value=1.0, limit=2.0, passed=n not in failed, reason="r") for n in names]
    return RiskDecision(
        decision_id=order_id,
        order_id=order_id,
        symbol="AAA",
        approved=not failed,
        checks=checks,
        intent_time=when,
        decided_time=when + timedelta(milliseconds=5),
    )


def _routed(order_id: str, side: Side, quantity: float, when: datetime = D1) -> RoutedOrder:
    return RoutedOrder(
        order_id=order_id,
        symbol="AAA",
        side=side,
        quantity=quantity,
        order_type=OrderType.MKT,
        decision_id=order_id,
        routed_time=when,
    )


def _event(
    event_id: str,
    order_id: str,
    status: OrderStatus,
    filled: float,
    when: datetime,
    recon: str | None = None,
    leg: OrderLeg = OrderLeg.PARENT,
) -> OrderEvent:
    return OrderEvent(
        event_id=event_id,
        order_id=order_id,
        leg=leg,
        symbol="AAA",
        status=status,
        filled_quantity=filled,
        remaining_quantity=0.0,
        source=ExecutionSource.LIVE,
        reconciliation_status=recon,
        event_time=when,
    )


def _expected_signal_outcomes(
    sigs: list[Signal], intents: list[OrderIntent], unique_fills: list[Execution]
) -> dict[str, dict[str, Any]]:
    """The signal-outcomes report by its documented definitions, per strategy."""
    expected: dict[str, dict[str, Any]] = {}
    for sig in {s.signal_id: s for s in sigs}.values():
        row = expected.setdefault(
            sig.strategy, {"signals": 0, "traded": 0, "closed": 0, "wins": 0, "r": [], "pnl": 0.0}
        )
        row["signals"] += 1
        orders = {i.order_id for i in intents if i.signal_id == sig.signal_id}
        mine = [f for f in unique_fills if f.order_id in orders]
        entry = [f for f in mine if f.side == sig.side]
        exits = [f for f in mine if f.side != sig.side]
        entry_qty, exit_qty = sum(f.quantity for f in entry), sum(f.quantity for f in exits)
        if entry_qty > 0:
            row["traded"] += 1
        if entry_qty > 0 and exit_qty >= entry_qty:
            entry_px = sum(f.quantity * f.price for f in entry) / entry_qty
            exit_px = sum(f.quantity * f.price for f in exits) / exit_qty
            direction = 1 if sig.side == Side.BUY else -1
            pnl = (exit_px - entry_px) * direction * entry_qty - sum(f.commission or 0 for f in mine)
            row["closed"] += 1
            row["wins"] += pnl > 0
            row["r"].append((exit_px - entry_px) * direction / abs(entry_px - sig.stop))
            row["pnl"] += pnl
    return expected


def _expected_unreconciled_orders(
    intents: list[OrderIntent], decisions: list[RiskDecision], events: list[OrderEvent], unique_fills: list[Execution]
) -> dict[str, list[str]]:
    """The unreconciled-orders report by its documented definitions: order id → its issues."""
    routed_sides = {i.order_id: i.side for i in intents}
    approved = {d.order_id for d in decisions if d.approved}
    seen = {e.order_id for e in events}
    want_issues: dict[str, list[str]] = {}
    for order_id in sorted(set(routed_sides) | seen):
        parents = sorted(
            (e for e in events if e.order_id == order_id and e.leg == OrderLeg.PARENT), key=lambda e: e.event_time
        )
        latest = parents[-1] if parents else None
        issues = []
        if order_id not in approved:
            issues.append("no_risk_decision")
        if order_id in routed_sides and order_id not in seen:
            issues.append("not_acknowledged")
        if order_id in seen and order_id not in routed_sides:
            issues.append("unrouted")
        if order_id in routed_sides and latest is not None:
            executed = sum(
                f.quantity for f in unique_fills if f.order_id == order_id and f.side == routed_sides[order_id]
            )
            if abs(latest.filled_quantity - executed) > 1e-6:
                issues.append("fill_mismatch")
        if latest is not None and latest.reconciliation_status == "mismatch":
            issues.append("reconciliation_mismatch")
        if issues:
            want_issues[order_id] = issues
    return want_issues


def test_signal_outcomes_risk_rejections_and_unreconciled_orders(warehouse: Warehouse) -> None:
    load = Loader(warehouse)
    t = D1
    sigs = [
        _signal("s1", "alpha", Side.BUY, 99.0),
        _signal("s2", "alpha", Side.SELL, 52.0),
        _signal("s3", "alpha", Side.BUY, 19.0),
        _signal("s4", "beta", Side.BUY, 9.0),
        _signal("s5", "beta", Side.SELL, 120.0),
    ]
    load.add(signals.TOPIC, *sigs)
    load.add(signals.TOPIC, sigs[0])  # an at-least-once duplicate at a new offset
    intents = [
        _intent("o1", "s1", Side.BUY, 100),
        _intent("o2", "s2", Side.SELL, 50),
        _intent("o3", "s3", Side.BUY, 10),
        _intent("o4", "s4", Side.BUY, 10),
        _intent("o8", None, Side.BUY, 5),
    ]
    load.add(order_intents.TOPIC, *intents)
    fills = [
        _fill("e1", "o1", Side.BUY, 60, 100.0, 1.0, t),
        _fill("e2", "o1", Side.BUY, 40, 100.5, 1.0, t),
        _fill("e3", "o1", Side.SELL, 100, 102.0, 1.0, t + timedelta(minutes=3)),
        _fill("e4", "o2", Side.SELL, 50, 50.0, 0.5, t),
        _fill("e5", "o2", Side.BUY, 50, 51.0, 0.5, t),
        _fill("e6", "o3", Side.BUY, 10, 20.0, 0.2, t),
        _fill("e7", "o4", Side.BUY, 10, 10.0, 0.1, t),
        _fill("e8", "o4", Side.SELL, 10, 12.0, 0.1, t),
    ]
    load.add(executions.TOPIC, *fills)
    load.add(executions.TOPIC, fills[1])  # duplicate fill (same exec_id) must not count twice
    decisions = [_decision(o, []) for o in ("o1", "o2", "o3", "o4", "o8")]
    decisions += [
        _decision("o5", ["max_notional", "stale_quote"]),
        _decision("o6", ["stale_quote"]),
        _decision("o7", ["kill_switch"], D2),
    ]
    load.add(risk_decisions.TOPIC, *decisions)
    load.add(routed_orders.TOPIC, *[_routed(i.order_id, i.side, i.quantity) for i in intents])
    events = [
        _event("v1", "o1", OrderStatus.FILLED, 100, t),
        _event("v2", "o2", OrderStatus.FILLED, 50, t),
        _event("v3a", "o3", OrderStatus.SUBMITTED, 0, t),
        _event("v3b", "o3", OrderStatus.FILLED, 10, t + timedelta(seconds=1), recon="mismatch"),
        _event("v4", "o4", OrderStatus.FILLED, 8, t),  # broker says 8, fills say 10
        _event("v4s", "o4", OrderStatus.FILLED, 10, t + timedelta(seconds=9), leg=OrderLeg.STOP_LOSS),
        _event("v9", "o9", OrderStatus.SUBMITTED, 0, t),  # never routed, never decided
    ]
    load.add(order_events.TOPIC, *events)

    # --- signal outcomes, computed by the documented definitions -----------------------------------------------
    unique_fills = list({f.exec_id: f for f in fills}.values())
    expected = _expected_signal_outcomes(sigs, intents, unique_fills)
    got = {r["strategy"]: r for r in run_audit(warehouse, "signal-outcomes").dicts()}
    assert set(got) == set(expected)
    for strategy, want in expected.items():
        row = got[strategy]
        assert (row["signals"], row["traded"], row["closed"], row["wins"]) == (
            want["signals"],
            want["traded"],
            want["closed"],
            want["wins"],
        )
        assert row["hit_rate"] == pytest.approx(want["wins"] / want["closed"])
        assert row["avg_r"] == pytest.approx(sum(want["r"]) / len(want["r"]))
        assert row["pnl_total"] == pytest.approx(want["pnl"])
    assert run_audit(warehouse, "signal-outcomes", day=D2.date()).rows == []

    # --- risk rejections -------------------------------------------------------------------------------------
    want_rejections: dict[tuple[date, str], set[str]] = defaultdict(set)
    for d in decisions:
        if not d.approved:
            for check in d.checks:
                if not check.passed:
                    want_rejections[(d.decided_time.date(), check.name)].add(d.decision_id)
    got_rejections = {
        (r["day"], r["check_name"]): r["rejections"] for r in run_audit(warehouse, "risk-rejections").dicts()
    }
    assert got_rejections == {key: len(ids) for key, ids in want_rejections.items()}
    day1 = run_audit(warehouse, "risk-rejections", day=D1.date()).dicts()
    assert {(r["check_name"], r["rejections"]) for r in day1} == {
        (name, len(ids)) for (day, name), ids in want_rejections.items() if day == D1.date()
    }

    # --- unreconciled orders ---------------------------------------------------------------------------------
    want_issues = _expected_unreconciled_orders(intents, decisions, events, unique_fills)
    got_issues = {r["order_id"]: r["issues"].split(",") for r in run_audit(warehouse, "unreconciled-orders").dicts()}
    assert got_issues == want_issues
    assert set(want_issues) == {"o3", "o4", "o8", "o9"}  # the scenario exercises every kind but a clean order


def test_order_trail_and_feed_gaps_and_dlq(warehouse: Warehouse) -> None:
    load = Loader(warehouse)
    t = D1
    load.add(signals.TOPIC, _signal("s1", "alpha", Side.BUY, 99.0, t))
    run_states = [(RunState.TRIGGERED, 1), (RunState.PLANNED, 2), (RunState.APPROVED, 3), (RunState.SUBMITTED, 4)]
    load.add(
        runs.TOPIC,
        *[
            OrchestrationRun(
                run_id="run-o1",
                signal_id="s1",
                symbol="AAA",
                state=state,
                actor="system",
                attempt=1,
                time=t + timedelta(seconds=s),
            )
            for state, s in run_states
        ],
    )
    load.add(order_intents.TOPIC, _intent("o1", "s1", Side.BUY, 100, t + timedelta(seconds=5)))
    load.add(order_intents.TOPIC, _intent("other", "s9", Side.BUY, 1, t))  # noise for another order
    load.add(risk_decisions.TOPIC, _decision("o1", [], t + timedelta(seconds=6)))
    load.add(routed_orders.TOPIC, _routed("o1", Side.BUY, 100, t + timedelta(seconds=7)))
    events = [
        _event("v1", "o1", OrderStatus.SUBMITTED, 0, t + timedelta(seconds=8)),
        _event("v2", "o1", OrderStatus.FILLED, 100, t + timedelta(seconds=10)),
    ]
    load.add(order_events.TOPIC, *events)
    load.add(order_events.TOPIC, events[1])  # duplicate delivery of the same event
    load.add(executions.TOPIC, _fill("e1", "o1", Side.BUY, 100, 100.0, 1.0, t + timedelta(seconds=9)))

    trail = run_audit(warehouse, "order-trail", order_id="o1").rows
    want = sorted(
        [(t, "signal", "s1")]
        + [(t + timedelta(seconds=s), "run", "run-o1") for _, s in run_states]
        + [
            (t + timedelta(seconds=5), "intent", "o1"),
            (t + timedelta(seconds=6, milliseconds=5), "risk_decision", "o1"),
            (t + timedelta(seconds=7), "routed", "o1"),
            (t + timedelta(seconds=8), "order_event", "v1"),
            (t + timedelta(seconds=9), "fill", "e1"),
            (t + timedelta(seconds=10), "order_event", "v2"),
        ]
    )
    assert [(r[0], r[1], r[2]) for r in trail] == want
    assert [r[3] for r in trail if r[1] == "run"] == [state.value for state, _ in run_states]

    # --- feed gaps and lag ----------------------------------------------------------------------------------------
    bar_list, quote_list = [], []
    for symbol, count in (("AAA", 10), ("BBB", 5)):
        for i in range(count):
            start = t + timedelta(seconds=5 * i)
            lag_ms = 20 + 7 * i + (100 if symbol == "BBB" else 0)
            bar_list.append(
                Bar(
                    symbol=symbol,
                    start=start,
                    open=1,
                    high=1,
                    low=1,
                    close=1,
                    volume=1,
                    wap=1,
                    count=1,
                    event_time=start + timedelta(seconds=5),
                    ingest_time=start + timedelta(seconds=5, milliseconds=lag_ms),
                    source=MarketDataSource.LIVE,
                )
            )
    for i in range(4):
        quote_list.append(
            Quote(
                symbol="AAA",
                con_id=1,
                bid=1.0,
                event_time=t + timedelta(seconds=i),
                ingest_time=t + timedelta(seconds=i, milliseconds=300 * i),
                source=MarketDataSource.LIVE,
            )
        )
    load.add(bars.TOPIC, *bar_list)
    load.add(bars.TOPIC, bar_list[0].model_copy(update={"source": MarketDataSource.REPLAY}))  # same bar identity
    load.add(quotes.TOPIC, *quote_list)
    gap_records = [
        Gap(
            gap_id="g1",
            symbol="AAA",
            start=t,
            end=t + timedelta(seconds=15),
            state=GapState.OPEN,
            cause="disconnect",
            missing_bars=4,
            recovered_bars=0,
            detected_time=t,
            updated_time=t + timedelta(seconds=20),
        ),
        Gap(
            gap_id="g1",
            symbol="AAA",
            start=t,
            end=t + timedelta(seconds=15),
            state=GapState.BACKFILLED,
            cause="disconnect",
            missing_bars=4,
            recovered_bars=4,
            detected_time=t,
            updated_time=t + timedelta(seconds=40),
        ),
        Gap(
            gap_id="g2",
            symbol="AAA",
            start=t + timedelta(minutes=1),
            end=t + timedelta(minutes=2),
            state=GapState.UNRECOVERABLE,
            cause="ib_1100",
            missing_bars=3,
            recovered_bars=1,
            reason="too old",
            detected_time=t,
            updated_time=t + timedelta(minutes=3),
        ),
        Gap(
            gap_id="g3",
            symbol="BBB",
            start=D2,
            end=D2,
            state=GapState.OPEN,
            cause="stale_feed",
            missing_bars=1,
            recovered_bars=0,
            detected_time=D2,
            updated_time=D2,
        ),
    ]
    load.add(gaps.TOPIC, *gap_records)

    latest_gaps = {g.gap_id: g for g in sorted(gap_records, key=lambda g: g.updated_time)}.values()
    want_rows: dict[tuple[date, str], dict[str, Any]] = {}

    def row(day: date, symbol: str) -> dict[str, Any]:
        return want_rows.setdefault(
            (day, symbol),
            {
                "bars": set(),
                "gaps": 0,
                "missing_bars": 0,
                "recovered_bars": 0,
                "unrecoverable": 0,
                "open_gaps": 0,
                "lags": [],
            },
        )

    for bar in bar_list:
        row(bar.start.date(), bar.symbol)["bars"].add(bar.start)
    for gap in latest_gaps:
        r = row(gap.start.date(), gap.symbol)
        r["gaps"] += 1
        r["missing_bars"] += gap.missing_bars
        r["recovered_bars"] += gap.recovered_bars
        r["unrecoverable"] += gap.state == GapState.UNRECOVERABLE
        r["open_gaps"] += gap.state in (GapState.OPEN, GapState.BACKFILLING)
    for record in [*bar_list, bar_list[0], *quote_list]:
        lag = (record.ingest_time - record.event_time) // timedelta(milliseconds=1)
        row(record.event_time.date(), record.symbol)["lags"].append(lag)
    got = {(r["day"], r["symbol"]): r for r in run_audit(warehouse, "feed-gaps").dicts()}
    assert set(got) == set(want_rows)
    for key, want_row in want_rows.items():
        g = got[key]
        assert g["bars"] == len(want_row["bars"]), key
        for name in ("gaps", "missing_bars", "recovered_bars", "unrecoverable", "open_gaps"):
            assert g[name] == want_row[name], (key, name)
        lags = want_row["lags"]
        assert g["feed_lag_avg_ms"] == (pytest.approx(sum(lags) / len(lags)) if lags else None), key
        assert g["feed_lag_max_ms"] == (max(lags) if lags else None), key
    assert {(r["day"], r["symbol"]) for r in run_audit(warehouse, "feed-gaps", day=D2.date()).dicts()} == {
        key for key in want_rows if key[0] == D2.date()
    }
    bbb = {(r["day"], r["symbol"]): r["bars"] for r in run_audit(warehouse, "feed-gaps", symbol="BBB").dicts()}
    assert bbb == {key: len(row["bars"]) for key, row in want_rows.items() if key[1] == "BBB"} != {}

    # --- DLQ contents ----------------------------------------------------------------------------------------------
    letters = [
        (
            quotes.TOPIC,
            DeadLetter(
                original_topic="md.quotes.v1",
                partition=2,
                offset=7,
                value=b"\x00junk",
                headers={},
                error_kind="decode",
                error_message="bad",
                component="warehouse_sink",
                failed_time=t + timedelta(seconds=2),
            ),
        ),
        (
            executions.TOPIC,
            DeadLetter(
                original_topic="executions.v1",
                partition=0,
                offset=3,
                value=None,
                headers={"h": b"1"},
                error_kind="processing",
                error_message="boom",
                component="execution",
                failed_time=t + timedelta(seconds=1),
                consumer_group="ibstream-execution",
                exception_class="consumers.execution.exceptions.UnapprovedOrderError",
            ),
        ),
    ]
    for spec, letter in letters:
        load.add(spec, letter, table="dead_letters", topic=spec.dlq_name)
    dlq = run_audit(warehouse, "dlq-contents").dicts()
    want_dlq = sorted(letters, key=lambda pair: pair[1].failed_time)
    assert [(r["dlq_topic"], r["original_topic"], r["offset"], r["error_kind"], r["value_bytes"]) for r in dlq] == [
        (spec.dlq_name, letter.original_topic, letter.offset, letter.error_kind, len(letter.value or b""))
        for spec, letter in want_dlq
    ]
    # The Connect-style facts; null in a letter without them (the first one, as written before they existed).
    assert [(r["consumer_group"], r["exception_class"]) for r in dlq] == [
        (letter.consumer_group, letter.exception_class) for _, letter in want_dlq
    ]
    assert (
        dlq[0]["exception_class"] == "consumers.execution.exceptions.UnapprovedOrderError"
        and dlq[1]["consumer_group"] is None
    )
    first_failed = want_dlq[0][1].failed_time
    later = run_audit(warehouse, "dlq-contents", start=first_failed + timedelta(microseconds=1)).dicts()
    assert [r["original_topic"] for r in later] == [letter.original_topic for _, letter in want_dlq[1:]]
    assert [r["original_topic"] for r in run_audit(warehouse, "dlq-contents", end=first_failed).dicts()] == []


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    settings = load_settings(warehouse_dir=tmp_path / "wh", warehouse_retention_days={"md.quotes.v1": 7})
    with Warehouse.open(settings) as warehouse:
        versions = warehouse.query("SELECT version FROM _migrations FINAL ORDER BY version").rows
        declared = build_migrations(warehouse.schema, warehouse.retention_days)
        assert len(declared) >= 3
        assert versions == [(migration.version,) for migration in sorted(declared, key=lambda m: m.version)]
        assert warehouse.migrate() == []  # nothing to do the second time
        tables = {r[0] for r in warehouse.query("SELECT name FROM system.tables WHERE database = 'ibstream'").rows}
        assert {warehouse.schema.for_topic(spec).name for spec in TOPICS} | {"dead_letters"} <= tables
        ddl = warehouse.query("SELECT create_table_query FROM system.tables WHERE name = 'md_quotes_v1'").rows[0][0]
        assert "toIntervalDay(7)" in ddl
        # Retention: 40-day-old quotes (kept 7 days) expire at the next merge; bars of the same age (1 year) stay.
        old = datetime.now(UTC) - timedelta(days=40)
        quote = Quote(symbol="AAA", con_id=1, event_time=old, ingest_time=old, source=MarketDataSource.LIVE)
        bar = Bar(
            symbol="AAA",
            start=old,
            open=1,
            high=1,
            low=1,
            close=1,
            volume=1,
            wap=1,
            count=1,
            event_time=old,
            ingest_time=old,
            source=MarketDataSource.LIVE,
        )
        warehouse.insert_records(warehouse.schema.for_topic(quotes.TOPIC), "q", [(quote, 0, 0, old)])
        warehouse.insert_records(warehouse.schema.for_topic(bars.TOPIC), "b", [(bar, 0, 0, old)])
        for table in ("md_quotes_v1", "md_bars_5s_v1"):
            warehouse.command(f"OPTIMIZE TABLE {table} FINAL")
        assert warehouse.query("SELECT count() FROM md_quotes_v1").rows == [(0,)]
        assert warehouse.query("SELECT count() FROM md_bars_5s_v1").rows == [(1,)]
    # A changed retention setting is reconciled on the next start, and only then.
    changed = settings.with_overrides(warehouse_retention_days={"md.quotes.v1": 30})
    with Warehouse.open(changed) as warehouse:
        ddl = warehouse.query("SELECT create_table_query FROM system.tables WHERE name = 'md_quotes_v1'").rows[0][0]
        assert "toIntervalDay(30)" in ddl
        assert warehouse.migrate() == []


def test_a_held_directory_is_reported_with_its_holder(tmp_path: Path) -> None:
    directory = tmp_path / "wh"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom ibstream.config import load_settings\nfrom ibstream.warehouse import Warehouse\n"
            f"w = Warehouse.open(load_settings(warehouse_dir={str(directory)!r}))\nprint('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        with pytest.raises(WarehouseLockedError, match=f"pid {holder.pid}"):
            Warehouse.open(load_settings(warehouse_dir=directory))
        cli = subprocess.run(
            [str(PROJECT_ROOT / ".venv" / "bin" / "ibstream"), "audit", "dlq-contents"],
            env={**os.environ, "IBSTREAM_WAREHOUSE_DIR": str(directory)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 1
        assert f"held by another process (pid {holder.pid})" in cli.stderr
        assert "IBSTREAM_CLICKHOUSE_URL" in cli.stderr
    finally:
        holder.communicate(b"", timeout=30)
    # Released: the CLI now opens it directly.
    cli = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "ibstream"), "audit", "dlq-contents", "--format", "json"],
        env={**os.environ, "IBSTREAM_WAREHOUSE_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == "[]"


def _trade(
    load: Loader, n: int, symbol: str, strategy: str, side: Side, entry: tuple[float, float, float], exit_: Any
) -> tuple[Signal, OrderIntent, list[Execution], OrderLeg | None]:
    """A signal, its bracket intent (limit, stop, target), the entry fill and, for a closed trade, its exit fill from
    the given leg: ``exit_`` is (leg, price, when) or None (still open)."""
    limit, stop, target = entry
    when = D1 + timedelta(hours=n)
    sig = _signal(f"ts{n}", strategy, side, stop, when).model_copy(update={"symbol": symbol, "entry": limit})
    intent = _intent(f"to{n}", sig.signal_id, side, 10, when).model_copy(
        update={
            "symbol": symbol,
            "order_type": OrderType.LMT,
            "limit_price": limit,
            "stop_loss": stop,
            "take_profit": target,
        }
    )
    ib_ids = {OrderLeg.PARENT: 100 * n, OrderLeg.STOP_LOSS: 100 * n + 1, OrderLeg.TAKE_PROFIT: 100 * n + 2}
    fills = [
        _fill(f"te{n}", intent.order_id, side, 10, limit + (0.05 if side == Side.BUY else -0.05), 1.0, when).model_copy(
            update={"symbol": symbol, "ib_order_id": ib_ids[OrderLeg.PARENT]}
        )
    ]
    leg = None
    if exit_ is not None:
        leg, price, closed = exit_
        other = Side.SELL if side == Side.BUY else Side.BUY
        fills.append(
            _fill(f"tx{n}", intent.order_id, other, 10, price, 1.25, closed).model_copy(
                update={"symbol": symbol, "ib_order_id": ib_ids[leg]}
            )
        )
    events = [
        _event(f"tv{n}-{leg_.value}", intent.order_id, OrderStatus.SUBMITTED, 0, when, leg=leg_).model_copy(
            update={"symbol": symbol, "ib_order_id": ib_id}
        )
        for leg_, ib_id in ib_ids.items()
    ]
    load.add(signals.TOPIC, sig)
    load.add(order_intents.TOPIC, intent)
    load.add(order_events.TOPIC, *events)
    load.add(executions.TOPIC, *fills)
    return sig, intent, fills, leg


def test_filters_narrow_each_audit_and_trade_reviews_follow_their_definitions(warehouse: Warehouse) -> None:
    load = Loader(warehouse)
    trades = [
        _trade(
            load,
            1,
            "AAA",
            "alpha",
            Side.BUY,
            (100.0, 98.0, 104.0),
            (OrderLeg.TAKE_PROFIT, 104.0, D1 + timedelta(hours=2)),
        ),
        _trade(load, 2, "BBB", "beta", Side.SELL, (50.0, 51.0, 47.0), (OrderLeg.STOP_LOSS, 51.1, D2)),
        _trade(load, 3, "BBB", "alpha", Side.BUY, (20.0, 19.0, 23.0), None),  # still open: no review row
    ]
    load.add(risk_decisions.TOPIC, _decision("r1", ["stale_quote"]), _decision("r2", ["kill_switch"], D2))
    load.add(risk_decisions.TOPIC, _decision("r3", ["kill_switch"]).model_copy(update={"symbol": "BBB"}))

    # --- trade reviews, by the definitions in trade_reviews.sql ----------------------------------------------------
    want: dict[str, dict[str, Any]] = {}
    for sig, intent, fills, leg in trades:
        if leg is None:
            continue
        direction = 1 if intent.side == Side.BUY else -1
        entry_price, exit_price = fills[0].price, fills[1].price
        risk = abs(intent.limit_price - intent.stop_loss)  # type: ignore[operator]
        gross = (exit_price - entry_price) * direction * 10
        commission = sum(f.commission or 0 for f in fills)
        want[intent.order_id] = {
            "symbol": intent.symbol,
            "strategy": sig.strategy,
            "entry_price": entry_price,
            "exit_price": exit_price,
            "exit_reason": leg.value,
            "gross_pnl": gross,
            "net_pnl": gross - commission,
            "r_multiple": (exit_price - entry_price) * direction / risk,
            "exit_time": fills[1].exec_time,
        }
    reviews = {r["order_id"]: r for r in run_audit(warehouse, "trade-reviews").dicts()}
    assert set(reviews) == set(want) == {"to1", "to2"}
    for order_id, expected in want.items():
        for column, value in expected.items():
            assert reviews[order_id][column] == (pytest.approx(value) if isinstance(value, float) else value), column
    assert [r["order_id"] for r in run_audit(warehouse, "trade-reviews", symbol="BBB").dicts()] == ["to2"]
    assert [r["order_id"] for r in run_audit(warehouse, "trade-reviews", strategy="alpha").dicts()] == ["to1"]
    closed_on_d1 = run_audit(warehouse, "trade-reviews", start=D1, end=D1 + timedelta(hours=2)).dicts()
    assert closed_on_d1 == []  # exit_time D1+2h is the window's end: half-open
    assert [r["order_id"] for r in run_audit(warehouse, "trade-reviews", start=D1, end=D2).dicts()] == ["to1"]
    assert [r["order_id"] for r in run_audit(warehouse, "trade-reviews", day=D2.date()).dicts()] == ["to2"]

    # --- signal outcomes by strategy, symbol and created_time ------------------------------------------------------
    def outcome_counts(**filters: Any) -> dict[str, tuple[int, int, int]]:
        rows = run_audit(warehouse, "signal-outcomes", **filters).dicts()
        return {r["strategy"]: (r["signals"], r["traded"], r["closed"]) for r in rows}

    assert outcome_counts() == {"alpha": (2, 2, 1), "beta": (1, 1, 1)}
    assert outcome_counts(strategy="beta") == {"beta": (1, 1, 1)}
    assert outcome_counts(symbol="BBB") == {"alpha": (1, 1, 0), "beta": (1, 1, 1)}
    assert outcome_counts(start=D1 + timedelta(hours=2)) == {"alpha": (1, 1, 0), "beta": (1, 1, 1)}
    assert outcome_counts(end=D1 + timedelta(hours=2)) == {"alpha": (1, 1, 1)}

    # --- risk rejections by symbol and decided_time ----------------------------------------------------------------
    def rejections(**filters: Any) -> set[tuple[date, str, int]]:
        rows = run_audit(warehouse, "risk-rejections", **filters).dicts()
        return {(r["day"], r["check_name"], r["rejections"]) for r in rows}

    d1, d2 = D1.date(), D2.date()
    assert rejections() == {(d1, "stale_quote", 1), (d1, "kill_switch", 1), (d2, "kill_switch", 1)}
    assert rejections(symbol="BBB") == {(d1, "kill_switch", 1)}
    assert rejections(symbol="AAA", start=D2) == {(d2, "kill_switch", 1)}
    assert rejections(end=D2) == {(d1, "stale_quote", 1), (d1, "kill_switch", 1)}
