"""Timeframes on the real broker: 5-second bars in → 1m and 5m bars out on their own topics; a late 5-second bar →
its aggregates re-emitted as revisions; a replay adds nothing."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pytest

from ibstream.config import Settings
from ibstream.contracts import Bar, bars, utc_now
from ibstream.contracts.enums import MarketDataSource
from tests.calendar_days import NORMAL_DAY, ny

from .streams_support import StreamsWorker, TopicReader, producer

pytestmark = pytest.mark.integration

OPEN = ny(NORMAL_DAY, 9, 30).astimezone(UTC)


def five_second_bar(symbol: str, i: int, source: MarketDataSource = MarketDataSource.LIVE) -> Bar:
    at = OPEN + timedelta(seconds=5 * i)
    price = 100.0 + i * 0.01
    return Bar(
        symbol=symbol,
        start=at,
        open=price,
        high=price + 0.05,
        low=price - 0.05,
        close=price,
        volume=100,
        wap=price,
        count=4,
        event_time=at + timedelta(seconds=5),
        ingest_time=utc_now(),
        source=source,
    )


def test_five_second_bars_in_minute_and_five_minute_bars_out_and_a_late_bar_revises_them(
    settings: Settings, tmp_path: Path
) -> None:
    worker = StreamsWorker(settings, tmp_path, "bars").start()
    minutes = TopicReader(settings, bars.AGGREGATE_TOPICS["1m"])
    fives = TopicReader(settings, bars.AGGREGATE_TOPICS["5m"])
    out = producer(settings)
    late = 70  # 09:35:50, held back
    try:
        for symbol in ("AAPL", "MSFT"):
            for i in range(121):  # 09:30:00 … 09:40:00
                if i != late:
                    out.send(bars.TOPIC, five_second_bar(symbol, i))
        out.flush()
        got: list[Bar] = minutes.wait_for(20, 90)
        assert len(got) == 20, worker.log()[-3000:]
        assert {(b.symbol, b.start) for b in got} == {
            (symbol, OPEN + timedelta(minutes=m)) for symbol in ("AAPL", "MSFT") for m in range(10)
        }
        first = next(b for b in got if b.symbol == "AAPL" and b.start == OPEN)
        assert (first.open, first.close, first.volume, first.revision) == (100.0, 100.11, 1200.0, 0)
        incomplete = next(b for b in got if b.symbol == "AAPL" and b.start == OPEN + timedelta(minutes=5))
        assert incomplete.volume == 1100.0
        five: list[Bar] = fives.wait_for(4, 30)
        assert sorted((b.symbol, b.start, b.volume) for b in five) == [
            (symbol, OPEN + timedelta(minutes=m), volume)
            for symbol in ("AAPL", "MSFT")
            for m, volume in ((0, 6000.0), (5, 5900.0))
        ]

        # The held-back bar arrives late, as a backfill: the minute and the five minutes holding it are revised.
        out.send(bars.TOPIC, five_second_bar("AAPL", late, MarketDataSource.BACKFILL))
        out.flush()
        revised = minutes.wait_for(21, 30)[20:]
        assert [(b.symbol, b.start, b.revision, b.volume, b.source) for b in revised] == [
            ("AAPL", OPEN + timedelta(minutes=5), 1, 1200.0, MarketDataSource.BACKFILL)
        ]
        revised_five = fives.wait_for(5, 30)[4:]
        assert [(b.start, b.revision, b.volume) for b in revised_five] == [(OPEN + timedelta(minutes=5), 1, 6000.0)]

        # The same bars again, as a replay: nothing new.
        for i in range(121):
            out.send(bars.TOPIC, five_second_bar("AAPL", i, MarketDataSource.REPLAY))
        out.flush()
        minutes.poll_until(lambda _: False, 4.0)
        assert len(minutes.records) == 21
    finally:
        worker.stop()
        minutes.close()
        fives.close()
