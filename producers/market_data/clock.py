"""The market's clock as IB tells it (pure).

A real gateway's clock runs at wall speed; ibsim's can run 60× faster. Trading hours, bar times and quote event
times must follow the gateway's clock, so the producer anchors it on IB's `currentTime` answers and estimates its
rate from successive answers.
"""

from __future__ import annotations

import datetime as dt


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
