"""Shared pieces of the console tests (no tests here): the API scenario plus what the console's pages need around
"now" — a run awaiting approval with Agent0's plan, fresh and stale feeds, bars with an earlier traded order,
a heartbeat, an open gap, a dead letter, a firing alert — and the records the pipeline would write after an
approval (orchestration, risk, execution), which the tests send through Kafka because orchestration and ibsim do
not run in these tests.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ibstream import ids
from ibstream.contracts import (
    Alert,
    Bar,
    DeadLetter,
    Execution,
    Gap,
    Heartbeat,
    OrchestrationRun,
    OrderEvent,
    OrderIntent,
    Plan,
    Quote,
    Record,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
    Signal,
    SignalOutcome,
    TopicSpec,
    alerts,
    bars,
    executions,
    gaps,
    heartbeats,
    order_events,
    order_intents,
    quotes,
    risk_decisions,
    routed_orders,
    runs,
    signal_outcomes,
    signals,
)
from ibstream.contracts.enums import (
    AlertState,
    ApprovalMode,
    ExecutionSource,
    GapState,
    MarketDataSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    OutcomeKind,
    RunState,
    Severity,
    Side,
)
from ibstream.warehouse import Warehouse
from tests.integration.api_support import Loader, Scenario, load_scenario

BAR_COUNT = 240  # 20 minutes of 5-second bars


@dataclass
class ConsoleScenario:
    """The API scenario plus the console's records; ``now`` is when it was written."""

    base: Scenario
    now: datetime
    awaiting_run: str
    awaiting_signal: Signal
    plan: Plan
    traded_order: str
    stale_symbol: str
    fresh_symbols: tuple[str, ...]
    gap_symbol: str


def price_at(index: int) -> float:
    """A deterministic wavy AAPL price around 100."""
    return round(100 + 1.2 * math.sin(index / 17) + 0.4 * math.sin(index / 3.3), 2)


def _bar(symbol: str, start: datetime, open_: float, close: float, offset: float = 0.0) -> Bar:
    high, low = max(open_, close) + 0.05, min(open_, close) - 0.05
    return Bar(
        symbol=symbol,
        start=start,
        open=open_ + offset,
        high=high + offset,
        low=low + offset,
        close=close + offset,
        volume=100.0,
        wap=(open_ + close) / 2 + offset,
        count=10,
        event_time=start + timedelta(seconds=5),
        ingest_time=start + timedelta(seconds=5, milliseconds=20),
        source=MarketDataSource.SIM,
    )


def _quote(symbol: str, at: datetime, price: float) -> Quote:
    return Quote(
        symbol=symbol,
        con_id=1,
        bid=price - 0.01,
        ask=price + 0.01,
        last=price,
        bid_size=100,
        ask_size=100,
        last_size=10,
        event_time=at,
        ingest_time=at + timedelta(milliseconds=5),
        source=MarketDataSource.SIM,
    )


#: The R multiple each signal of the API scenario scored, in its order (breakout: +2, -1, -1, +2; meanrev: +0.5, -1).
SCORED_R = (2.0, -1.0, 0.5, -1.0, -1.0, 2.0)


def scored_signal(signal: Signal, r: float) -> SignalOutcome:
    """The signal's outcome with R multiple ``r``: its target at +2, its stop at -1, an expiry otherwise."""
    kind = {2.0: OutcomeKind.HIT_TARGET, -1.0: OutcomeKind.HIT_STOP}.get(r, OutcomeKind.EXPIRED)
    risk = abs(signal.entry - signal.stop)
    direction = 1 if signal.side is Side.BUY else -1
    return SignalOutcome(
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        strategy=signal.strategy,
        side=signal.side,
        confidence=signal.confidence,
        outcome=kind,
        entry=signal.entry,
        stop=signal.stop,
        take_profit=signal.take_profit,
        exit_price=signal.entry + direction * r * risk,
        mfe=max(r, 0.0) * risk,
        mae=max(-r, 0.0) * risk,
        r_multiple=r,
        quantity=10.0,
        pnl=r * risk * 10.0,
        bars_to_outcome=12,
        ambiguous=False,
        signal_time=signal.created_time,
        bar_start=signal.bar_start,
        outcome_time=signal.created_time + timedelta(minutes=1),
        scored_time=signal.created_time + timedelta(minutes=1),
    )


