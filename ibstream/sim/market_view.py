"""What the matching engine sees of a market: a trading session, a quote per second, and the ``MarketView`` that
answers both. ibsim's generated market and the backtest's recorded bars are two implementations of it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session: ``[open, close)`` in epoch seconds, both multiples of 5."""

    day: dt.date
    open: int
    close: int

    def contains(self, t: float) -> bool:
        """Whether simulated epoch time ``t`` is inside the session."""
        return self.open <= t < self.close


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and last trade at one simulated second."""

    time: int
    bid: float
    ask: float
    last: float
    bid_size: int
    ask_size: int
    last_size: int
    #: Cumulative session volume (shares) up to and including this second.
    volume: int
    in_session: bool


class MarketView(Protocol):
    """What the engine needs from a market: the quote of a symbol at a second, and the session at a time."""

    def quote(self, symbol: str, t: float) -> Quote: ...

    def in_session(self, t: float) -> bool: ...

    def session_at(self, t: float) -> Session | None: ...
