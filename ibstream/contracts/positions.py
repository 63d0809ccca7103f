"""Positions as IB reports them, keyed by symbol."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import ExecutionSource


class Position(Record):
    """A position as IB reports it."""

    schema_name: ClassVar[str] = "position"

    account: str
    symbol: str
    con_id: int
    quantity: float
    avg_cost: float
    market_price: float | None = None
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None
    source: ExecutionSource
    time: UtcDatetime


TOPIC = TopicSpec(
    name="positions.v1",
    record=Position,
    key=lambda position: position.symbol,
    partitions=1,
    retention_ms=365 * DAY_MS,
    doc="Positions after fills and reconciliation.",
)
