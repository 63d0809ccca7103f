"""ibsim's sessions follow the exchange calendar: no session on holidays, 13:00 on half days."""

from __future__ import annotations

import datetime as dt

from ibsim.clock import session_for
from ibstream.market_hours import EXCHANGE_TZ

THANKSGIVING = dt.date(2026, 11, 26)
HALF_DAY = dt.date(2026, 11, 27)  # the day after Thanksgiving: the exchange closes at 13:00
NORMAL_DAY = dt.date(2026, 11, 24)


def _ny(day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=EXCHANGE_TZ)


def test_ibsim_sessions_follow_the_exchange_calendar() -> None:
    assert session_for(THANKSGIVING, "rth") is None
    half = session_for(HALF_DAY, "rth")
    assert half is not None and half.close == int(_ny(HALF_DAY, 13, 0).timestamp())
    normal = session_for(NORMAL_DAY, "rth")
    assert normal is not None and (normal.open, normal.close) == (
        int(_ny(NORMAL_DAY, 9, 30).timestamp()),
        int(_ny(NORMAL_DAY, 16, 0).timestamp()),
    )
    assert session_for(THANKSGIVING, "24h") is not None
