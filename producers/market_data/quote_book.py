"""Folds IB's separate price and size ticks into one top-of-book Quote per symbol (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ibstream.contracts import Quote
from ibstream.contracts.enums import MarketDataSource

# IB tick types (TWS API tick_types): live and their delayed twins.
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE = 0, 1, 2, 3, 4, 5
DELAYED_BID, DELAYED_ASK, DELAYED_LAST = 66, 67, 68
DELAYED_BID_SIZE, DELAYED_ASK_SIZE, DELAYED_LAST_SIZE = 69, 70, 71
LAST_TIMESTAMP, DELAYED_LAST_TIMESTAMP = 45, 88

_PRICE_FIELD = {BID: "bid", ASK: "ask", LAST: "last", DELAYED_BID: "bid", DELAYED_ASK: "ask", DELAYED_LAST: "last"}
_SIZE_FIELD = {
    BID_SIZE: "bid_size",
    ASK_SIZE: "ask_size",
    LAST_SIZE: "last_size",
    DELAYED_BID_SIZE: "bid_size",
    DELAYED_ASK_SIZE: "ask_size",
    DELAYED_LAST_SIZE: "last_size",
}
_DELAYED_TICKS = frozenset(
    {
        DELAYED_BID,
        DELAYED_ASK,
        DELAYED_LAST,
        DELAYED_BID_SIZE,
        DELAYED_ASK_SIZE,
        DELAYED_LAST_SIZE,
        DELAYED_LAST_TIMESTAMP,
    }
)


@dataclass
class _Book:
    symbol: str
    con_id: int
    values: dict[str, float] = field(default_factory=dict)
    delayed: bool = False
    dirty: bool = False


class QuoteBook:
    """Top of book per symbol. Ticks mark a symbol dirty; ``drain`` emits one Quote per dirty symbol, so the
    four ticks IB sends for one book change become one record."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}

    def track(self, symbol: str, con_id: int) -> None:
        self._books.setdefault(symbol, _Book(symbol, con_id))

    def mark_delayed(self, symbol: str, delayed: bool) -> None:
        self._books[symbol].delayed = delayed

    def is_delayed(self, symbol: str) -> bool:
        return self._books[symbol].delayed

    def on_price(self, symbol: str, tick_type: int, price: float) -> bool:
        """Apply a price tick; True if it was a top-of-book price we keep."""
        name = _PRICE_FIELD.get(tick_type)
        if name is None or price <= 0:  # IB sends -1 when a side is empty
            return False
        book = self._books[symbol]
        book.values[name] = price
        book.delayed |= tick_type in _DELAYED_TICKS
        book.dirty = True
        return True

    def on_size(self, symbol: str, tick_type: int, size: float) -> bool:
        name = _SIZE_FIELD.get(tick_type)
        if name is None:
            return False
        book = self._books[symbol]
        book.values[name] = size
        book.delayed |= tick_type in _DELAYED_TICKS
        book.dirty = True
        return True

    def drain(self, event_time: dt.datetime, ingest_time: dt.datetime) -> list[Quote]:
        quotes: list[Quote] = []
        for book in self._books.values():
            if not book.dirty:
                continue
            book.dirty = False
            values = book.values
            quotes.append(
                Quote(
                    symbol=book.symbol,
                    con_id=book.con_id,
                    bid=values.get("bid"),
                    ask=values.get("ask"),
                    last=values.get("last"),
                    bid_size=values.get("bid_size"),
                    ask_size=values.get("ask_size"),
                    last_size=values.get("last_size"),
                    event_time=event_time,
                    ingest_time=ingest_time,
                    source=MarketDataSource.DELAYED if book.delayed else MarketDataSource.LIVE,
                )
            )
        return quotes
