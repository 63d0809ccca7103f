"""IB's bars (real-time 5-second bars, historical bars of any size) as ``Bar`` records: one mapping for the producer's
live and backfilled bars and for ``ibstream history fetch``."""

from __future__ import annotations

from datetime import datetime, timedelta

from ibstream.contracts import Bar, utc_now
from ibstream.contracts.enums import MarketDataSource
from ibstream.ib import events


def bar_record(
    symbol: str,
    start: datetime,
    bar: events.RealtimeBar | events.HistoricalBar,
    source: MarketDataSource,
    length: timedelta,
    ingest_time: datetime | None = None,
) -> Bar:
    """The bar starting at ``start`` and lasting ``length`` (its event time is its end); ``ingest_time``: now."""
    return Bar(
        symbol=symbol,
        start=start,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        wap=bar.wap,
        count=bar.count,
        event_time=start + length,
        ingest_time=utc_now() if ingest_time is None else ingest_time,
        source=source,
    )
