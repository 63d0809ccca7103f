"""Historical data: reqHistoricalData (with keepUpToDate), reqHeadTimestamp.

Bars are aggregated from the same 5-second bars the real-time feed sends, so history and live agree exactly. IB
returns whole bars: the first one is the bucket containing the start; durations count sessions on the exchange
calendar ("N D" is N sessions back, "N W"/"N M"/"N Y" the sessions since that date: :func:`history_start`), back to a
year before the first live session (:mod:`ibsim.extended_history`); daily bars are one per session, dated by the
session's day. useRTH=0 adds pre-market (04:00) and post-market (to 20:00) bars to intraday bar sizes (not to
keepUpToDate's updates, which follow the regular-hours live feed). With pacing on (the default), requests for bars of
30 seconds or less that break IB's documented limits get 162 (:mod:`ibsim.pacing`). keepUpToDate subscriptions resend
the newest, still-growing bar on each new 5-second bar, unless the feed is dead.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from ibsim import messages as m
from ibsim.clock import BAR_SECONDS, exchange_date, previous_sessions, session_for
from ibsim.config import Instrument
from ibsim.extended_history import PRE_MARKET_SECONDS, pre_market_window
from ibsim.gateway import Gateway
from ibsim.market import Bar, aggregate
from ibsim.pacing import PACING_TEXT, HistKey
from ibsim.session import HistSub, Session
from ibsim.wire import ProtocolError
from ibstream.sim.market_view import Session as TradingSession

log = logging.getLogger("ibsim")


class History:
    """Request handlers and the keepUpToDate updates."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def on_head_timestamp(self, s: Session, req: m.ReqHeadTimestamp, now: float) -> None:
        inst = self.gw.lookup(s, req.req_id, req.contract)
        if inst is not None:
            s.send(m.head_timestamp(req.req_id, self.gw.market.earliest_bar_time(), req.format_date))

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
        extended = not req.use_rth and bar_seconds < 86_400 and self.gw.config.trading_hours == "rth"
        start = history_start(end, n, unit, self.gw.config.trading_hours, extended)
        if bar_seconds < 86_400:
            # IB returns whole bars: the first one is the bucket containing the start
            start = start // bar_seconds * bar_seconds
        earliest = self.gw.market.earliest_bar_time() - (PRE_MARKET_SECONDS if extended else 0)
        # Nothing before the history floor: answered without generating the year in between.
        five = [] if end <= earliest else self.gw.market.bars(inst.symbol, max(start, earliest), end, extended=extended)
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


def history_start(end: float, n: int, unit: str, trading_hours: str, extended: bool) -> float:
    """Where a request for ``n`` ``unit`` of history ending at ``end`` starts, as IB counts durations.

    Seconds are seconds. "N D" is the last N sessions that opened before ``end``; "N W", "N M", "N Y" are the
    sessions after the same date N weeks, months or years earlier, all on the exchange calendar (holidays have no
    session, half days a short one). With ``extended`` (useRTH=0, intraday bars) the first session's pre-market
    is included.
    """
    if unit == "S":
        return end - n
    last = exchange_date(end)
    if unit == "D":
        recent = [x for x in previous_sessions(last + dt.timedelta(days=1), n + 1, trading_hours) if x.open < end]
        first = recent[-n] if len(recent) >= n else (recent[0] if recent else None)
    else:
        first = _first_session_after(_calendar_back(last, n, unit), end, trading_hours)
    if first is None:
        return end
    return pre_market_window(first).open if extended else first.open


def _first_session_after(day: dt.date, end: float, trading_hours: str) -> TradingSession | None:
    """The first session after ``day`` that opened before ``end``."""
    last = exchange_date(end)
    while day < last:
        day += dt.timedelta(days=1)
        found = session_for(day, trading_hours)
        if found is not None and found.open < end:
            return found
    return None


def _calendar_back(day: dt.date, n: int, unit: str) -> dt.date:
    """The same date ``n`` weeks, months or years before ``day`` (the month's last day where it is shorter)."""
    if unit == "W":
        return day - dt.timedelta(weeks=n)
    months = n * (12 if unit == "Y" else 1)
    y, mo = divmod(day.year * 12 + day.month - 1 - months, 12)
    mo += 1
    last_of_month = (dt.date(y + mo // 12, mo % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(y, mo, min(day.day, last_of_month))
