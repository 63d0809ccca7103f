"""Live market data subscriptions: one quote and one 5-second bar request per symbol, known by request id.

Every (re)subscription cancels a symbol's old requests and asks again under fresh request ids, so late ticks of
an old subscription find no symbol and are ignored. A lost connection drops every subscription with it: the
request ids are forgotten and the next connection subscribes again.
"""

from __future__ import annotations

import itertools

from ibstream.ib.connection import IbConnection
from ibstream.ib.session import stock_contract
from producers.market_data.instruments import Instrument


class Subscriptions:
    """The request ids of the live quote and bar subscriptions, mapped to their symbols."""

    def __init__(
        self,
        connection: IbConnection,
        instruments: dict[str, Instrument],
        req_ids: itertools.count[int],
        *,
        use_rth: bool,
    ) -> None:
        self.connection = connection
        self.instruments = instruments
        self.req_ids = req_ids
        self.use_rth = use_rth
        self.quotes: dict[int, str] = {}
        self.bars: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.quotes) + len(self.bars)

    def quote_symbol(self, req_id: int) -> str | None:
        return self.quotes.get(req_id)

    def bar_symbol(self, req_id: int) -> str | None:
        return self.bars.get(req_id)

    def symbol(self, req_id: int) -> str | None:
        """The symbol of a quote or bar request (an IB error names only the request id)."""
        return self.quotes.get(req_id) or self.bars.get(req_id)

    def subscribe_all(self) -> None:
        """(Re)subscribe every symbol under fresh request ids, so late ticks of an old subscription are ignored."""
        for instrument in self.instruments.values():
            self.cancel(instrument)
            self.subscribe(instrument)

    def subscribe(self, instrument: Instrument) -> None:
        session = self.connection.session
        contract = stock_contract(instrument.symbol, instrument.con_id, instrument.primary_exchange)
        instrument.quote_req = next(self.req_ids)
        instrument.bar_req = next(self.req_ids)
        self.quotes[instrument.quote_req] = instrument.symbol
        self.bars[instrument.bar_req] = instrument.symbol
        session.req_mkt_data(instrument.quote_req, contract)
        session.req_real_time_bars(instrument.bar_req, contract, use_rth=self.use_rth)

    def cancel(self, instrument: Instrument) -> None:
        session = self.connection.session
        if instrument.quote_req:
            session.cancel_mkt_data(instrument.quote_req)
            self.quotes.pop(instrument.quote_req, None)
        if instrument.bar_req:
            session.cancel_real_time_bars(instrument.bar_req)
            self.bars.pop(instrument.bar_req, None)

    def resubscribe(self, symbols: list[str]) -> None:
        """Cancel and ask again for ``symbols`` only (streams that went silent)."""
        for symbol in symbols:
            instrument = self.instruments.get(symbol)
            if instrument is not None:
                self.cancel(instrument)
                self.subscribe(instrument)

    def cancel_all(self) -> None:
        """Cancel every subscription and forget its ids (a pause: nothing streams until ``subscribe_all``)."""
        for instrument in self.instruments.values():
            self.cancel(instrument)
            instrument.quote_req = instrument.bar_req = 0

    def drop_all(self) -> None:
        """The connection is gone and its subscriptions with it: nothing to cancel, the ids are forgotten."""
        self.quotes.clear()
        self.bars.clear()
        for instrument in self.instruments.values():
            instrument.quote_req = instrument.bar_req = 0
