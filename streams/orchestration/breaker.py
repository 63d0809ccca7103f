"""Agent0's circuit breaker: after repeated failures orchestration stops calling and fails runs fast."""

from __future__ import annotations

import time
from collections.abc import Callable

from ibstream.exceptions import IbstreamError


class CircuitOpenError(IbstreamError):
    """The breaker is open: the dependency is not called."""


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures; after ``reset_seconds`` one trial call is let
    through (half-open): success closes the circuit, failure opens it again for another period."""

    def __init__(self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._reset = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self._reset else "open"

    def before_call(self) -> None:
        """Raise CircuitOpenError while open."""
        if self.state == "open":
            raise CircuitOpenError(f"circuit open after {self._failures} consecutive failures")

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()
