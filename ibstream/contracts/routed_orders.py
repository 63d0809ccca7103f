"""Risk-approved orders for execution, keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import FOREVER, TopicSpec, UtcDatetime
from ibstream.contracts.order_terms import OrderKeyed, OrderTerms


class RoutedOrder(OrderTerms, OrderKeyed):
    """A risk-approved order, ready for execution."""

    schema_name: ClassVar[str] = "routed_order"

    # order_id (from OrderKeyed), then the order terms (avro/include/order_terms.avsc), then these:
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
