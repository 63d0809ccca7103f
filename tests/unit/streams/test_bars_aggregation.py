"""Timeframe aggregation: session alignment, OHLCV, dedup by (symbol, start), late bars as revisions, sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ibstream.contracts import Bar
from ibstream.contracts.bars import AGGREGATE_TOPICS, TIMEFRAMES, timeframe_topic
from ibstream.contracts.enums import MarketDataSource
from streams.bars.aggregation import AggregationConfig, Emitted, bucket_bounds, on_bar
from tests.calendar_days import HALF_DAY, NORMAL_DAY, ny

OPEN = ny(NORMAL_DAY, 9, 30).astimezone(UTC)
NOW = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
CONFIG = AggregationConfig()


def bar(
    at: datetime,
    close: float = 100.0,
    *,
    high: float | None = None,
    low: float | None = None,
    volume: float = 100.0,
    source: MarketDataSource = MarketDataSource.LIVE,
    symbol: str = "AAPL",
) -> Bar:
    return Bar(
        symbol=symbol,
        start=at,
        open=close - 0.1,
        high=high if high is not None else close + 0.5,
        low=low if low is not None else close - 0.5,
        close=close,
        volume=volume,
        wap=close,
        count=3,
        event_time=at + timedelta(seconds=5),
        ingest_time=at + timedelta(seconds=5),
        source=source,
    )


def feed(bars: list[Bar], state: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Emitted]]:
    out: list[Emitted] = []
    for one in bars:
        state, emitted = on_bar(state, one, NOW, CONFIG)
        out += emitted
    assert state is not None
    return state, out


def seconds(first: datetime, count: int, step: int = 5) -> list[datetime]:
    return [first + timedelta(seconds=step * i) for i in range(count)]


def of(emitted: list[Emitted], timeframe: str) -> list[Bar]:
    return [item.bar for item in emitted if item.timeframe == timeframe]


def test_every_timeframe_has_its_topic_named_as_strategies_subscribe() -> None:
    assert TIMEFRAMES == ("5s", "1m", "5m", "15m", "1h", "1d")
    assert [timeframe_topic(tf).name for tf in TIMEFRAMES] == [f"md.bars.{tf}.v1" for tf in TIMEFRAMES]
    assert all(spec.record is Bar for spec in AGGREGATE_TOPICS.values())
    with pytest.raises(KeyError, match="choose from"):
        timeframe_topic("2m")


def test_hour_bars_start_at_the_half_hour_and_the_last_is_cut_at_the_close() -> None:
    assert bucket_bounds(ny(NORMAL_DAY, 10, 45), "1h", "rth") == (
        ny(NORMAL_DAY, 10, 30).astimezone(UTC),
        ny(NORMAL_DAY, 11, 30).astimezone(UTC),
    )
    assert bucket_bounds(ny(NORMAL_DAY, 15, 59, 55), "1h", "rth") == (
        ny(NORMAL_DAY, 15, 30).astimezone(UTC),
        ny(NORMAL_DAY, 16, 0).astimezone(UTC),
    )
    # A half day closes at 13:00: its last hour bar is 12:30-13:00 and its day bar ends there.
    assert bucket_bounds(ny(HALF_DAY, 12, 40), "1h", "rth") == (
        ny(HALF_DAY, 12, 30).astimezone(UTC),
        ny(HALF_DAY, 13, 0).astimezone(UTC),
    )
    assert bucket_bounds(ny(HALF_DAY, 10, 0), "1d", "rth") == (
        ny(HALF_DAY, 9, 30).astimezone(UTC),
        ny(HALF_DAY, 13, 0).astimezone(UTC),
    )
    assert bucket_bounds(ny(NORMAL_DAY, 9, 47), "15m", "rth") == (
        ny(NORMAL_DAY, 9, 45).astimezone(UTC),
        ny(NORMAL_DAY, 10, 0).astimezone(UTC),
    )


def test_bars_outside_the_regular_session_are_not_aggregated() -> None:
    assert bucket_bounds(ny(NORMAL_DAY, 9, 29, 55), "1m", "rth") is None
    assert bucket_bounds(ny(NORMAL_DAY, 16, 0), "1d", "rth") is None
    state, out = feed([bar(ny(NORMAL_DAY, 8, 0).astimezone(UTC) + timedelta(seconds=5 * i)) for i in range(24)])
    assert out == []
    assert all(held == [] for held in state["buckets"].values())


def test_a_24h_market_aggregates_by_the_utc_day() -> None:
    assert bucket_bounds(datetime(2026, 11, 28, 3, 7, tzinfo=UTC), "1h", "24h") == (
        datetime(2026, 11, 28, 3, 0, tzinfo=UTC),
        datetime(2026, 11, 28, 4, 0, tzinfo=UTC),
    )


def test_a_full_minute_is_emitted_when_its_last_bar_arrives_with_its_ohlcv() -> None:
    closes = [100.0 + i for i in range(12)]
    bars = [bar(at, close) for at, close in zip(seconds(OPEN, 12), closes, strict=True)]
    bars[3] = bar(OPEN + timedelta(seconds=15), 103.0, high=120.0)
    bars[7] = bar(OPEN + timedelta(seconds=35), 107.0, low=90.0, volume=300.0)
    _, out = feed(bars)
    (minute,) = of(out, "1m")
    assert minute.start == OPEN
    assert (minute.open, minute.high, minute.low, minute.close) == (99.9, 120.0, 90.0, 111.0)
    assert minute.volume == 100.0 * 11 + 300.0
    assert minute.count == 36
    assert minute.wap == pytest.approx((sum(closes) * 100.0 + 107.0 * 200.0) / minute.volume)
    assert minute.revision == 0
    assert minute.event_time == OPEN + timedelta(minutes=1)
    assert of(out, "5m") == []  # not complete yet


def test_a_minute_missing_its_last_bar_is_emitted_when_the_next_minute_starts() -> None:
    _, out = feed([bar(at) for at in seconds(OPEN, 11)])
    assert of(out, "1m") == []
    _, out = feed([bar(at) for at in seconds(OPEN, 11)] + [bar(OPEN + timedelta(minutes=1))])
    assert [b.start for b in of(out, "1m")] == [OPEN]


def test_five_minutes_of_bars_make_five_minute_bars_and_one_five_minute_bar() -> None:
    _, out = feed([bar(at, 100.0 + i) for i, at in enumerate(seconds(OPEN, 60))])
    assert [b.start for b in of(out, "1m")] == [OPEN + timedelta(minutes=m) for m in range(5)]
    (five,) = of(out, "5m")
    assert (five.start, five.open, five.close, five.volume) == (OPEN, 99.9, 159.0, 6000.0)
    assert of(out, "15m") == of(out, "1h") == of(out, "1d") == []


def test_a_replayed_bar_changes_nothing() -> None:
    bars = [bar(at) for at in seconds(OPEN, 12)]
    state, first = feed(bars)
    again, out = feed([bar(at, source=MarketDataSource.REPLAY) for at in seconds(OPEN, 12)], state)
    assert len(of(first, "1m")) == 1
    assert out == []
    assert again["buckets"]["1m"] == state["buckets"]["1m"]


def test_a_late_backfilled_bar_revises_its_emitted_aggregate() -> None:
    times = seconds(OPEN, 24)
    missing = times[4]
    state, out = feed([bar(at) for at in times if at != missing])
    assert [b.start for b in of(out, "1m")] == [OPEN, OPEN + timedelta(minutes=1)]
    assert of(out, "1m")[0].volume == 1100.0

    state, out = feed([bar(missing, high=130.0, volume=50.0, source=MarketDataSource.BACKFILL)], state)
    (revised,) = of(out, "1m")
    assert revised.start == OPEN
    assert revised.revision == 1
    assert (revised.high, revised.volume) == (130.0, 1150.0)
    assert revised.source is MarketDataSource.BACKFILL
    assert of(out, "5m") == []  # the 5-minute bar is still open: it simply holds the bar


def test_a_backfilled_run_revises_each_aggregate_once() -> None:
    times = seconds(OPEN, 60)
    gap = set(times[14:30])  # 09:31:10 … 09:32:25
    state, out = feed([bar(at) for at in times if at not in gap])
    assert [b.revision for b in of(out, "5m")] == [0]
    state, out = feed([bar(at, source=MarketDataSource.BACKFILL) for at in sorted(gap)], state)
    assert [(b.start, b.revision) for b in of(out, "1m")] == [
        (OPEN + timedelta(minutes=1), 1),
        (OPEN + timedelta(minutes=2), 1),
    ]
    assert [(b.start, b.revision, b.volume) for b in of(out, "5m")] == [(OPEN, 1, 6000.0)]


def test_a_bar_older_than_the_late_window_is_ignored() -> None:
    state, _ = feed([bar(OPEN + timedelta(seconds=5))])
    state, _ = feed([bar(OPEN + timedelta(minutes=45))], state)
    state, out = feed([bar(OPEN, high=500.0)], state)
    assert of(out, "1m") == of(out, "5m") == of(out, "15m") == []
    assert all(bucket[0] > int(OPEN.timestamp() * 1e6) for bucket in state["buckets"]["1m"])


def test_the_day_bar_is_the_session_and_is_emitted_with_the_closing_bar() -> None:
    close = ny(HALF_DAY, 13, 0).astimezone(UTC)
    opening = ny(HALF_DAY, 9, 30).astimezone(UTC)
    state, out = feed([bar(opening, 50.0), bar(opening + timedelta(hours=2), 70.0, high=80.0)])
    assert of(out, "1d") == []
    _, out = feed([bar(close - timedelta(seconds=5), 60.0)], state)
    (day,) = of(out, "1d")
    assert (day.start, day.open, day.high, day.close) == (opening, 49.9, 80.0, 60.0)
    # The 11:30 hour (past now) and the 12:30 hour, cut at the 13:00 close.
    assert [b.start for b in of(out, "1h")] == [
        ny(HALF_DAY, 11, 30).astimezone(UTC),
        ny(HALF_DAY, 12, 30).astimezone(UTC),
    ]


def test_delayed_data_is_never_passed_off_as_live() -> None:
    bars = [bar(at) for at in seconds(OPEN, 12)]
    bars[5] = bar(bars[5].start, source=MarketDataSource.DELAYED)
    bars[6] = bar(bars[6].start, source=MarketDataSource.BACKFILL)
    _, out = feed(bars)
    assert of(out, "1m")[0].source is MarketDataSource.DELAYED


def test_the_state_is_json_and_survives_a_round_trip() -> None:
    import json

    state, _ = feed([bar(at) for at in seconds(OPEN, 7)])
    restored = json.loads(json.dumps(state))
    _, out = feed([bar(at) for at in seconds(OPEN + timedelta(seconds=35), 5)], restored)
    (minute,) = of(out, "1m")
    assert minute.volume == 1200.0
