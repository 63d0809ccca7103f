"""ibsim honours reqRealTimeBars(useRTH=1) in its 24h mode: the UAT's market open/close scenarios depend on it."""

from __future__ import annotations

import datetime as dt

import pytest

from ibsim.config import EXCHANGE_TZ
from ibsim.market_data import _in_rth


@pytest.mark.parametrize(
    ("ny", "inside"),
    [
        ("2026-11-24T09:29:55", False),
        ("2026-11-24T09:30:00", True),
        ("2026-11-24T15:59:55", True),
        ("2026-11-24T16:00:00", False),
        ("2026-11-28T12:00:00", False),  # a Saturday
    ],
)
def test_regular_trading_hours_bound_the_bars_of_an_rth_subscription(ny: str, inside: bool) -> None:
    moment = dt.datetime.fromisoformat(ny).replace(tzinfo=EXCHANGE_TZ)
    assert _in_rth(moment.timestamp()) is inside
