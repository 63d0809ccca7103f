"""Simulated time and trading sessions (pure apart from the injectable wall clock)."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable

from ibsim.config import EXCHANGE_TZ
from ibstream.market_hours import session_on
from ibstream.sim.market_view import Session

BAR_SECONDS = 5


def session_for(day: dt.date, trading_hours: str) -> Session | None:
    """The session of a calendar day (New York), or ``None`` when the market is closed all day.

    In ``rth`` mode the exchange's calendar decides (:func:`ibstream.market_hours.session_on`): no session on
    weekends and holidays, an early close on half days.
    """
    if trading_hours == "24h":
        start = dt.datetime(day.year, day.month, day.day, tzinfo=EXCHANGE_TZ)
        end = start + dt.timedelta(days=1)
        return Session(day, int(start.timestamp()), int(end.timestamp()))
    regular = session_on(day)
    if regular is None:
        return None
    return Session(day, int(regular.open.timestamp()), int(regular.close.timestamp()))


def exchange_date(t: float) -> dt.date:
    """Calendar date in New York of epoch time ``t``."""
    return dt.datetime.fromtimestamp(t, EXCHANGE_TZ).date()


def previous_sessions(day: dt.date, count: int, trading_hours: str) -> list[Session]:
    """``count`` sessions strictly before ``day``, oldest first."""
    found: list[Session] = []
    d = day
    while len(found) < count:
        d -= dt.timedelta(days=1)
        s = session_for(d, trading_hours)
        if s is not None:
            found.append(s)
    return list(reversed(found))


class SimClock:
    """Simulated epoch time: ``start + (wall - wall_at_start) * speed + manual offset``.

    Thread-safe. The wall source is injectable so unit tests can drive time by hand.
    """

    def __init__(
        self, start: dt.datetime, speed: float, wall: Callable[[], float] = time.monotonic, *, held: bool = False
    ) -> None:
        if speed <= 0 or math.isnan(speed):
            raise ValueError(f"speed must be positive, got {speed}")
        self._lock = threading.Lock()
        self._wall = wall
        self._start = start.timestamp()
        self._wall0 = wall()
        self._speed = speed
        self._offset = 0.0
        #: While held, the simulated time it stands at (see :meth:`hold`).
        self._held: float | None = self._start if held else None

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return self._speed

    def now(self) -> float:
        """Current simulated epoch seconds."""
        with self._lock:
            return self._now()

    def _now(self) -> float:
        if self._held is not None:
            return self._held
        return self._start + (self._wall() - self._wall0) * self._speed + self._offset

    @property
    def held(self) -> bool:
        """Whether the clock stands still (:meth:`hold`) until :meth:`release`."""
        return self._held is not None

    def hold(self) -> None:
        """Stop simulated time where it is (e.g. until every client of a demo is up, so none misses the open)."""
        with self._lock:
            if self._held is None:
                self._held = self._now()

    def release(self) -> None:
        """Let simulated time run on from where it was held, at the same speed."""
        with self._lock:
            if self._held is not None:
                self._start, self._wall0, self._offset, self._held = self._held, self._wall(), 0.0, None

    def now_dt(self) -> dt.datetime:
        """Current simulated time in New York."""
        return dt.datetime.fromtimestamp(self.now(), EXCHANGE_TZ)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (never backward: bars already published stay published)."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        with self._lock:
            if self._held is not None:
                self._held += seconds
            else:
                self._offset += seconds

    def set_speed(self, speed: float) -> None:
        """Change the speed without a jump in simulated time."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        with self._lock:
            w = self._wall()
            current = self._now()
            self._start, self._wall0, self._offset, self._speed = current, w, 0.0, speed
            if self._held is not None:
                self._held = current

    def wall_to_sim(self, wall_seconds: float) -> float:
        """Duration conversion (wall seconds to simulated seconds)."""
        return wall_seconds * self._speed
