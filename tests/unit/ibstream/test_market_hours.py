"""The exchange calendar: trading days, holidays and half days (XNYS), as the producer, ibsim and the demo use it."""

from __future__ import annotations

import datetime as dt

from ibstream.market_hours import EXCHANGE_TZ, TradingCalendar, session_on

THANKSGIVING = dt.date(2026, 11, 26)
HALF_DAY = dt.date(2026, 11, 27)  # the day after Thanksgiving: the exchange closes at 13:00
NORMAL_DAY = dt.date(2026, 11, 24)


def _ny(day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=EXCHANGE_TZ)


def test_a_normal_day_trades_from_0930_to_1600() -> None:
    session = session_on(NORMAL_DAY)
    assert session is not None and not session.early_close
    assert (session.open, session.close) == (_ny(NORMAL_DAY, 9, 30), _ny(NORMAL_DAY, 16, 0))
    calendar = TradingCalendar("rth")
    assert calendar.is_open(_ny(NORMAL_DAY, 15, 59, 59)) and not calendar.is_open(_ny(NORMAL_DAY, 16, 0))


def test_a_holiday_has_no_session_and_no_bars() -> None:
    assert session_on(THANKSGIVING) is None
    assert session_on(dt.date(2026, 12, 25)) is None
    calendar = TradingCalendar("rth")
    assert not calendar.is_open(_ny(THANKSGIVING, 11, 0))
    assert calendar.bar_starts(_ny(THANKSGIVING, 9, 30), _ny(THANKSGIVING, 16, 0)) == []
    assert TradingCalendar("24h").is_open(_ny(THANKSGIVING, 11, 0))


def test_a_half_day_closes_at_1300_and_its_last_bar_starts_at_125955() -> None:
    session = session_on(HALF_DAY)
    assert session is not None and session.early_close
    assert session.close == _ny(HALF_DAY, 13, 0)
    calendar = TradingCalendar("rth")
    starts = calendar.bar_starts(_ny(HALF_DAY, 12, 59, 50), _ny(HALF_DAY, 15, 0))
    assert starts == [_ny(HALF_DAY, 12, 59, 50), _ny(HALF_DAY, 12, 59, 55)]
