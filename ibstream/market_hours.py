"""When the market is open, and which 5-second bars a session must contain.

Regular trading hours follow the New York Stock Exchange's calendar (exchange-calendars' ``XNYS``): weekends and
exchange holidays have no session, and half days close early (13:00 New York, e.g. the day after Thanksgiving). The
calendar is read once per process into a table of session bounds; lookups are dictionary reads.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

EXCHANGE_TZ = ZoneInfo("America/New_York")
#: The regular open and close; a half day closes earlier (see :func:`session_on`).
OPEN = dt.time(9, 30)
CLOSE = dt.time(16, 0)
BAR_SECONDS = 5
#: The years the exchange calendar is built for; a day outside them falls back to weekdays 09:30-16:00.
CALENDAR_FIRST_YEAR = 2000
CALENDAR_LAST_YEAR = 2040

TradingHours = Literal["rth", "24h"]


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day's regular session, ``[open, close)`` (timezone-aware, UTC)."""

    day: dt.date
    open: dt.datetime
    close: dt.datetime

    def contains(self, at: dt.datetime) -> bool:
        return self.open <= at < self.close

    @property
    def early_close(self) -> bool:
        """Whether the exchange closes before its regular 16:00 on this day."""
        return self.close.astimezone(EXCHANGE_TZ).time() < CLOSE


@functools.cache
def _xnys_sessions() -> dict[dt.date, tuple[dt.datetime, dt.datetime]]:
    """Every XNYS session of the calendar's years: day → (open, close) in UTC."""
    import exchange_calendars  # deferred: pandas costs ~0.3 s to import, and only the first lookup needs it

    with warnings.catch_warnings():
        # exchange-calendars 4.13 still reads Series.values of tz-aware columns, which pandas 3.1 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        calendar = exchange_calendars.get_calendar(
            "XNYS", start=f"{CALENDAR_FIRST_YEAR}-01-01", end=f"{CALENDAR_LAST_YEAR}-12-31"
        )
        schedule = calendar.schedule
    return {
        day.date(): (opening.to_pydatetime(), closing.to_pydatetime())
        for day, opening, closing in zip(schedule.index, schedule["open"], schedule["close"], strict=True)
    }


@functools.lru_cache(maxsize=4096)
def session_on(day: dt.date) -> Session | None:
    """The regular session of a New York calendar day, or ``None`` on a weekend or an exchange holiday."""
    if CALENDAR_FIRST_YEAR <= day.year <= CALENDAR_LAST_YEAR:
        bounds = _xnys_sessions().get(day)
        if bounds is None:
            return None
        return Session(day, bounds[0].astimezone(dt.UTC), bounds[1].astimezone(dt.UTC))
    if day.weekday() >= 5:
        return None
    opening = dt.datetime.combine(day, OPEN, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
    return Session(day, opening, dt.datetime.combine(day, CLOSE, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC))


def latest_session(on_or_before: dt.date) -> Session:
    """The most recent trading day's session on or before ``on_or_before``."""
    day = on_or_before
    while (session := session_on(day)) is None:
        day -= dt.timedelta(days=1)
    return session


class TradingCalendar:
    """Regular trading hours on the exchange's trading days (``rth``), or a market that never closes (``24h``)."""

    def __init__(self, hours: TradingHours = "rth") -> None:
        self.hours = hours
        if hours == "rth":
            _xnys_sessions()  # read the calendar now (~0.5 s once per process), not on a live bar's path

    def is_open(self, at: dt.datetime) -> bool:
        if self.hours == "24h":
            return True
        session = session_on(at.astimezone(EXCHANGE_TZ).date())
        return session is not None and session.contains(at)

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
