"""5-second bars per symbol, keyed by symbol; (symbol, start) identifies a bar across live, backfill and replay."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import MarketDataSource


class Bar(Record):
    """One 5-second OHLCV bar (reqRealTimeBars or a historical backfill)."""

    schema_name: ClassVar[str] = "bar"

    symbol: str
    start: UtcDatetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int
    event_time: UtcDatetime
    ingest_time: UtcDatetime
    source: MarketDataSource


TOPIC = TopicSpec(
    name="md.bars.5s.v1",
    record=Bar,
    key=lambda bar: bar.symbol,
    partitions=6,
    retention_ms=30 * DAY_MS,
    doc="5-second bars, live and backfilled.",
)
