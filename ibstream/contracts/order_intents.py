"""Order intents (before risk), keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import OrderType, Side, TimeInForce


class OrderIntent(Record):
    """A request to trade, before risk. ``order_id = uuid5(run_id)`` so a retry cannot make a second order."""

    schema_name: ClassVar[str] = "order_intent"

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
    requested_by: str
    created_time: UtcDatetime


TOPIC = TopicSpec(
    name="orders.intents.v1",
    record=OrderIntent,
    key=lambda intent: intent.order_id,
    partitions=3,
    retention_ms=FOREVER,
    doc="Order intents from orchestration and Agent0, input of the risk gate.",
)
