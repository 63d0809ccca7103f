"""Exchange days the calendar tests share: a holiday, a half day and a normal day (NYSE, 2026)."""

from __future__ import annotations

import datetime as dt

from ibstream.market_hours import EXCHANGE_TZ

THANKSGIVING = dt.date(2026, 11, 26)
HALF_DAY = dt.date(2026, 11, 27)  # the day after Thanksgiving: the exchange closes at 13:00
NORMAL_DAY = dt.date(2026, 11, 24)


def ny(day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
    """A New York time of ``day``."""
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=EXCHANGE_TZ)
