"""ibsim's sessions follow the exchange calendar: no session on holidays, 13:00 on half days."""

from __future__ import annotations

from ibsim.clock import session_for
from tests.calendar_days import HALF_DAY, NORMAL_DAY, THANKSGIVING, ny


def test_ibsim_sessions_follow_the_exchange_calendar() -> None:
    assert session_for(THANKSGIVING, "rth") is None
    half = session_for(HALF_DAY, "rth")
    assert half is not None and half.close == int(ny(HALF_DAY, 13, 0).timestamp())
    normal = session_for(NORMAL_DAY, "rth")
    assert normal is not None and (normal.open, normal.close) == (
        int(ny(NORMAL_DAY, 9, 30).timestamp()),
        int(ny(NORMAL_DAY, 16, 0).timestamp()),
    )
    assert session_for(THANKSGIVING, "24h") is not None
