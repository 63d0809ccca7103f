"""Bars per symbol, keyed by symbol; (symbol, start) identifies a bar across live, backfill and replay.

5-second bars come from the producer on ``md.bars.5s.v1``; the streams' ``bars`` agent aggregates them into
session-aligned bars of the other timeframes, one topic each (``md.bars.1m.v1`` … ``md.bars.1d.v1``), with the same
record type. A strategy declaring timeframe ``tf`` reads ``md.bars.{tf}.v1`` (``timeframe_topic``).
"""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, FOREVER, Record, TopicSpec, UtcDatetime
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
    revision: int = 0


TOPIC = TopicSpec(
    name="md.bars.5s.v1",
    record=Bar,
    key=lambda bar: bar.symbol,
    partitions=6,
    retention_ms=30 * DAY_MS,
    doc="5-second bars, live and backfilled.",
)

#: The aggregated timeframes, shortest first, with their length in seconds (1d: the whole regular session).
AGGREGATE_SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86_400}
#: Every timeframe a strategy may declare.
TIMEFRAMES: tuple[str, ...] = ("5s", *AGGREGATE_SECONDS)

#: How long each aggregate topic keeps its bars (the 5-second bars, 30 days; the warehouse keeps them all).
_AGGREGATE_RETENTION_MS: dict[str, int] = {
    "1m": 90 * DAY_MS,
    "5m": 180 * DAY_MS,
    "15m": 365 * DAY_MS,
    "1h": 730 * DAY_MS,
    "1d": FOREVER,
}

#: ``md.bars.{tf}.v1`` for each aggregated timeframe.
AGGREGATE_TOPICS: dict[str, TopicSpec[Bar]] = {
    timeframe: TopicSpec(
        name=f"md.bars.{timeframe}.v1",
        record=Bar,
        key=lambda bar: bar.symbol,
        # Same count as the 5-second bars: the bars agent writes a symbol's aggregates to the partition it reads.
        partitions=TOPIC.partitions,
        retention_ms=_AGGREGATE_RETENTION_MS[timeframe],
        doc=f"{timeframe} bars aggregated from the 5-second bars, session-aligned; corrections as revisions.",
    )
    for timeframe in AGGREGATE_SECONDS
}


def timeframe_topic(timeframe: str) -> TopicSpec[Bar]:
    """The topic of a timeframe's bars (``"5s"`` is the producer's); KeyError naming the choices otherwise."""
    if timeframe == "5s":
        return TOPIC
    try:
        return AGGREGATE_TOPICS[timeframe]
    except KeyError:
        raise KeyError(f"no timeframe {timeframe!r}; choose from {', '.join(TIMEFRAMES)}") from None
