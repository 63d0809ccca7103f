"""The exchange calendar: trading days, holidays and half days (XNYS), as the producer, ibsim and the demo use it."""

from __future__ import annotations

import datetime as dt

from ibstream.market_hours import TradingCalendar, session_on
from tests.calendar_days import HALF_DAY, NORMAL_DAY, THANKSGIVING, ny


def test_a_normal_day_trades_from_0930_to_1600() -> None:
    session = session_on(NORMAL_DAY)
    assert session is not None and not session.early_close
    assert (session.open, session.close) == (ny(NORMAL_DAY, 9, 30), ny(NORMAL_DAY, 16, 0))
    calendar = TradingCalendar("rth")
    assert calendar.is_open(ny(NORMAL_DAY, 15, 59, 59)) and not calendar.is_open(ny(NORMAL_DAY, 16, 0))


def test_a_holiday_has_no_session_and_no_bars() -> None:
    assert session_on(THANKSGIVING) is None
    assert session_on(dt.date(2026, 12, 25)) is None
    calendar = TradingCalendar("rth")
    assert not calendar.is_open(ny(THANKSGIVING, 11, 0))
    assert calendar.bar_starts(ny(THANKSGIVING, 9, 30), ny(THANKSGIVING, 16, 0)) == []
    assert TradingCalendar("24h").is_open(ny(THANKSGIVING, 11, 0))


def test_a_half_day_closes_at_1300_and_its_last_bar_starts_at_125955() -> None:
    session = session_on(HALF_DAY)
    assert session is not None and session.early_close
    assert session.close == ny(HALF_DAY, 13, 0)
    calendar = TradingCalendar("rth")
    starts = calendar.bar_starts(ny(HALF_DAY, 12, 59, 50), ny(HALF_DAY, 15, 0))
    assert starts == [ny(HALF_DAY, 12, 59, 50), ny(HALF_DAY, 12, 59, 55)]
