"""Quotes: top of book per symbol, keyed by symbol."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import MarketDataSource


class Quote(Record):
    """Top of book for one instrument, as IB reported it (reqMktData ticks folded into one snapshot)."""

    schema_name: ClassVar[str] = "quote"

    symbol: str
    con_id: int
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_size: float | None = None
    event_time: UtcDatetime
    ingest_time: UtcDatetime
    source: MarketDataSource


TOPIC = TopicSpec(
    name="md.quotes.v1",
    record=Quote,
    key=lambda quote: quote.symbol,
    partitions=6,
    retention_ms=7 * DAY_MS,
    doc="Quotes from the IB producer.",
)
