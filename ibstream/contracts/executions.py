"""Fills at IB with commissions, keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import ExecutionSource, Side


class Execution(Record):
    """One fill at IB with its commission."""

    schema_name: ClassVar[str] = "execution"

    exec_id: str
    order_id: str
    symbol: str
    account: str
    ib_order_id: int | None = None
    perm_id: int | None = None
    side: Side
    quantity: float
    price: float
    cumulative_quantity: float
    avg_price: float
    commission: float | None = None
    commission_currency: str | None = None
    realized_pnl: float | None = None
    source: ExecutionSource
    exec_time: UtcDatetime
    ingest_time: UtcDatetime


TOPIC = TopicSpec(
    name="executions.v1",
    record=Execution,
    key=lambda execution: execution.order_id,
    partitions=3,
    retention_ms=FOREVER,
    doc="Fills, live and recovered by reconciliation.",
)
