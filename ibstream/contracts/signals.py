"""Trading signals, keyed by symbol."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import Side


class Signal(Record):
    """A trading signal from one strategy for one symbol."""

    schema_name: ClassVar[str] = "signal"

    signal_id: str
    symbol: str
    strategy: str
    side: Side
    confidence: float = Field(ge=0.0, le=1.0)
    entry: float
    stop: float
    take_profit: float
    bar_start: UtcDatetime
    created_time: UtcDatetime
    expiry_time: UtcDatetime
    features: dict[str, float]


TOPIC = TopicSpec(
    name="signals.v1",
    record=Signal,
    key=lambda signal: signal.symbol,
    partitions=6,
    retention_ms=365 * DAY_MS,
    doc="Signals from the strategies.",
)
