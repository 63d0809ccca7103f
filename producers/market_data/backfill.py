"""Gap backfill: the bars a gap misses, asked from IB's historical data within its pacing rules.

A gap (``bar_tracker.OpenGap``) is OPEN when found, BACKFILLING while its bars are asked for, and ends BACKFILLED
(every bar recovered) or UNRECOVERABLE (IB has no data, or bars still missing after ``BACKFILL_ATTEMPTS`` answered
attempts); each state is an ``md.gaps.v1`` record. A pacing violation (162) is no attempt: it pauses every
historical request (backoff), then one request probes IB's window before the rest follow. Bars not yet asked for
wait on their gaps (``OpenGap.unrequested``), not in the loop: IB allows 60 historical requests per 10 minutes, and
waiting for that inside the loop would stop live quotes and bars for minutes after a run of disconnects. Waiting
also lets one request cover several gaps of a symbol.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.metrics import Counter

from ibstream.backoff import Backoff
from ibstream.contracts import Bar, bars, gaps, utc_now
from ibstream.contracts.enums import GapState, MarketDataSource, Severity
from ibstream.ib import events
from ibstream.ib.bar_records import bar_record as ib_bar_record
from ibstream.ib.codes import CodeKind
from ibstream.ib.connection import ConnectionState, IbConnection
from ibstream.ib.session import stock_contract
from ibstream.kafka.records import RecordProducer
from ibstream.market_hours import BAR_SECONDS, TradingCalendar
from ibstream.telemetry import log_context, produce_span, record_error
from producers.market_data.bar_tracker import STEP, BarTracker, OpenGap
from producers.market_data.instruments import Instrument

log = logging.getLogger(__name__)

COMPONENT = "producer"
BACKFILL_CHUNK_SECONDS = 3600
BACKFILL_ATTEMPTS = 3
#: IB's window is 10 minutes; pausing longer than this between probes would only delay recovery.
PACING_BACKOFF_CAP_SECONDS = 120.0


@dataclass
class BackfillRequest:
    """One reqHistoricalData out to IB: the bars it covers, for every open gap of its symbol that wants them."""

    symbol: str
    gap_ids: set[str]
    covers: set[dt.datetime]
    sent_at: float
    bars: list[events.HistoricalBar] = field(default_factory=list)


def bar_record(
    symbol: str, start_epoch: int, bar: events.RealtimeBar | events.HistoricalBar, source: MarketDataSource
) -> Bar:
    return ib_bar_record(symbol, dt.datetime.fromtimestamp(start_epoch, dt.UTC), bar, source, STEP)


#: Fires an alert: (kind, subject, severity, message, symbol=, details=).
Fire = Callable[..., None]


class Metrics(Protocol):
    """The producer's counters the backfill adds to."""

    m_bars: Counter
    m_gaps: Counter