def load_console_scenario(warehouse: Warehouse, now: datetime | None = None) -> ConsoleScenario:
    """Write the API scenario and the console's records (times relative to ``now``)."""
    now = now or datetime.now(UTC)
    base = load_scenario(warehouse)
    load = Loader(warehouse, base)
    # Offsets after the API scenario's: the tables deduplicate on (topic, partition, offset).
    load.offsets = defaultdict(lambda: 10_000)
    # Bars end at the 5-second boundary before now.
    last_start = datetime.fromtimestamp(int(now.timestamp()) // 5 * 5 - 5, UTC)
    first_start = last_start - timedelta(seconds=5 * (BAR_COUNT - 1))
    starts = [first_start + timedelta(seconds=5 * i) for i in range(BAR_COUNT)]
    load.add(bars.TOPIC, *[_bar("AAPL", s, price_at(i), price_at(i + 1)) for i, s in enumerate(starts)])
    load.add(bars.TOPIC, *[_bar("MSFT", s, price_at(i), price_at(i + 1), 200.0) for i, s in enumerate(starts)])
    last_price = price_at(BAR_COUNT)
    load.add(
        quotes.TOPIC,
        _quote("AAPL", now - timedelta(seconds=1), last_price),
        _quote("MSFT", now - timedelta(seconds=2), last_price + 200),
        _quote("SPY", now - timedelta(minutes=12), 500.0),  # stale: older than stale_after_seconds
    )
    load.add(
        heartbeats.TOPIC,
        Heartbeat(
            component="producer",
            instance_id="producer-1",
            connection_state="connected",
            symbols_active=2,
            reconnect_count=1,
            time=now - timedelta(seconds=2),
        ),
    )
    load.add(
        gaps.TOPIC,
        Gap(
            gap_id="gap-qqq-1",
            symbol="QQQ",
            start=now - timedelta(minutes=4),
            end=now - timedelta(minutes=3),
            state=GapState.BACKFILLING,
            cause="ib farm 2103",
            missing_bars=12,
            recovered_bars=5,
            detected_time=now - timedelta(minutes=3),
            updated_time=now - timedelta(minutes=2),
        ),
    )
    load.add(
        alerts.TOPIC,
        Alert(
            alert_id="stale_feed:SPY",
            kind="stale_feed",
            severity=Severity.WARNING,
            state=AlertState.FIRING,
            component="producer",
            symbol="SPY",
            message="no SPY tick for 12 minutes",
            details={},
            time=now - timedelta(minutes=11),
        ),
    )
    dead_table = warehouse.schema.dead_letters
    warehouse.insert(
        dead_table,
        [
            dead_table.to_row(
                DeadLetter(
                    original_topic="orders.routed.v1",
                    partition=0,
                    offset=17,
                    key=b"k",
                    value=b"\x00garbage",
                    headers={},
                    error_kind="decode",
                    error_message="unknown schema id",
                    component="execution",
                    failed_time=now - timedelta(minutes=5),
                ),
                "orders.routed.v1.dlq",
                0,
                0,
                now,
                now,
            )
        ],
    )

    # Every signal of the API scenario scored (the performance page).
    load.add(
        signal_outcomes.TOPIC,
        *[scored_signal(sig, r) for sig, r in zip(base.of(signals.TOPIC), SCORED_R, strict=True)],
    )

    # An earlier AAPL trade inside the bars' window: bought at bar 60, sold at bar 150 (chart markers and P&L).
    buy_at, sell_at = starts[60] + timedelta(seconds=2), starts[150] + timedelta(seconds=2)
    traded_signal = Signal(
        signal_id="console-signal-traded",
        symbol="AAPL",
        strategy="breakout",
        side=Side.BUY,
        confidence=0.81,
        entry=price_at(60),
        stop=price_at(60) - 1.5,
        take_profit=price_at(60) + 2,
        bar_start=starts[59],
        created_time=starts[59] + timedelta(seconds=5),
        expiry_time=starts[59] + timedelta(minutes=5),
        features={"atr": 0.8},
    )
    traded_intent = OrderIntent(
        order_id="console-order-traded",
        run_id="console-run-traded",
        signal_id=traded_signal.signal_id,
        symbol="AAPL",
        side=Side.BUY,
        quantity=50,
        order_type=OrderType.LMT,
        limit_price=price_at(60),
        stop_loss=price_at(60) - 1.5,
        take_profit=price_at(60) + 2,
        requested_by="orchestration",
        created_time=buy_at - timedelta(seconds=1),
    )
    load.add(signals.TOPIC, traded_signal)
    load.add(order_intents.TOPIC, traded_intent)
    load.add(
        executions.TOPIC,
        *[
            Execution(
                exec_id=f"console-exec-{n}",
                order_id=traded_intent.order_id,
                symbol="AAPL",
                account="DU1234567",
                ib_order_id=40 + n,
                perm_id=5000 + n,
                side=side,
                quantity=50,
                price=price,
                cumulative_quantity=50,
                avg_price=price,
                commission=1.0,
                commission_currency="USD",
                realized_pnl=None,
                source=ExecutionSource.LIVE,
                exec_time=at,
                ingest_time=at,
            )
            for n, (side, price, at) in enumerate(
                [(Side.BUY, price_at(60), buy_at), (Side.SELL, price_at(150), sell_at)]
            )
        ],
    )

    # A fresh signal and a run awaiting manual approval with Agent0's plan.
    entry = last_price
    awaiting_signal = Signal(
        signal_id="console-signal-awaiting",
        symbol="AAPL",
        strategy="breakout",
        side=Side.BUY,
        confidence=0.74,
        entry=entry,
        stop=round(entry - 1.0, 2),
        take_profit=round(entry + 1.5, 2),
        bar_start=last_start,
        created_time=now - timedelta(seconds=20),
        expiry_time=now + timedelta(minutes=5),
        features={"atr": 0.7},
    )
    plan = Plan(
        plan_id="console-plan-awaiting",
        side=Side.BUY,
        quantity=40,
        order_type=OrderType.LMT,
        limit_price=entry,
        stop_loss=round(entry - 1.0, 2),
        take_profit=round(entry + 1.5, 2),
        rationale="range breakout with rising volume; stop under the last swing low",
    )
    run_id = "console-run-awaiting"
    load.add(signals.TOPIC, awaiting_signal)

    def state(s: RunState, previous: RunState | None, seconds: float, **extra: object) -> OrchestrationRun:
        return OrchestrationRun(
            run_id=run_id,
            signal_id=awaiting_signal.signal_id,
            symbol="AAPL",
            state=s,
            previous_state=previous,
            actor="orchestration",
            attempt=1,
            time=now - timedelta(seconds=seconds),
            **extra,  # type: ignore[arg-type]
        )

    load.add(
        runs.TOPIC,
        state(RunState.TRIGGERED, None, 18),
        state(RunState.PLANNED, RunState.PLANNING, 16, plan=plan),
        state(RunState.AWAITING_APPROVAL, RunState.PLANNED, 15, plan=plan, approval_mode=ApprovalMode.MANUAL),
    )
    return ConsoleScenario(
        base=base,
        now=now,
        awaiting_run=run_id,
        awaiting_signal=awaiting_signal,
        plan=plan,
        traded_order=traded_intent.order_id,
        stale_symbol="SPY",
        fresh_symbols=("AAPL", "MSFT"),
        gap_symbol="QQQ",
    )


def pipeline_after_approval(
    scenario: ConsoleScenario, actor: str, reason: str, at: datetime
) -> list[tuple[TopicSpec[Record], Record]]:
    """What orchestration, risk and execution would publish after the approval, in order: the run approved and
    submitted, the order intent, an approving risk decision, the routed order, broker events and one full fill."""
    plan, run_id = scenario.plan, scenario.awaiting_run
    order_id = ids.order_id(run_id)
    signal = scenario.awaiting_signal
    assert plan.limit_price is not None

    def run(state: RunState, previous: RunState, offset_ms: int, by: str) -> OrchestrationRun:
        return OrchestrationRun(
            run_id=run_id,
            signal_id=signal.signal_id,
            symbol="AAPL",
            state=state,
            previous_state=previous,
            actor=by,
            attempt=1,
            reason=reason if state == RunState.APPROVED else None,
            plan=plan,
            approval_mode=ApprovalMode.MANUAL,
            time=at + timedelta(milliseconds=offset_ms),
        )

    intent = OrderIntent(
        order_id=order_id,
        run_id=run_id,
        signal_id=signal.signal_id,
        symbol="AAPL",
        side=plan.side,
        quantity=plan.quantity,
        order_type=plan.order_type,
        limit_price=plan.limit_price,
        stop_loss=plan.stop_loss,
        take_profit=plan.take_profit,
        requested_by="orchestration",
        created_time=at + timedelta(milliseconds=20),
    )
    decision = RiskDecision(
        decision_id=ids.decision_id(order_id),
        order_id=order_id,
        run_id=run_id,
        symbol="AAPL",
        approved=True,
        checks=[
            RiskCheck(
                name="max_order_notional",
                value=plan.quantity * plan.limit_price,
                limit=25_000.0,
                passed=True,
                reason="within",
            )
        ],
        intent_time=intent.created_time,
        decided_time=intent.created_time + timedelta(milliseconds=5),
    )
    routed = RoutedOrder.model_validate(
        {
            **{k: v for k, v in intent.model_dump().items() if k in RoutedOrder.model_fields},
            "decision_id": decision.decision_id,
            "routed_time": decision.decided_time + timedelta(milliseconds=5),
        }
    )
    base_time = routed.routed_time

    def event(n: int, status: OrderStatus, previous: OrderStatus | None, filled: float, recon: str | None = None):  # type: ignore[no-untyped-def]
        return OrderEvent(
            event_id=f"console-event-{n}",
            order_id=order_id,
            leg=OrderLeg.PARENT,
            symbol="AAPL",
            ib_order_id=77,
            perm_id=7700,
            status=status,
            previous_status=previous,
            filled_quantity=filled,
            remaining_quantity=plan.quantity - filled,
            avg_fill_price=plan.limit_price if filled else None,
            broker_status=str(status),
            source=ExecutionSource.LIVE,
            reconciliation_status=recon,
            event_time=base_time + timedelta(milliseconds=10 * (n + 1)),
        )

    fill = Execution(
        exec_id="console-exec-approved",
        order_id=order_id,
        symbol="AAPL",
        account="DU1234567",
        ib_order_id=77,
        perm_id=7700,
        side=plan.side,
        quantity=plan.quantity,
        price=plan.limit_price,
        cumulative_quantity=plan.quantity,
        avg_price=plan.limit_price,
        commission=1.0,
        commission_currency="USD",
        realized_pnl=None,
        source=ExecutionSource.LIVE,
        exec_time=base_time + timedelta(milliseconds=25),
        ingest_time=base_time + timedelta(milliseconds=26),
    )
    records: list[tuple[TopicSpec[Record], Record]] = [
        (runs.TOPIC, run(RunState.APPROVED, RunState.AWAITING_APPROVAL, 0, actor)),
        (order_intents.TOPIC, intent),
        (risk_decisions.TOPIC, decision),
        (routed_orders.TOPIC, routed),
        (runs.TOPIC, run(RunState.SUBMITTED, RunState.APPROVED, 40, "orchestration")),
        (order_events.TOPIC, event(0, OrderStatus.SUBMITTED, None, 0)),
        (executions.TOPIC, fill),
        (order_events.TOPIC, event(1, OrderStatus.FILLED, OrderStatus.SUBMITTED, plan.quantity, "matched")),
    ]  # type: ignore[list-item]  # each pair's record matches its topic
    return records
