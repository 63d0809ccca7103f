"""The demo's simulated day: the last trading day; a plan with fixed times of day takes the last full one."""

from __future__ import annotations

import datetime as dt

from ibstream.market_hours import EXCHANGE_TZ, latest_session
from tooling.demo import session_close, session_start

THANKSGIVING = dt.date(2026, 11, 26)
HALF_DAY = dt.date(2026, 11, 27)  # the day after Thanksgiving: the exchange closes at 13:00
NORMAL_DAY = dt.date(2026, 11, 24)


def _ny(day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=EXCHANGE_TZ)


def test_the_demo_runs_on_the_last_trading_day_and_a_fixed_time_plan_on_the_last_full_one() -> None:
    assert latest_session(THANKSGIVING).day == dt.date(2026, 11, 25)
    assert session_start(THANKSGIVING) == _ny(dt.date(2026, 11, 25), 9, 30)
    assert session_start(dt.date(2026, 11, 29)) == _ny(HALF_DAY, 9, 30)  # Sunday → Friday, a half day
    assert session_close(HALF_DAY) == _ny(HALF_DAY, 13, 0)
    assert session_start(dt.date(2026, 11, 29), full_day=True) == _ny(dt.date(2026, 11, 25), 9, 30)
    assert session_start(NORMAL_DAY) == _ny(NORMAL_DAY, 9, 30)
