"""Contracts and streaming market data: reqContractDetails, reqMktData, reqRealTimeBars, reqMarketDataType.

Entitlement: without live data an account gets 354 for type 1 and, for delayed types 3/4, 10167 followed by delayed
ticks (:data:`DELAY_SECONDS` behind, delayed tick types). Quotes are sent as changes only: bid and ask when price or
size moved, last/volume/timestamp once per new trade. Real-time bars are 5-second bars, each sent once when complete;
bars that complete while the feed is dead (outage, farm down, stalled symbol) are lost for that subscriber, as at IB.
"""

from __future__ import annotations

import datetime as dt

from ibsim import messages as m
from ibsim.clock import BAR_SECONDS, exchange_date, session_for
from ibsim.gateway import Gateway
from ibsim.session import BarSub, MktSub, Session

DELAY_SECONDS = 900  # IB delayed data lags 15 minutes


def _in_rth(t: float) -> bool:
    """Whether simulated time ``t`` falls in regular trading hours (09:30-16:00 New York, weekdays)."""
    rth = session_for(exchange_date(t), "rth")
    return rth is not None and rth.contains(t)


class MarketData:
    """Request handlers and the per-tick streaming of quotes and real-time bars."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # -- requests ---------------------------------------------------------------------------------

    def on_contract_details(self, s: Session, req: m.ReqContractDetails, now: float) -> None:
        inst = self.gw.lookup(s, req.req_id, req.contract)
        if inst is None:
            return
        today = exchange_date(now)
        days = [today + dt.timedelta(days=k) for k in range(7)]
        days = [d for d in days if session_for(d, "rth") is not None][:5]
        s.send(m.contract_data(req.req_id, inst, days, version=s.version))
        s.send(m.contract_data_end(req.req_id))

    def on_market_data_type(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.md_type, s.md_type_requested = req.arg, True

    def on_req_mkt_data(self, s: Session, req: m.ReqMktData, now: float) -> None:
        inst = self.gw.lookup(s, req.req_id, req.contract)
        if inst is None:
            return
        if self.gw.faults.competing_session:
            s.error(req.req_id, 10197)
            return
        delayed = False
        if not self.gw.live_entitled:
            if s.md_type in (3, 4):
                delayed = True
                s.error(req.req_id, 10167)
            else:
                s.error(req.req_id, 354)
                return
        if s.md_type_requested or delayed:
            kind = 3 if delayed else (1 if self.gw.market.in_session(now) or s.md_type == 1 else 2)
            s.send(m.market_data_type(req.req_id, kind))
        sub = MktSub(inst.symbol, delayed)
        self._push_quote(s, req.req_id, sub, now, initial=True)
        if req.snapshot or req.regulatory_snapshot:
            s.send([57, 1, req.req_id])  # tickSnapshotEnd
            return
        s.mkt[req.req_id] = sub

    def on_cancel_mkt_data(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.mkt.pop(req.arg, None)

    def on_req_rt_bars(self, s: Session, req: m.ReqRealTimeBars, now: float) -> None:
        inst = self.gw.lookup(s, req.req_id, req.contract)
        if inst is None:
            return
        if req.bar_size != BAR_SECONDS:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} Invalid bar size {req.bar_size}: only 5 second bars")
            return
        if self.gw.faults.competing_session:
            s.error(req.req_id, 10197)
            return
        s.rtb[req.req_id] = BarSub(inst.symbol, int(now) // BAR_SECONDS * BAR_SECONDS, req.use_rth)

    def on_cancel_rt_bars(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.rtb.pop(req.arg, None)

    # -- streaming --------------------------------------------------------------------------------

    def stream(self, s: Session, now: float) -> None:
        """One pump tick for one session: quote changes, then completed real-time bars."""
        for req_id, sub in list(s.mkt.items()):
            if self.gw.feed_dead(sub.symbol):
                continue
            self._push_quote(s, req_id, sub, now)
        for req_id, bsub in list(s.rtb.items()):
            bars = self.gw.market.bars(bsub.symbol, bsub.next_time, now)
            if not bars:
                continue
            bsub.next_time = bars[-1].time + BAR_SECONDS
            if self.gw.feed_dead(bsub.symbol) or self.gw.faults.hmds_farm_down:
                continue  # the feed is dead: those bars are gone for this subscriber
            for b in bars:
                if bsub.rth_only and not _in_rth(b.time):
                    continue
                s.send(m.realtime_bar(req_id, b))

    def _push_quote(self, s: Session, req_id: int, sub: MktSub, now: float, initial: bool = False) -> None:
        t = now - DELAY_SECONDS if sub.delayed else now
        q = self.gw.market.quote(sub.symbol, t)
        if not initial and not q.in_session and sub.last.get(-1) == q.time:
            return

        def tick(kind: m.Tick) -> m.Tick:
            return m.MAP_DELAYED_TICK.get(kind, kind) if sub.delayed else kind

        last = sub.last
        if initial:
            close = self._previous_close(sub.symbol, t)
            if close is not None:
                s.send(m.tick_price(req_id, tick(m.Tick.CLOSE), close, 0))
        if last.get(m.Tick.BID) != (q.bid, q.bid_size):
            s.send(m.tick_price(req_id, tick(m.Tick.BID), q.bid, m.quote_size(q.bid_size, s.version), 1))
            last[m.Tick.BID] = (q.bid, q.bid_size)
        if last.get(m.Tick.ASK) != (q.ask, q.ask_size):
            s.send(m.tick_price(req_id, tick(m.Tick.ASK), q.ask, m.quote_size(q.ask_size, s.version), 1))
            last[m.Tick.ASK] = (q.ask, q.ask_size)
        if last.get(-1) != q.time:
            s.send(m.tick_price(req_id, tick(m.Tick.LAST), q.last, m.quote_size(q.last_size, s.version)))
            s.send(m.tick_size(req_id, tick(m.Tick.VOLUME), m.volume_size(q.volume, s.version)))
            s.send(m.tick_string(req_id, tick(m.Tick.LAST_TIMESTAMP), str(q.time)))
            last[-1] = q.time

    def _previous_close(self, symbol: str, t: float) -> float | None:
        first = self.gw.market.first_bar_time()
        day = exchange_date(t)
        sess = session_for(day, self.gw.config.trading_hours)
        cutoff = sess.open if sess is not None and sess.open <= t else t
        if cutoff <= first:
            return None
        return self.gw.market.quote(symbol, cutoff - 1).last
