"""Market generator: determinism by seed, ground truth independent of observation, aggregation."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest

from ibsim.clock import SimClock, session_for
from ibsim.config import EXCHANGE_TZ, SimConfig
from ibsim.market import MarketGenerator, aggregate

START = dt.datetime(2025, 1, 7, 10, 0, tzinfo=EXCHANGE_TZ)  # a Tuesday
CFG = SimConfig(start_time=START)
OPEN = int(dt.datetime(2025, 1, 7, 9, 30, tzinfo=EXCHANGE_TZ).timestamp())


def test_same_seed_same_series_different_seed_differs() -> None:
    a = MarketGenerator(CFG).bars("AAPL", OPEN, OPEN + 3600)
    b = MarketGenerator(CFG).bars("AAPL", OPEN, OPEN + 3600)
    c = MarketGenerator(replace(CFG, seed=7)).bars("AAPL", OPEN, OPEN + 3600)
    assert a == b and len(a) == 720
    assert [x.close for x in a] != [x.close for x in c]


def test_bars_do_not_depend_on_what_was_observed_before() -> None:
    # observing in a different order (or not at all) must not change the series
    g1 = MarketGenerator(CFG)
    late_first = g1.bars("MSFT", OPEN + 7200, OPEN + 7300)
    g1.quote("MSFT", OPEN + 10)
    g2 = MarketGenerator(CFG)
    everything = g2.bars("MSFT", g2.first_bar_time(), OPEN + 7300)
    assert late_first == [b for b in everything if b.time >= OPEN + 7200]


def test_history_session_and_overnight_continuity() -> None:
    g = MarketGenerator(CFG)
    prev_open = int(dt.datetime(2025, 1, 6, 9, 30, tzinfo=EXCHANGE_TZ).timestamp())
    assert g.first_bar_time() == prev_open  # one history session by default
    prev = g.bars("SPY", prev_open, prev_open + 23_400)
    assert len(prev) == 4680 and prev[-1].time == prev_open + 23_400 - 5
    today = g.bars("SPY", OPEN, OPEN + 5)[0]
    assert abs(today.open / prev[-1].close - 1) < 0.05  # gap, not a jump to another universe


def test_bar_consistency_and_quote_spread() -> None:
    g = MarketGenerator(replace(CFG, spread_ticks=4))
    for b in g.bars("NVDA", OPEN, OPEN + 600):
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.low <= b.wap <= b.high and b.volume > 0 and b.count >= 5
        qs = [g.quote("NVDA", b.time + k) for k in range(5)]
        assert qs[0].last == b.open and qs[-1].last == b.close
        assert max(q.last for q in qs) == b.high and sum(q.last_size for q in qs) * 100 == b.volume
        assert all(q.ask - q.bid == pytest.approx(0.04) and q.bid < q.last < q.ask for q in qs)


def test_displayed_sizes_move_within_a_second_prices_do_not() -> None:
    g = MarketGenerator(CFG)
    second = OPEN + 60
    quotes = [g.quote("AAPL", second + k / 200) for k in range(200)]  # a tick every 5 ms of market time
    assert {(q.time, q.bid, q.ask, q.last, q.last_size, q.volume) for q in quotes} == {
        (second, quotes[0].bid, quotes[0].ask, quotes[0].last, quotes[0].last_size, quotes[0].volume)
    }
    sizes = [(q.bid_size, q.ask_size) for q in quotes]
    changes = sum(1 for a, b in itertools.pairwise(sizes) if a != b)
    assert changes > 150, f"only {changes} of 199 ticks changed the book: the quote rate would follow the clock"
    assert all(size >= 1 for pair in sizes for size in pair)
    again = MarketGenerator(CFG)
    assert quotes == [again.quote("AAPL", second + k / 200) for k in range(200)]  # deterministic


def test_market_closed_outside_rth_and_frozen_quote() -> None:
    g = MarketGenerator(CFG)
    close = OPEN + 23_400
    assert g.in_session(OPEN) and not g.in_session(close) and not g.in_session(OPEN - 1)
    q = g.quote("AAPL", close + 3600)
    assert not q.in_session and q.last == g.bars("AAPL", close - 5, close)[-1].close
    assert g.bars("AAPL", close, close + 7200) == []
    assert session_for(dt.date(2025, 1, 11), "rth") is None  # Saturday
    assert session_for(dt.date(2025, 1, 11), "24h") is not None


def test_aggregate_aligns_and_merges() -> None:
    g = MarketGenerator(CFG)
    five = g.bars("QQQ", OPEN, OPEN + 600)
    minutes = aggregate(five, 60)
    assert len(minutes) == 10 and [m.time for m in minutes] == list(range(OPEN, OPEN + 600, 60))
    first = five[:12]
    m0 = minutes[0]
    assert (m0.open, m0.close, m0.high, m0.low) == (
        first[0].open,
        first[-1].close,
        max(b.high for b in first),
        min(b.low for b in first),
    )
    assert m0.volume == sum(b.volume for b in first) and m0.count == sum(b.count for b in first)
    hourly = aggregate(g.bars("QQQ", OPEN, OPEN + 3600), 3600)
    assert hourly[0].time == OPEN  # 09:30 label, not 09:00


def test_clock_speed_advance_and_validation() -> None:
    wall = [100.0]
    clock = SimClock(START, 60.0, wall=lambda: wall[0])
    assert clock.now() == START.timestamp()
    wall[0] += 2
    assert clock.now() == START.timestamp() + 120
    clock.advance(30)
    clock.set_speed(1.0)
    wall[0] += 1
    assert clock.now() == START.timestamp() + 151
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        SimClock(START, 0.0)


def test_a_held_clock_stands_still_then_runs_on_from_where_it_stood() -> None:
    wall = [100.0]
    clock = SimClock(START, 60.0, wall=lambda: wall[0])
    clock.hold()
    wall[0] += 10
    assert clock.held and clock.now() == START.timestamp()
    clock.advance(5)  # a jump while held moves where it stands
    clock.release()
    assert not clock.held and clock.now() == START.timestamp() + 5
    wall[0] += 1
    assert clock.now() == START.timestamp() + 65
