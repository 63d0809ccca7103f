"""Shared pieces of the API tests (no tests here): a scripted warehouse scenario, tokens, a recording command sink.

The scenario is written through the warehouse's own insert path (``insert_records`` → ``TableSpec.to_row``), the
path the sink uses, so the API reads what the sink would have stored. Expected values in the tests are computed
from these records, never copied from the API's output.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from api.auth import Role, issue_token
from api.commands import Delivered
from ibstream.config import Settings, load_settings
from ibstream.contracts import (
    AccountState,
    ControlCommand,
    Execution,
    OrchestrationRun,
    OrderEvent,
    OrderIntent,
    Plan,
    Record,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
    Signal,
    SignalTransition,
    TopicSpec,
    account_states,
    executions,
    order_events,
    order_intents,
    risk_decisions,
    routed_orders,
    runs,
    signal_transitions,
    signals,
)
from ibstream.contracts.enums import (
    ApprovalMode,
    ExecutionSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    RunState,
    Side,
    SignalStatus,
)
from ibstream.warehouse import Warehouse

SECRET = "api-test-secret-" + "k" * 32
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def api_settings(directory: Path, **overrides: Any) -> Settings:
    """Settings for an API test: its own chDB directory, the test secret, a rate limit no test trips by accident."""
    values: dict[str, Any] = {
        "warehouse_dir": directory,
        "api_jwt_secret": SECRET,
        "api_rate_limit_per_minute": 1_000_000,
        "api_rate_limit_burst": 1_000_000,
    }
    values.update(overrides)
    return load_settings(**values)


def token(settings: Settings, role: Role, subject: str = "tester", ttl: timedelta = timedelta(minutes=10)) -> str:
    """A valid token for ``role``."""
    return issue_token(settings, role, subject, ttl)


def expired_token(settings: Settings) -> str:
    """An admin token that expired an hour ago (beyond any leeway)."""
    return issue_token(settings, Role.ADMIN, "late", timedelta(minutes=5), now=datetime.now(UTC) - timedelta(hours=1))


def forged_token(settings: Settings) -> str:
    """An admin token with the right claims signed with the wrong secret."""
    claims = jwt.decode(token(settings, Role.ADMIN), options={"verify_signature": False})
    return jwt.encode(claims, "not-the-secret-" + "z" * 32, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@dataclass
class RecordingCommands:
    """A command sink that acknowledges everything and remembers it (Kafka itself is tested separately)."""

    sent: list[ControlCommand] = field(default_factory=list)

    def publish(self, command: ControlCommand) -> Delivered:
        self.sent.append(command)
        return Delivered("control.v1", 0, len(self.sent) - 1)

    def reachable(self) -> bool:
        return True

    def close(self) -> None:
        return None


@dataclass
class Scenario:
    """Everything written, by topic, plus the ids the tests address."""

    records: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    ids: dict[str, str] = field(default_factory=dict)

    def of(self, spec: TopicSpec[Any]) -> list[Any]:
        return list(self.records[spec.name])


class Loader:
    """Inserts records at increasing offsets per topic, as the sink would."""

    def __init__(self, warehouse: Warehouse, scenario: Scenario) -> None:
        self.warehouse = warehouse
        self.scenario = scenario
        self.offsets: dict[str, int] = defaultdict(int)

    def add(self, spec: TopicSpec[Any], *items: Record, remember: bool = True) -> None:
        table = self.warehouse.schema.for_topic(spec)
        rows = []
        for record in items:
            rows.append((record, 0, self.offsets[spec.name], datetime.now(UTC)))
            self.offsets[spec.name] += 1
            if remember:
                self.scenario.records[spec.name].append(record)
        self.warehouse.insert_records(table, spec.name, rows)


def _id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"api-test/{name}"))


def signal(n: int, symbol: str, strategy: str, side: Side = Side.BUY, entry: float = 100.0) -> Signal:
    created = T0 + timedelta(minutes=n)
    stop = entry - 2 if side == Side.BUY else entry + 2
    return Signal(
        signal_id=_id(f"signal-{n}"),
        symbol=symbol,
        strategy=strategy,
        side=side,
        confidence=0.5 + n / 100,
        entry=entry,
        stop=stop,
        take_profit=entry + 3 if side == Side.BUY else entry - 3,
        bar_start=created - timedelta(seconds=5),
        created_time=created,
        expiry_time=created + timedelta(minutes=5),
        features={"atr": 1.5 + n, "z": -0.25},
    )


def run_record(
    run_id: str, sig: Signal, state: RunState, previous: RunState | None, at: datetime, **extra: Any
) -> OrchestrationRun:
    values: dict[str, Any] = {
        "run_id": run_id,
        "signal_id": sig.signal_id,
        "symbol": sig.symbol,
        "state": state,
        "previous_state": previous,
        "actor": "orchestration",
        "attempt": 1,
        "time": at,
    }
    values.update(extra)
    return OrchestrationRun(**values)


def transition(
    sig: Signal, to: SignalStatus, previous: SignalStatus | None, at: datetime, **extra: Any
) -> SignalTransition:
    return SignalTransition(
        transition_id=_id(f"{sig.signal_id}-{to}"),
        signal_id=sig.signal_id,
        symbol=sig.symbol,
        strategy=sig.strategy,
        from_status=previous,
        to_status=to,
        reason=f"to {to}",
        time=at,
        **extra,
    )


def load_scenario(warehouse: Warehouse) -> Scenario:
    """Six signals; runs in several states; one fully traded and closed order, one risk-rejected order."""
    scenario = Scenario()
    load = Loader(warehouse, scenario)
    sigs = [
        signal(0, "AAPL", "breakout"),
        signal(1, "MSFT", "breakout", Side.SELL, 300.0),
        signal(2, "AAPL", "meanrev"),
        signal(3, "SPY", "meanrev", entry=500.0),
        signal(4, "AAPL", "breakout", entry=101.0),
        signal(5, "QQQ", "breakout", entry=400.0),
    ]
    load.add(signals.TOPIC, *sigs)
    # An at-least-once redelivery of signal 0 at a new offset: the API must still show it once.
    load.add(signals.TOPIC, sigs[0], remember=False)
    s0, s1, s2, s3 = sigs[:4]
    scenario.ids.update(signal=s0.signal_id, expired_signal=s1.signal_id, awaiting_signal=s2.signal_id)

    load.add(
        signal_transitions.TOPIC,
        transition(s0, SignalStatus.NEW, None, s0.created_time),
        transition(s0, SignalStatus.PLANNED, SignalStatus.NEW, s0.created_time + timedelta(seconds=2)),
        transition(s0, SignalStatus.APPROVED, SignalStatus.PLANNED, s0.created_time + timedelta(seconds=10)),
        transition(s0, SignalStatus.ORDERED, SignalStatus.APPROVED, s0.created_time + timedelta(seconds=11)),
        transition(s0, SignalStatus.FILLED, SignalStatus.ORDERED, s0.created_time + timedelta(seconds=12)),
        transition(s1, SignalStatus.NEW, None, s1.created_time),
        transition(s1, SignalStatus.EXPIRED, SignalStatus.NEW, s1.created_time + timedelta(minutes=5)),
        transition(s2, SignalStatus.NEW, None, s2.created_time),
        transition(s2, SignalStatus.PLANNED, SignalStatus.NEW, s2.created_time + timedelta(seconds=2)),
    )

    plan = Plan(
        plan_id=_id("plan-0"),
        side=Side.BUY,
        quantity=10,
        order_type=OrderType.LMT,
        limit_price=100.0,
        stop_loss=98.0,
        take_profit=103.0,
        rationale="breakout above range",
    )
    r0, r1, r2, r3 = (_id(f"run-{n}") for n in range(4))
    scenario.ids.update(run=r0, failed_run=r1, awaiting_run=r2, completed_run=r3)
    t = s0.created_time
    load.add(
        runs.TOPIC,
        run_record(r0, s0, RunState.TRIGGERED, None, t + timedelta(seconds=1)),
        run_record(r0, s0, RunState.PLANNING, RunState.TRIGGERED, t + timedelta(seconds=1, milliseconds=500)),
        run_record(r0, s0, RunState.PLANNED, RunState.PLANNING, t + timedelta(seconds=2), plan=plan),
        run_record(
            r0,
            s0,
            RunState.AWAITING_APPROVAL,
            RunState.PLANNED,
            t + timedelta(seconds=3),
            approval_mode=ApprovalMode.MANUAL,
        ),
        run_record(
            r0,
            s0,
            RunState.APPROVED,
            RunState.AWAITING_APPROVAL,
            t + timedelta(seconds=10),
            actor="alice",
            reason="looks good",
        ),
        run_record(r0, s0, RunState.SUBMITTED, RunState.APPROVED, t + timedelta(seconds=11)),
        run_record(r1, s1, RunState.TRIGGERED, None, s1.created_time + timedelta(seconds=1)),
        run_record(
            r1,
            s1,
            RunState.FAILED,
            RunState.PLANNING,
            s1.created_time + timedelta(seconds=3),
            reason="agent0 timed out",
            attempt=1,
        ),
        run_record(
            r1,
            s1,
            RunState.FAILED,
            RunState.PLANNING,
            s1.created_time + timedelta(seconds=6),
            reason="agent0 circuit open",
            attempt=2,
        ),
        run_record(r2, s2, RunState.TRIGGERED, None, s2.created_time + timedelta(seconds=1)),
        run_record(
            r2,
            s2,
            RunState.AWAITING_APPROVAL,
            RunState.PLANNED,
            s2.created_time + timedelta(seconds=3),
            approval_mode=ApprovalMode.MANUAL,
        ),
        run_record(r3, s3, RunState.TRIGGERED, None, s3.created_time + timedelta(seconds=1)),
        run_record(r3, s3, RunState.COMPLETED, RunState.SUBMITTED, s3.created_time + timedelta(seconds=30)),
    )

    o0, o1 = _id("order-0"), _id("order-1")
    scenario.ids.update(order=o0, rejected_order=o1)
    intent0 = OrderIntent(
        order_id=o0,
        run_id=r0,
        signal_id=s0.signal_id,
        symbol="AAPL",
        side=Side.BUY,
        quantity=10,
        order_type=OrderType.LMT,
        limit_price=100.0,
        stop_loss=98.0,
        take_profit=103.0,
        requested_by="orchestration",
        created_time=t + timedelta(seconds=10, milliseconds=500),
    )
    intent1 = OrderIntent(
        order_id=o1,
        run_id=r3,
        signal_id=s3.signal_id,
        symbol="SPY",
        side=Side.BUY,
        quantity=100,
        order_type=OrderType.MKT,
        requested_by="orchestration",
        created_time=s3.created_time + timedelta(seconds=20),
    )
    load.add(order_intents.TOPIC, intent0, intent1)
    load.add(
        risk_decisions.TOPIC,
        RiskDecision(
            decision_id=_id("decision-0"),
            order_id=o0,
            run_id=r0,
            symbol="AAPL",
            approved=True,
            checks=[
                RiskCheck(name="max_order_notional", value=1000.0, limit=25_000.0, passed=True, reason="within"),
                RiskCheck(name="kill_switch", value=0.0, limit=0.0, passed=True, reason="kill switch off"),
            ],
            intent_time=intent0.created_time,
            decided_time=intent0.created_time + timedelta(milliseconds=20),
        ),
        RiskDecision(
            decision_id=_id("decision-1"),
            order_id=o1,
            run_id=r3,
            symbol="SPY",
            approved=False,
            checks=[
                RiskCheck(name="max_order_notional", value=50_000.0, limit=25_000.0, passed=False, reason="too big"),
                RiskCheck(name="kill_switch", value=0.0, limit=0.0, passed=True, reason="kill switch off"),
            ],
            intent_time=intent1.created_time,
            decided_time=intent1.created_time + timedelta(milliseconds=20),
        ),
    )
    routed = {k: v for k, v in intent0.model_dump().items() if k in RoutedOrder.model_fields}
    routed.update(decision_id=_id("decision-0"), routed_time=intent0.created_time + timedelta(milliseconds=30))
    load.add(routed_orders.TOPIC, RoutedOrder.model_validate(routed))
    e0 = intent0.created_time + timedelta(milliseconds=40)

    def event(
        n: int,
        status: OrderStatus,
        previous: OrderStatus | None,
        filled: float,
        avg: float | None,
        leg: OrderLeg = OrderLeg.PARENT,
        recon: str | None = None,
    ) -> OrderEvent:
        return OrderEvent(
            event_id=_id(f"event-{n}"),
            order_id=o0,
            leg=leg,
            symbol="AAPL",
            ib_order_id=7,
            perm_id=9001,
            status=status,
            previous_status=previous,
            filled_quantity=filled,
            remaining_quantity=10 - filled,
            avg_fill_price=avg,
            broker_status=str(status),
            source=ExecutionSource.LIVE,
            reconciliation_status=recon,
            event_time=e0 + timedelta(milliseconds=10 * n),
        )

    load.add(
        order_events.TOPIC,
        event(0, OrderStatus.PENDING_SUBMIT, None, 0, None),
        event(1, OrderStatus.SUBMITTED, OrderStatus.PENDING_SUBMIT, 0, None),
        event(2, OrderStatus.PARTIALLY_FILLED, OrderStatus.SUBMITTED, 6, 100.1),
        event(3, OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED, 10, 100.14, recon="matched"),
        event(4, OrderStatus.FILLED, OrderStatus.SUBMITTED, 10, 103.0, leg=OrderLeg.TAKE_PROFIT),
    )

    def fill(n: int, side: Side, qty: float, price: float, cumulative: float) -> Execution:
        at = e0 + timedelta(milliseconds=15 + 10 * n)
        return Execution(
            exec_id=f"0000e0f7.{n}",
            order_id=o0,
            symbol="AAPL",
            account="DU1234567",
            ib_order_id=7,
            perm_id=9001,
            side=side,
            quantity=qty,
            price=price,
            cumulative_quantity=cumulative,
            avg_price=price,
            commission=1.0,
            commission_currency="USD",
            realized_pnl=None,
            source=ExecutionSource.LIVE,
            exec_time=at,
            ingest_time=at,
        )

    fills = [fill(1, Side.BUY, 6, 100.1, 6), fill(2, Side.BUY, 4, 100.2, 10), fill(3, Side.SELL, 10, 103.0, 10)]
    load.add(executions.TOPIC, *fills)
    # A fill written twice at two offsets (a retried batch): deduplicated by exec_id.
    load.add(executions.TOPIC, fills[0], remember=False)
    load.add(
        account_states.TOPIC,
        AccountState(
            account="DU1234567",
            base_currency="USD",
            net_liquidation=1_000_020.0,
            buying_power=4_000_080.0,
            available_funds=1_000_020.0,
            excess_liquidity=1_000_020.0,
            gross_position_value=0.0,
            daily_pnl=20.0,
            unrealized_pnl=0.0,
            realized_pnl=20.0,
            time=e0 + timedelta(seconds=1),
        ),
    )
    return scenario
