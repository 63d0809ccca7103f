"""Order lifecycle events from IB, keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus


class OrderEvent(Record):
    """One step of an order's lifecycle at IB, with IB's status, code and message verbatim."""

    schema_name: ClassVar[str] = "order_event"

    event_id: str
    order_id: str
    leg: OrderLeg
    symbol: str
    ib_order_id: int | None = None
    perm_id: int | None = None
    status: OrderStatus
    previous_status: OrderStatus | None = None
    filled_quantity: float
    remaining_quantity: float
    avg_fill_price: float | None = None
    broker_status: str | None = None
    broker_code: int | None = None
    broker_message: str | None = None
    source: ExecutionSource
    reconciliation_status: str | None = None
    event_time: UtcDatetime


TOPIC = TopicSpec(
    name="orders.events.v1",
    record=OrderEvent,
    key=lambda event: event.order_id,
    partitions=3,
    retention_ms=FOREVER,
    doc="Every order step at IB.",
)