class Backfiller:
    """The backfill requests in flight and the historical pacing pause."""

    def __init__(
        self,
        connection: IbConnection,
        sink: RecordProducer,
        tracker: BarTracker,
        calendar: TradingCalendar,
        instruments: dict[str, Instrument],
        req_ids: itertools.count[int],
        fire: Fire,
        metrics: Metrics,
        pacing_backoff_seconds: float,
    ) -> None:
        self.connection = connection
        self.sink = sink
        self.tracker = tracker
        self.calendar = calendar
        self.instruments = instruments
        self.req_ids = req_ids
        self.fire = fire
        self.metrics = metrics
        self.wall = connection.wall
        self.requests: dict[int, BackfillRequest] = {}
        self.pacing_backoff = Backoff(pacing_backoff_seconds, PACING_BACKOFF_CAP_SECONDS)
        self.paused_at = -math.inf
        self.paused_until = 0.0
        self.pacing_violations = 0

    def on_bar(self, bar: events.HistoricalBar) -> None:
        request = self.requests.get(bar.req_id)
        if request is not None:
            request.bars.append(bar)

    def on_disconnected(self) -> None:
        """Their gaps stay open; what the lost requests asked for is asked again after the reconnect."""
        self.requests.clear()
        for gap in self.tracker.gaps.values():
            if gap.requests or gap.unrequested:  # an attempt in progress: it asks again for all it still misses
                gap.unrequested = set(gap.missing)
            gap.requests.clear()

    def start(self, gap: OpenGap) -> None:
        """Begin an attempt: every missing bar of the gap waits to be asked for."""
        gap.unrequested = set(gap.missing)
        gap.requests.clear()
        gap.last_error, gap.no_data = None, False
        self.sink.send(gaps.TOPIC, gap.record(GapState.BACKFILLING, utc_now()))
        self.send_chunks()

    def send_chunks(self) -> None:
        """Ask IB for waiting bars, oldest gap first, as long as its historical pacing lets a request out now.

        One request covers up to an hour of a symbol's waiting bars, from its oldest one, whichever gaps they belong
        to: when pacing holds requests back, the gaps of many interruptions go out as a few requests.
        """
        bar_size = f"{BAR_SECONDS} secs"
        use_rth = self.calendar.hours == "rth"
        while self.connection.state is ConnectionState.CONNECTED and self.wall() >= self.paused_until:
            if self.pacing_backoff.attempt and self.requests:
                return  # after a pacing violation one request probes IB's window before the rest follow
            oldest = next((gap for gap in self.tracker.gaps.values() if gap.unrequested), None)
            if oldest is None:
                return
            waiting = [g for g in self.tracker.gaps.values() if g.symbol == oldest.symbol and g.unrequested]
            first = min(min(g.unrequested) for g in waiting)
            last = max(max(g.unrequested) for g in waiting)
            end = min(last + STEP, first + dt.timedelta(seconds=BACKFILL_CHUNK_SECONDS))
            seconds = max(int((end - first).total_seconds()), 60)  # shorter durations are refused as an "invalid step"
            instrument = self.instruments[oldest.symbol]
            contract = stock_contract(instrument.symbol, instrument.con_id, instrument.primary_exchange)
            end_text = end.strftime("%Y%m%d-%H:%M:%S")
            duration = f"{seconds} S"
            if self.connection.session.historical_delay(contract, end_text, duration, bar_size, use_rth=use_rth) > 0:
                return
            req_id = next(self.req_ids)
            request = BackfillRequest(oldest.symbol, set(), set(), self.wall())
            for gap in waiting:
                asked = {start for start in gap.unrequested if first <= start < end}
                if asked:
                    gap.unrequested -= asked
                    gap.requests.add(req_id)
                    request.gap_ids.add(gap.gap_id)
                    request.covers |= asked
            self.requests[req_id] = request
            self.connection.session.req_historical_data(req_id, contract, end_text, duration, bar_size, use_rth=use_rth)

    def resume(self) -> None:
        """After a (re)connection: start the gaps never started, and ask again for what lost requests asked."""
        for gap in list(self.tracker.gaps.values()):
            if not gap.unrequested and not gap.requests:
                self.start(gap)
        self.send_chunks()

    def done(self, req_id: int, error: events.IbError | None) -> None:
        """IB answered a request (HistoricalEnd, or an error about it)."""
        request = self.requests.pop(req_id, None)
        if request is None:
            return
        if error is not None and error.kind is CodeKind.PACING:
            self._refused(req_id, request)
            return
        self.pacing_backoff.reset()
        # Every open gap of the symbol takes the bars it misses, also gaps found after the request went out.
        symbol_gaps = [gap for gap in self.tracker.gaps.values() if gap.symbol == request.symbol]
        self._publish(request, symbol_gaps)
        for gap in symbol_gaps:
            gap.requests.discard(req_id)
            if gap.gap_id in request.gap_ids and error is not None:
                gap.last_error = f"{error.code}: {error.message}"
                gap.no_data = gap.no_data or error.kind is CodeKind.NO_DATA
            if gap.gap_id not in self.tracker.gaps:
                continue
            with log_context(symbol=gap.symbol):
                if not gap.missing:
                    self.finish_gap(gap, GapState.BACKFILLED, None)
                elif gap.gap_id not in request.gap_ids or gap.requests or gap.unrequested:
                    continue  # its attempt is still going
                else:
                    self._end_attempt(gap)
        self.send_chunks()  # an answer may let waiting requests out (after a probe: all of them)

    def _refused(self, req_id: int, request: BackfillRequest) -> None:
        """A pacing violation: IB counts requests this process never saw (a predecessor's, another client's): back
        off and ask again. A rejected request is no attempt; only IB's answers count towards giving up."""
        self.pacing_violations += 1
        record_error("ib_pacing", COMPONENT)
        now = self.wall()
        # Requests sent together are refused together: only one sent since the last pause began lengthens it.
        if request.sent_at > self.paused_at:
            delay = self.pacing_backoff.next_delay()
            self.paused_at, self.paused_until = now, now + delay
            log.warning(
                "historical pacing violation; backfills paused",
                extra={"symbol": request.symbol, "pause_seconds": round(delay, 1)},
            )
        for gap_id in request.gap_ids:
            gap = self.tracker.gaps.get(gap_id)
            if gap is not None:
                gap.requests.discard(req_id)
                gap.unrequested |= request.covers & set(gap.missing)

    def _publish(self, request: BackfillRequest, symbol_gaps: list[OpenGap]) -> None:
        """Publish the answered bars some open gap of the symbol misses; the gaps take them as recovered."""
        # As sets: a request brings up to 720 bars, and a gap may expect thousands.
        still_missing = {gap.gap_id: set(gap.missing) for gap in symbol_gaps}
        source = MarketDataSource.BACKFILL
        for bar in request.bars:
            start_epoch = int(bar.date)
            start = dt.datetime.fromtimestamp(start_epoch, dt.UTC)
            wanting = [gap for gap in symbol_gaps if start in still_missing[gap.gap_id]]
            if not wanting:
                continue
            topic = self.sink.topic(bars.TOPIC)
            with produce_span(
                "producer.bar", topic=topic, key=request.symbol, symbol=request.symbol, source=source.value
            ):
                self.sink.send(bars.TOPIC, bar_record(request.symbol, start_epoch, bar, source))
            self.metrics.m_bars.add(1, {"symbol": request.symbol, "source": source.value})
            for gap in wanting:
                gap.recovered.add(start)
                gap.unrequested.discard(start)
                still_missing[gap.gap_id].discard(start)

    def _end_attempt(self, gap: OpenGap) -> None:
        """IB answered every request of the gap's attempt and bars are still missing: retry, or give up."""
        gap.attempts += 1
        if gap.no_data:
            self.finish_gap(gap, GapState.UNRECOVERABLE, f"IB has no data for the window: {gap.last_error}")
        elif gap.attempts >= BACKFILL_ATTEMPTS:
            reason = (
                f"{len(gap.missing)} of {len(gap.expected)} bars still missing after {gap.attempts} backfill "
                f"attempts" + (f"; last IB error {gap.last_error}" if gap.last_error else "")
            )
            self.finish_gap(gap, GapState.UNRECOVERABLE, reason)
        else:
            log.warning("backfill incomplete; retrying", extra={"gap_id": gap.gap_id, "missing_bars": len(gap.missing)})
            self.start(gap)

    def finish_gap(self, gap: OpenGap, state: GapState, reason: str | None) -> None:
        self.sink.send(gaps.TOPIC, gap.record(state, utc_now(), reason))
        self.tracker.close(gap.gap_id)
        self.metrics.m_gaps.add(1, {"state": state.value})
        log.info(
            "gap closed",
            extra={"gap_id": gap.gap_id, "state": state.value, "reason": reason, "recovered_bars": len(gap.recovered)},
        )
        if state is GapState.UNRECOVERABLE:
            self.fire(
                "gap_unrecoverable",
                gap.gap_id,
                Severity.WARNING,
                f"{gap.symbol}: bars {gap.start.isoformat()}..{gap.end.isoformat()} unrecoverable: {reason}",
                symbol=gap.symbol,
                details={"missing_bars": str(len(gap.missing))},
            )
