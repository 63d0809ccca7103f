"""Historical data: reqHistoricalData (with keepUpToDate), reqHeadTimestamp.

Bars are aggregated from the same 5-second bars the real-time feed sends, so history and live agree exactly. IB
returns whole bars: the first one is the bucket containing the start; "N D" means N trading sessions back; daily
bars are one per session, dated by the session's day. With pacing on (the default), requests for bars of 30 seconds
or less that break IB's documented limits get 162 (:mod:`ibsim.pacing`). keepUpToDate subscriptions resend the
newest, still-growing bar on each new 5-second bar, unless the feed is dead.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from ibsim import messages as m
from ibsim.clock import BAR_SECONDS, exchange_date, session_for
from ibsim.config import Instrument
from ibsim.gateway import Gateway
from ibsim.market import Bar, aggregate
from ibsim.pacing import PACING_TEXT, HistKey
from ibsim.session import HistSub, Session
from ibsim.wire import ProtocolError

log = logging.getLogger("ibsim")


class History:
    """Request handlers and the keepUpToDate updates."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def on_head_timestamp(self, s: Session, req: m.ReqHeadTimestamp, now: float) -> None:
        inst = self.gw.lookup(s, req.req_id, req.contract)
        if inst is not None:
            s.send(m.head_timestamp(req.req_id, self.gw.market.first_bar_time(), req.format_date))

    def on_cancel_historical(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.hist.pop(req.arg, None)

    def on_req_historical(self, s: Session, req: m.ReqHistoricalData, now: float) -> None:
        inst = self.gw.lookup(s, req.req_id, req.contract)
        if inst is None:
            return
        bar_seconds = m.MAP_BAR_SIZE.get(req.bar_size.strip())
        if bar_seconds is None:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} Historical data bar size setting is invalid.")
            return
        try:
            n, unit = m.duration_seconds(req.duration)
            end = min(m.parse_ib_datetime(req.end_date_time, now), now)
        except ProtocolError as exc:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} {exc}")
            return
        if req.keep_up_to_date and req.end_date_time.strip():
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} End date not supported with live updates")
            return
        if self._paced(s, req, inst, bar_seconds):
            return
        start = self._sessions_back(end, n) if unit == "D" else end - n * m.MAP_DURATION_UNIT[unit]
        if bar_seconds < 86_400:
            # IB returns whole bars: the first one is the bucket containing the start
            start = start // bar_seconds * bar_seconds
        five = self.gw.market.bars(inst.symbol, max(start, self.gw.market.first_bar_time()), end)
        bars = self._aggregate(five, bar_seconds)
        if not bars:
            s.error(
                req.req_id,
                162,
                f"{m.ERROR_TEXT[162]}HMDS query returned no data: {inst.symbol}@SMART {req.what_to_show.title()}",
            )
            return
        s.send(m.historical_data(req.req_id, start, end, bars, bar_seconds, req.format_date))
        if req.keep_up_to_date:
            nxt = five[-1].time + BAR_SECONDS if five else int(end) // BAR_SECONDS * BAR_SECONDS
            s.hist[req.req_id] = HistSub(inst.symbol, bar_seconds, req.format_date, nxt, bars[-1].time)

    def _paced(self, s: Session, req: m.ReqHistoricalData, inst: Instrument, bar_seconds: int) -> bool:
        """Whether the request breaks IB's pacing limits (and was answered with 162)."""
        if not self.gw.pacing:
            return False
        key = HistKey(
            inst.con_id,
            req.contract.exchange,
            req.what_to_show,
            req.end_date_time,
            req.bar_size,
            req.duration,
            req.use_rth,
        )
        violation = self.gw.pacer.check(key, bar_seconds, time.monotonic())
        if violation is None:
            return False
        log.info("pacing violation for client %s: %s", s.client_id, violation)
        s.error(req.req_id, 162, PACING_TEXT)
        return True

    def _aggregate(self, five: list[Bar], bar_seconds: int) -> list[Bar]:
        if bar_seconds >= 86_400 and five:
            return _daily(five, self.gw.config.trading_hours)
        return aggregate(five, bar_seconds, 0)

    def _sessions_back(self, end: float, n: int) -> float:
        """Open of the n-th most recent session starting before ``end`` ("N D" = N trading days)."""
        day = exchange_date(end)
        found = 0
        start = end
        for _ in range(n * 7 + 14):
            sess = session_for(day, self.gw.config.trading_hours)
            if sess is not None and sess.open < end:
                found += 1
                start = sess.open
                if found == n:
                    break
            day -= dt.timedelta(days=1)
        return start

    def stream(self, s: Session, now: float) -> None:
        """One pump tick for one session: update every keepUpToDate subscription."""
        for req_id, hsub in list(s.hist.items()):
            self._push_update(s, req_id, hsub, now, self.gw.feed_dead(hsub.symbol))

    def _push_update(self, s: Session, req_id: int, h: HistSub, now: float, muted: bool) -> None:
        market = self.gw.market
        new = market.bars(h.symbol, h.next_time, now)
        if not new:
            return
        h.next_time = new[-1].time + BAR_SECONDS
        if muted:
            return
        width = h.bar_seconds
        bucket = new[-1].time // width * width if width < 86_400 else h.bucket_start
        bucket = max(bucket, h.bucket_start)
        current = market.bars(h.symbol, bucket, h.next_time)
        if not current:
            return
        merged = aggregate(current, max(width, BAR_SECONDS), bucket if width >= 86_400 else 0)[-1]
        h.bucket_start = merged.time
        s.send(m.historical_data_update(req_id, merged, width, h.format_date))


def _daily(five: list[Bar], trading_hours: str) -> list[Bar]:
    """One bar per session, dated by the session's day."""
    out: list[Bar] = []
    by_day: dict[dt.date, list[Bar]] = {}
    for b in five:
        by_day.setdefault(exchange_date(b.time), []).append(b)
    for day, bars in by_day.items():
        sess = session_for(day, trading_hours)
        origin = sess.open if sess else bars[0].time
        out += aggregate(bars, 10**9, origin)
    return out
