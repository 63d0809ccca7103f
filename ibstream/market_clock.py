"""The market's clock.

A real gateway's clock runs at wall speed; ibsim's can run 60× faster, and a replay runs at whatever speed it is
fed. Trading hours, bar times, quote ages and signal expiry must all follow the market's clock, not the wall:
* the producer anchors ``MarketClock`` on IB's `currentTime` answers and estimates its rate from successive ones;
* consumers (risk, orchestration) follow the producer through the ``market_time`` its heartbeats carry
  (``FeedClock``), when ``IBSTREAM_MARKET_CLOCK=feed``; with ``wall`` (the default, right for a real gateway) they
  use the wall clock.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Literal

ClockSource = Literal["wall", "feed"]


class MarketClock:
    def __init__(self) -> None:
        self._anchor_ib: float | None = None
        self._anchor_wall = 0.0
        self._rate = 1.0

    @property
    def rate(self) -> float:
        return self._rate

    def on_current_time(self, ib_epoch: float, wall: float) -> None:
        if self._anchor_ib is not None and wall - self._anchor_wall >= 0.5:
            observed = (ib_epoch - self._anchor_ib) / (wall - self._anchor_wall)
            # IB answers in whole seconds: smooth, and keep the estimate in a sane range.
            self._rate = min(1000.0, max(0.1, 0.5 * self._rate + 0.5 * observed))
        if self._anchor_ib is None or wall - self._anchor_wall >= 0.5:
            self._anchor_ib = ib_epoch
            self._anchor_wall = wall

    def on_bar(self, bar_start_epoch: float, wall: float) -> None:
        """A live bar proves the clock is at least at its end; move forward if our estimate lags."""
        if self._anchor_ib is None or self.epoch(wall) < bar_start_epoch + 5:
            self._anchor_ib = bar_start_epoch + 5
            self._anchor_wall = wall

    def epoch(self, wall: float) -> float:
        if self._anchor_ib is None:
            return dt.datetime.now(dt.UTC).timestamp()
        return self._anchor_ib + (wall - self._anchor_wall) * self._rate

    def now(self, wall: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.epoch(wall), dt.UTC)


class FeedClock:
    """Market time for consumers: the wall clock, or the producer's clock as its heartbeats report it.

    Thread-safe: a feed thread observes heartbeats while the agents' event loop reads ``now``. Until a first
    heartbeat arrives (or with ``source="wall"``) it answers the wall clock.
    """

    def __init__(self, source: ClockSource = "wall", monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._monotonic = monotonic
        self._clock = MarketClock()
        self._seen = False
        self._lock = threading.Lock()

    def observe(self, market_time: dt.datetime) -> None:
        with self._lock:
            self._clock.on_current_time(market_time.timestamp(), self._monotonic())
            self._seen = True

    def now(self) -> dt.datetime:
        if self.source == "wall":
            return dt.datetime.now(dt.UTC)
        with self._lock:
            if not self._seen:
                return dt.datetime.now(dt.UTC)
            return self._clock.now(self._monotonic())
