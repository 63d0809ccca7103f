"""Pure parts of the market data producer: quote folding, gap detection, staleness, market clock, calendar."""

from __future__ import annotations

import datetime as dt

import pytest

from ibstream.contracts.enums import GapState, MarketDataSource
from ibstream.market_clock import MarketClock
from ibstream.market_hours import EXCHANGE_TZ, TradingCalendar
from producers.market_data.bar_tracker import BarTracker
from producers.market_data.quote_book import ASK, ASK_SIZE, BID, BID_SIZE, DELAYED_BID, LAST, QuoteBook
from producers.market_data.staleness import StalenessMonitor

MONDAY_10AM = dt.datetime(2025, 1, 6, 10, 0, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
S5 = dt.timedelta(seconds=5)


def test_quote_book_folds_ticks_into_one_quote_per_symbol() -> None:
    book = QuoteBook()
    book.track("AAPL", 265598)
    book.track("MSFT", 272093)
    for tick, value in [(BID, 189.10), (BID_SIZE, 300), (ASK, 189.12), (ASK_SIZE, 200)]:
        if tick in (BID, ASK):
            book.on_price("AAPL", tick, value)
        else:
            book.on_size("AAPL", tick, value)
    assert not book.on_price("AAPL", 9, 188.0)  # close price: not top of book
    assert not book.on_price("AAPL", LAST, -1.0)  # IB's "no value"
    [quote] = book.drain(MONDAY_10AM, MONDAY_10AM)
    assert (quote.symbol, quote.bid, quote.ask, quote.bid_size, quote.ask_size) == ("AAPL", 189.10, 189.12, 300, 200)
    assert quote.last is None and quote.source is MarketDataSource.LIVE
    assert book.drain(MONDAY_10AM, MONDAY_10AM) == []  # nothing changed since


def test_delayed_ticks_mark_the_quote_delayed() -> None:
    book = QuoteBook()
    book.track("SPY", 756733)
    book.on_price("SPY", DELAYED_BID, 520.0)
    [quote] = book.drain(MONDAY_10AM, MONDAY_10AM)
    assert quote.source is MarketDataSource.DELAYED and quote.bid == 520.0


def test_calendar_rth_and_bar_starts() -> None:
    calendar = TradingCalendar("rth")
    assert calendar.is_open(MONDAY_10AM)
    assert not calendar.is_open(dt.datetime(2025, 1, 6, 16, 0, tzinfo=EXCHANGE_TZ))
    assert not calendar.is_open(dt.datetime(2025, 1, 4, 12, 0, tzinfo=EXCHANGE_TZ))  # Saturday
    close = dt.datetime(2025, 1, 6, 15, 59, 50, tzinfo=EXCHANGE_TZ)
    next_open = dt.datetime(2025, 1, 7, 9, 30, 5, tzinfo=EXCHANGE_TZ)
    starts = calendar.bar_starts(close, next_open)
    assert len(starts) == 4  # 15:59:50, 15:59:55, then 09:30:00 and 09:30:05 next day
    assert TradingCalendar("24h").is_open(dt.datetime(2025, 1, 4, 3, 0, tzinfo=dt.UTC))


def test_gap_between_live_bars_is_detected_with_its_cause() -> None:
    tracker = BarTracker(TradingCalendar("rth"))
    now = MONDAY_10AM
    assert tracker.on_live_bar("AAPL", MONDAY_10AM, now) == (True, None)
    assert tracker.on_live_bar("AAPL", MONDAY_10AM + S5, now) == (True, None)
    tracker.note_interruption("disconnect")
    publish, gap = tracker.on_live_bar("AAPL", MONDAY_10AM + 6 * S5, now)
    assert publish and gap is not None
    assert gap.expected == [MONDAY_10AM + n * S5 for n in range(2, 6)]
    assert gap.cause == "disconnect"
    record = gap.record(GapState.OPEN, now)
    assert (record.missing_bars, record.recovered_bars, record.start, record.end) == (
        4,
        0,
        gap.expected[0],
        gap.expected[-1],
    )
    # A repeated or older bar (e.g. right after a resubscribe) is not published twice.
    assert tracker.on_live_bar("AAPL", MONDAY_10AM + 6 * S5, now) == (False, None)
    assert tracker.on_live_bar("AAPL", MONDAY_10AM, now) == (False, None)


def test_overnight_silence_is_not_a_gap() -> None:
    tracker = BarTracker(TradingCalendar("rth"))
    last = dt.datetime(2025, 1, 6, 15, 59, 55, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
    first = dt.datetime(2025, 1, 7, 9, 30, 0, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
    tracker.on_live_bar("SPY", last, last)
    assert tracker.on_live_bar("SPY", first, first) == (True, None)


def test_a_holiday_and_a_half_days_afternoon_are_no_gap() -> None:
    tracker = BarTracker(TradingCalendar("rth"))
    wednesday_close = dt.datetime(2026, 11, 25, 15, 59, 55, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
    friday_open = dt.datetime(2026, 11, 27, 9, 30, 0, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)  # Thanksgiving between
    friday_close = dt.datetime(2026, 11, 27, 12, 59, 55, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)  # a 13:00 close
    monday_open = dt.datetime(2026, 11, 30, 9, 30, 0, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
    tracker.on_live_bar("SPY", wednesday_close, wednesday_close)
    assert tracker.on_live_bar("SPY", friday_open, friday_open) == (True, None)
    tracker.on_live_bar("SPY", friday_close, friday_close)
    assert tracker.on_live_bar("SPY", monday_open, monday_open) == (True, None)


def test_staleness_fires_once_resolves_and_sleeps_outside_hours() -> None:
    monitor = StalenessMonitor(threshold_seconds=2.0)
    monitor.track("AAPL", 0.0)
    monitor.track("MSFT", 0.0)
    monitor.on_tick("AAPL", 1.5)
    changes = monitor.check(2.5, market_open=True)
    assert [(c.symbol, c.stale) for c in changes] == [("MSFT", True)]
    assert monitor.check(3.0, market_open=True) == []  # fires once
    resolved = monitor.on_tick("MSFT", 3.1)
    assert resolved is not None and not resolved.stale
    assert monitor.check(100.0, market_open=False) == []
    assert monitor.check(101.0, market_open=True) == []  # the overnight silence does not count


@pytest.mark.parametrize("speed", [1.0, 60.0])
def test_market_clock_follows_ib_time_at_its_speed(speed: float) -> None:
    clock = MarketClock()
    base = MONDAY_10AM.timestamp()
    for second in range(6):
        clock.on_current_time(float(int(base + second * speed)), float(second))
    assert clock.rate == pytest.approx(speed, rel=0.1)
    assert clock.epoch(5.5) == pytest.approx(base + 5.5 * speed, abs=speed * 0.3 + 1)


def test_feed_clock_follows_the_producer_or_the_wall() -> None:
    from ibstream.market_clock import FeedClock

    ticks = iter([0.0, 2.0, 2.0, 3.0])
    feed = FeedClock("feed", monotonic=lambda: next(ticks))
    assert abs((feed.now() - dt.datetime.now(dt.UTC)).total_seconds()) < 1  # nothing seen yet: the wall
    feed.observe(MONDAY_10AM)  # monotonic 0.0
    feed.observe(MONDAY_10AM + dt.timedelta(seconds=120))  # monotonic 2.0: 60x
    assert feed.now() == pytest.approx(MONDAY_10AM + dt.timedelta(seconds=120), abs=dt.timedelta(seconds=1))
    later = feed.now()  # monotonic 3.0: one more wall second ≈ 30-60 market seconds later (the rate is smoothed)
    assert later > MONDAY_10AM + dt.timedelta(seconds=140)
    wall = FeedClock("wall")
    wall.observe(MONDAY_10AM)
    assert abs((wall.now() - dt.datetime.now(dt.UTC)).total_seconds()) < 1


def test_a_gap_is_unfinished_until_its_latest_record_closes_it() -> None:
    from ibstream.contracts import Gap, gaps

    def record(gap_id: str, state: GapState, minute: int) -> Gap:
        return Gap(
            gap_id=gap_id,
            symbol="AAPL",
            start=MONDAY_10AM,
            end=MONDAY_10AM,
            state=state,
            cause="disconnect",
            missing_bars=1,
            recovered_bars=0,
            detected_time=MONDAY_10AM,
            updated_time=MONDAY_10AM + dt.timedelta(minutes=minute),
        )

    history = [
        record("a", GapState.BACKFILLED, 2),
        record("a", GapState.OPEN, 0),  # delivered out of order: time decides
        record("b", GapState.OPEN, 0),
        record("b", GapState.BACKFILLING, 1),
        record("c", GapState.UNRECOVERABLE, 3),
    ]
    assert [(gap.gap_id, gap.state) for gap in gaps.unfinished(history)] == [("b", GapState.BACKFILLING)]
    assert gaps.latest_states(history)["a"].state is GapState.BACKFILLED
