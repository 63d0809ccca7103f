"""History durations on the exchange calendar, history before the live series, and extended-hours bars (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from ibsim.clock import session_for
from ibsim.config import SimConfig
from ibsim.history import _calendar_back, _daily, history_start
from ibsim.market import MarketGenerator
from tests.calendar_days import HALF_DAY, NORMAL_DAY, THANKSGIVING, ny

#: The Monday after Thanksgiving 2026, 10:00: the week before holds a holiday and a half day.
MONDAY = dt.date(2026, 11, 30)
END = ny(MONDAY, 10, 0).timestamp()
CFG = SimConfig(start_time=ny(MONDAY, 10, 0))


def sessions_between(first: dt.date, last: dt.date) -> list[dt.date]:
    days = (first + dt.timedelta(days=k) for k in range((last - first).days + 1))
    return [d for d in days if session_for(d, "rth") is not None]


@pytest.mark.parametrize(
    ("n", "unit", "first_session"),
    [
        (1, "D", MONDAY),
        (3, "D", dt.date(2026, 11, 25)),  # Mon 30th, Fri 27th (half day), Wed 25th: Thanksgiving has no session
        (1, "W", dt.date(2026, 11, 24)),  # the sessions after Monday the 23rd
        (1, "M", dt.date(2026, 11, 2)),  # after October 30th: Saturday the 31st and Sunday have none
        (1, "Y", dt.date(2025, 12, 1)),
    ],
)
def test_durations_count_sessions_on_the_exchange_calendar(n: int, unit: str, first_session: dt.date) -> None:
    assert history_start(END, n, unit, "rth", extended=False) == ny(first_session, 9, 30).timestamp()


def test_extended_history_starts_at_the_first_sessions_pre_market() -> None:
    assert history_start(END, 2, "D", "rth", extended=True) == ny(HALF_DAY, 4, 0).timestamp()
    assert history_start(END, 600, "S", "rth", extended=True) == END - 600


def test_months_back_keep_to_the_shorter_months_last_day() -> None:
    assert _calendar_back(dt.date(2026, 3, 31), 1, "M") == dt.date(2026, 2, 28)
    assert _calendar_back(dt.date(2026, 1, 15), 2, "M") == dt.date(2025, 11, 15)
    assert _calendar_back(dt.date(2024, 2, 29), 1, "Y") == dt.date(2023, 2, 28)


def test_a_month_of_daily_bars_is_every_session_of_the_month_and_half_days_are_short() -> None:
    g = MarketGenerator(CFG)
    start = history_start(END, 1, "M", "rth", extended=False)
    daily = _daily(g.bars("AAPL", start, END), "rth")
    days = [dt.datetime.fromtimestamp(b.time, ny(MONDAY, 0, 0).tzinfo).date() for b in daily]
    assert days == sessions_between(dt.date(2026, 11, 2), MONDAY) and THANKSGIVING not in days
    by_day = dict(zip(days, daily, strict=True))
    # a whole session's volume against one that closed at 13:00: about 6.5 h of trading against 3.5 h
    assert 0.4 < by_day[HALF_DAY].volume / by_day[NORMAL_DAY].volume < 0.7
    assert len(g.bars("AAPL", ny(HALF_DAY, 9, 30).timestamp(), ny(HALF_DAY, 16, 0).timestamp())) == 210 * 12


def test_history_before_the_live_series_joins_it_and_does_not_depend_on_who_asked_first() -> None:
    g = MarketGenerator(CFG)
    inst = CFG.instrument("MSFT")
    assert inst is not None
    anchor_open = g.first_bar_time()
    before = g.bars("MSFT", anchor_open - 10 * 86_400, anchor_open)
    # the last session before the live series closes where the live walk started from
    assert before[-1].close == pytest.approx(inst.start_price, abs=inst.min_tick)
    # asking for the older part alone, in a fresh generator, gives the same bars
    older = MarketGenerator(CFG).bars("MSFT", anchor_open - 10 * 86_400, anchor_open - 5 * 86_400)
    assert older == [b for b in before if b.time < anchor_open - 5 * 86_400]
    assert g.earliest_bar_time() < anchor_open - 360 * 86_400


def test_extended_hours_run_from_0400_to_2000_and_join_the_regular_session() -> None:
    g = MarketGenerator(CFG)
    regular = g.bars("SPY", ny(NORMAL_DAY, 0, 0).timestamp(), ny(NORMAL_DAY, 23, 59).timestamp())
    everything = g.bars("SPY", ny(NORMAL_DAY, 0, 0).timestamp(), ny(NORMAL_DAY, 23, 59).timestamp(), extended=True)
    assert [b.time for b in everything] == sorted(b.time for b in everything)
    assert (everything[0].time, everything[-1].time + 5) == (
        ny(NORMAL_DAY, 4, 0).timestamp(),
        ny(NORMAL_DAY, 20, 0).timestamp(),
    )
    assert len(everything) == 16 * 720 and set(regular) <= set(everything)
    pre = [b for b in everything if b.time < regular[0].time]
    previous_close = g.bars(
        "SPY", ny(dt.date(2026, 11, 23), 15, 59).timestamp(), ny(dt.date(2026, 11, 23), 16, 0).timestamp()
    )
    assert pre[0].open == pytest.approx(previous_close[-1].close, rel=0.002)  # the bridge leaves from the last close
    assert pre[-1].close == pytest.approx(regular[0].open, rel=0.002)  # and arrives at the open
    assert sum(b.volume for b in pre) < sum(b.volume for b in regular[: len(pre)])  # thinly traded


def test_extended_hours_after_a_half_day_end_at_1700_and_a_holiday_has_none() -> None:
    g = MarketGenerator(CFG)
    half = g.bars("SPY", ny(HALF_DAY, 0, 0).timestamp(), ny(HALF_DAY, 23, 59).timestamp(), extended=True)
    assert (half[0].time, half[-1].time + 5) == (ny(HALF_DAY, 4, 0).timestamp(), ny(HALF_DAY, 17, 0).timestamp())
    holiday = ny(THANKSGIVING, 0, 0).timestamp(), ny(THANKSGIVING, 23, 59).timestamp()
    assert g.bars("SPY", *holiday, extended=True) == []
