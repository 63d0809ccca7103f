"""The demo's simulated day: the last trading day; a plan with fixed times of day takes the last full one."""

from __future__ import annotations

import datetime as dt

from ibstream.market_hours import latest_session
from tests.calendar_days import HALF_DAY, NORMAL_DAY, THANKSGIVING, ny
from tooling.demo import session_close, session_start


def test_the_demo_runs_on_the_last_trading_day_and_a_fixed_time_plan_on_the_last_full_one() -> None:
    assert latest_session(THANKSGIVING).day == dt.date(2026, 11, 25)
    assert session_start(THANKSGIVING) == ny(dt.date(2026, 11, 25), 9, 30)
    assert session_start(dt.date(2026, 11, 29)) == ny(HALF_DAY, 9, 30)  # Sunday → Friday, a half day
    assert session_close(HALF_DAY) == ny(HALF_DAY, 13, 0)
    assert session_start(dt.date(2026, 11, 29), full_day=True) == ny(dt.date(2026, 11, 25), 9, 30)
    assert session_start(NORMAL_DAY) == ny(NORMAL_DAY, 9, 30)
