"""Per-stream liveness and the competing-session pause (pure): when data stopped, and when to ask again.

A feed can be "connected" and dead: a data farm comes back (2104/2106) but the subscriptions it carried do not. The
producer records when each symbol's quotes and bars last arrived; after a farm comes back it waits a grace period
and resubscribes what stayed silent since the break (``StreamLiveness.silent_since``).

A competing live session (10197) takes the username's market data. The producer pauses (cancels its requests, one
alert, no stale-feed alerts) and asks again every ``retry_seconds``; the first data to arrive ends the pause
(``CompetingSession``).
"""

from __future__ import annotations


class StreamLiveness:
    """When each symbol's quotes and real-time bars last arrived (monotonic wall seconds)."""

    def __init__(self) -> None:
        self._quote: dict[str, float] = {}
        self._bar: dict[str, float] = {}

    def on_quote(self, symbol: str, now: float) -> None:
        self._quote[symbol] = now

    def on_bar(self, symbol: str, now: float) -> None:
        self._bar[symbol] = now

    def silent_since(self, symbols: list[str], since: float) -> list[str]:
        """Symbols whose quotes or bars have not arrived since ``since``."""
        return [
            symbol
            for symbol in symbols
            if self._quote.get(symbol, float("-inf")) < since or self._bar.get(symbol, float("-inf")) < since
        ]


class FarmRecovery:
    """A data farm broke, then came back: check the streams once a grace period after it came back."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.broken_at: float | None = None
        self.check_at: float | None = None

    def on_broken(self, now: float) -> None:
        if self.broken_at is None:
            self.broken_at = now

    def on_restored(self, now: float) -> None:
        if self.broken_at is not None:
            self.check_at = now + self.grace_seconds

    def due(self, now: float) -> float | None:
        """When the farm broke, once the grace period after its return has passed (then forgotten); else None."""
        if self.check_at is None or now < self.check_at or self.broken_at is None:
            return None
        broken_at = self.broken_at
        self.broken_at = self.check_at = None
        return broken_at


class CompetingSession:
    """Whether a competing live session holds the market data, and when to ask again."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.active = False
        self.next_probe_at = 0.0

    def start(self, now: float) -> bool:
        """A 10197 arrived; True when it starts a pause (not a probe refused again)."""
        self.next_probe_at = now + self.retry_seconds
        if self.active:
            return False
        self.active = True
        return True

    def probe_due(self, now: float) -> bool:
        """Time to ask for the data again (the next try is scheduled)."""
        if not self.active or now < self.next_probe_at:
            return False
        self.next_probe_at = now + self.retry_seconds
        return True

    def on_data(self) -> bool:
        """Data arrived; True when that ends a pause."""
        if not self.active:
            return False
        self.active = False
        return True
