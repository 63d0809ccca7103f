"""When the market is open, and which 5-second bars a session must contain.

Exchange holidays and half days are not modelled: on such a day the producer sees no data during "open" hours
and raises stale-feed alerts, which an operator can tell apart from a real outage by the date. (A holiday
calendar is a small, separate addition.)
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo

EXCHANGE_TZ = ZoneInfo("America/New_York")
OPEN = dt.time(9, 30)
CLOSE = dt.time(16, 0)
BAR_SECONDS = 5

TradingHours = Literal["rth", "24h"]


class TradingCalendar:
    """Regular trading hours (09:30-16:00 New York, weekdays) or a market that never closes."""

    def __init__(self, hours: TradingHours = "rth") -> None:
        self.hours = hours

    def is_open(self, at: dt.datetime) -> bool:
        if self.hours == "24h":
            return True
        local = at.astimezone(EXCHANGE_TZ)
        return local.weekday() < 5 and OPEN <= local.time() < CLOSE

    def bar_starts(self, first: dt.datetime, last: dt.datetime, bar_seconds: int = BAR_SECONDS) -> list[dt.datetime]:
        """Every bar start in [first, last] (aligned to the bar size) that falls inside trading hours."""
        step = dt.timedelta(seconds=bar_seconds)
        epoch = int(first.timestamp())
        aligned = epoch + (-epoch % bar_seconds)
        current = dt.datetime.fromtimestamp(aligned, dt.UTC)
        starts: list[dt.datetime] = []
        while current <= last:
            if self.is_open(current):
                starts.append(current)
            current += step
        return starts
