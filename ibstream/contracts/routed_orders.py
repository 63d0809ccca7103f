"""Risk-approved orders for execution, keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import OrderType, Side, TimeInForce


class RoutedOrder(Record):
    """A risk-approved order, ready for execution."""

    schema_name: ClassVar[str] = "routed_order"

    order_id: str
    run_id: str | None = None
    signal_id: str | None = None
    symbol: str
    side: Side
    quantity: float = Field(gt=0)
    order_type: OrderType
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    decision_id: str
    routed_time: UtcDatetime


# One partition on purpose: the consumer group then gives exactly one active executor per account, so a second
# instance waits on standby instead of placing orders from other partitions.
TOPIC = TopicSpec(
    name="orders.routed.v1",
    record=RoutedOrder,
    key=lambda order: order.order_id,
    partitions=1,
    retention_ms=FOREVER,
    doc="Only risk-approved orders; the execution consumer's input.",
)
