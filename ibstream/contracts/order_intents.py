"""Order intents (before risk), keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import FOREVER, TopicSpec, UtcDatetime
from ibstream.contracts.order_terms import OrderKeyed, OrderTerms


class OrderIntent(OrderTerms, OrderKeyed):
    """A request to trade, before risk. ``order_id = uuid5(run_id)`` so a retry cannot make a second order."""

    schema_name: ClassVar[str] = "order_intent"

    # order_id (from OrderKeyed), then the order terms (avro/include/order_terms.avsc), then these:
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
