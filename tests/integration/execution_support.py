"""Shared by the execution integration tests: routed orders in, records back out, ibsim ground truth."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ibsim.config import EXCHANGE_TZ
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    Record,
    RiskDecision,
    RoutedOrder,
    TopicSpec,
    control,
    risk_decisions,
    routed_orders,
    utc_now,
)
from ibstream.contracts.enums import ControlCommandKind, OrderType, Side
from ibstream.contracts.order_terms import OrderTerms, terms_digest
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import consumer_config, create_producer
from ibstream.kafka.records import RecordProducer, decode_message
from tests.integration.kafka_helpers import tracked, untrack

MONDAY_10AM = dt.datetime(2025, 1, 6, 10, 0, tzinfo=EXCHANGE_TZ)
CODEC = SingleObjectCodec(SchemaStore())
R = TypeVar("R", bound=Record)


def routed(symbol: str = "AAPL", side: Side = Side.BUY, quantity: float = 10, **fields: Any) -> RoutedOrder:
    """A risk-approved order with a fresh id."""
    values: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "symbol": symbol,
        "side": side,
        "quantity": quantity,
        "order_type": OrderType.MKT,
        "decision_id": str(uuid.uuid4()),
        "routed_time": utc_now(),
        **fields,
    }
    return RoutedOrder(**values)


def approval(order: RoutedOrder, approved_terms: OrderTerms | None = None) -> RiskDecision:
    """The approved risk decision risk writes before routing ``order``: its terms' digest (or ``approved_terms``')."""
    return RiskDecision(
        decision_id=order.decision_id,
        order_id=order.order_id,
        run_id=order.run_id,
        symbol=order.symbol,
        approved=True,
        checks=[],
        intent_time=order.routed_time,
        decided_time=order.routed_time,
        terms_digest=terms_digest(approved_terms or order),
    )


def sender(settings: Settings) -> RecordProducer:
    """A plain idempotent producer, as risk and the API use."""
    return RecordProducer(create_producer(settings), CODEC, settings.kafka.topic_prefix)


def send(
    settings: Settings,
    *records: RoutedOrder | ControlCommand | RiskDecision,
    sink: RecordProducer | None = None,
    decided: bool = True,
) -> None:
    """Produce routed orders (each after its approved decision, as risk does, unless not ``decided``), decisions and
    control commands, and wait until the broker has them."""
    sink = sink or sender(settings)
    for record in records:
        if isinstance(record, RiskDecision):
            sink.send(risk_decisions.TOPIC, record)
        elif isinstance(record, RoutedOrder):
            if decided:
                sink.send(risk_decisions.TOPIC, approval(record))
            sink.send(routed_orders.TOPIC, record)
        else:
            sink.send(control.TOPIC, record)
    assert sink.flush(10) == 0


def kill_switch(on: bool, target: str = "*") -> ControlCommand:
    """A kill-switch command as the API writes it."""
    return ControlCommand(
        command_id=str(uuid.uuid4()),
        command=ControlCommandKind.KILL_SWITCH_ON if on else ControlCommandKind.KILL_SWITCH_OFF,
        target=target,
        reason="test",
        actor="pytest",
        parameters={},
        issued_time=utc_now(),
    )


class Reader:
    """Reads one topic from its beginning (read_committed unless told otherwise) and keeps what it decoded."""

    def __init__(self, settings: Settings, spec: TopicSpec[R], *, committed: bool = True) -> None:
        self.spec = spec
        self.records: list[Any] = []
        self._consumer = tracked(
            Consumer(
                consumer_config(
                    settings,
                    f"test-reader-{uuid.uuid4().hex[:8]}",
                    **{
                        "enable.auto.commit": False,
                        "isolation.level": "read_committed" if committed else "read_uncommitted",
                    },
                )
            )
        )
        # assign, not subscribe: no group join to wait for.
        topic = settings.kafka.topic_prefix + spec.name
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(spec.partitions)])

    def poll(self, seconds: float = 0.2) -> list[Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.05)
            if message is None or message.error():
                continue
            self.records.append(decode_message(CODEC, self.spec, message))
        return self.records

    def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.1)
            if predicate(self.records):
                return self.records
        raise AssertionError(f"{self.spec.name}: condition not met in {timeout}s; got {self.records}")

    def close(self) -> None:
        untrack(self._consumer)


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, interval: float = 0.02) -> float:
    """Wait until ``predicate()``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s")
