"""Per-symbol feed staleness during trading hours (pure): when to fire and when to resolve a stale-feed alert."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StaleChange:
    symbol: str
    stale: bool
    age_seconds: float


class StalenessMonitor:
    """Ages are measured on a monotonic wall clock: a stale feed is one that stopped delivering in real time,
    whatever the market clock's speed."""

    def __init__(self, threshold_seconds: float) -> None:
        self.threshold = threshold_seconds
        self._last_tick: dict[str, float] = {}
        self._stale: set[str] = set()

    def track(self, symbol: str, now: float) -> None:
        self._last_tick.setdefault(symbol, now)

    def on_tick(self, symbol: str, now: float) -> StaleChange | None:
        self._last_tick[symbol] = now
        if symbol in self._stale:
            self._stale.discard(symbol)
            return StaleChange(symbol, False, 0.0)
        return None

    def age(self, symbol: str, now: float) -> float:
        return now - self._last_tick.get(symbol, now)

    def ages(self, now: float) -> dict[str, float]:
        return {symbol: now - last for symbol, last in self._last_tick.items()}

    def check(self, now: float, market_open: bool) -> list[StaleChange]:
        """Symbols that just became stale. Outside trading hours nothing is stale, and the clocks restart so the
        open does not alert for the overnight silence."""
        if not market_open:
            for symbol in self._last_tick:
                self._last_tick[symbol] = now
            resolved = [StaleChange(symbol, False, 0.0) for symbol in sorted(self._stale)]
            self._stale.clear()
            return resolved
        changes = []
        for symbol, last in self._last_tick.items():
            age = now - last
            if age >= self.threshold and symbol not in self._stale:
                self._stale.add(symbol)
                changes.append(StaleChange(symbol, True, age))
        return changes

    def is_stale(self, symbol: str) -> bool:
        return symbol in self._stale
