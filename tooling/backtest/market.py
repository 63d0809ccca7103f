"""The recorded bars as the matching engine's market (``ibstream.sim.market_view.MarketView``). Pure.

A 5-second bar says where the price went, not in which order: the engine sees one quote per second walking the bar
open → the extreme nearer the open's side first → the other extreme → close (a bar that closed up went down first,
one that closed down went up first), the close held for the last second. So a stop and a target both inside one bar
resolve as a pessimistic trader would assume. Bid, ask and last are that price (recorded bars carry no spread).
Between a symbol's bars the last close stands; the seconds before the newest bar's start (a gap: overnight, a
halt) are out of session, so the engine does not match a resting order against the same stale close second by
second through the night.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from ibstream.contracts import Bar
from ibstream.market_hours import EXCHANGE_TZ, session_on
from ibstream.sim.market_view import Quote, Session

BAR_SECONDS = 5
#: Shown as the size at the bid and the ask: recorded bars carry none, and the engine fills whole orders.
BOOK_SIZE = 1_000_000


def bar_path(bar: Bar) -> tuple[float, float, float, float, float]:
    """The price in each second of the bar (see the module docstring)."""
    if bar.close >= bar.open:
        return bar.open, bar.low, bar.high, bar.close, bar.close
    return bar.open, bar.high, bar.low, bar.close, bar.close


class BarMarket:
    """The newest bar of each symbol, and the sessions of the exchange calendar (for MOC/LOC orders)."""

    def __init__(self) -> None:
        self._paths: dict[str, tuple[int, tuple[float, float, float, float, float]]] = {}
        self._volume: dict[str, float] = {}
        self._sessions: dict[date, Session | None] = {}
        self._newest = 0  # the newest bar's start (epoch seconds)

    def update(self, bar: Bar) -> None:
        """The symbol trades in ``bar`` now."""
        start = int(bar.start.timestamp())
        self._paths[bar.symbol] = (start, bar_path(bar))
        self._newest = max(self._newest, start)
        self._volume[bar.symbol] = self._volume.get(bar.symbol, 0.0) + bar.volume

    def last(self, symbol: str) -> float:
        """The symbol's latest close (its mark)."""
        return self._paths[symbol][1][-1]

    def quote(self, symbol: str, t: float) -> Quote:
        start, path = self._paths[symbol]
        offset = int(t) - start
        price = path[offset] if 0 <= offset < BAR_SECONDS else path[-1]
        return Quote(
            time=int(t),
            bid=price,
            ask=price,
            last=price,
            bid_size=BOOK_SIZE,
            ask_size=BOOK_SIZE,
            last_size=0,
            volume=int(self._volume.get(symbol, 0.0)),
            in_session=True,
        )

    def in_session(self, t: float) -> bool:
        """From the newest bar's start on: the recorded bars are the market's hours (see the module docstring)."""
        return t >= self._newest

    def session_at(self, t: float) -> Session | None:
        """The exchange's regular session around ``t`` (New York day), for the closing auction."""
        day = datetime.fromtimestamp(t, UTC).astimezone(EXCHANGE_TZ).date()
        if day not in self._sessions:
            regular = session_on(day)
            self._sessions[day] = (
                None if regular is None else Session(day, int(regular.open.timestamp()), int(regular.close.timestamp()))
            )
        return self._sessions[day]
