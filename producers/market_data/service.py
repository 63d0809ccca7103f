"""The market data producer: IB quotes and 5-second bars into Kafka, through disconnects, with gap backfill.

One thread owns all state: it drains the IB session's event queue, publishes records, and runs the periodic work
(market clock, staleness, heartbeats, backfills, reconnects). ibapi's threads only enqueue events; the health
server only reads a snapshot.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ibstream.alerting import AlertBook
from ibstream.backoff import Backoff
from ibstream.config import Settings
from ibstream.contracts import Bar, Gap, Heartbeat, alerts, bars, gaps, heartbeats, quotes, utc_now
from ibstream.contracts.enums import GapState, MarketDataSource, Severity
from ibstream.exceptions import ConfigError
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.ib.session import IbConnectError, IbSession, stock_contract
from ibstream.kafka.records import RecordProducer
from ibstream.market_clock import MarketClock
from ibstream.market_hours import BAR_SECONDS, TradingCalendar
from ibstream.telemetry import log_context, meter, produce_span, record_error
from producers.market_data.bar_tracker import STEP, BarTracker, OpenGap
from producers.market_data.quote_book import QuoteBook
from producers.market_data.staleness import StalenessMonitor

log = logging.getLogger(__name__)

COMPONENT = "producer"
BACKFILL_CHUNK_SECONDS = 3600
BACKFILL_ATTEMPTS = 3
#: IB's window is 10 minutes; pausing longer than this between probes would only delay recovery.
PACING_BACKOFF_CAP_SECONDS = 120.0
#: Two regular sessions of 5-second bars: a longer outage (a producer down for days) is recorded as unrecoverable
#: instead of hammering IB's historical service for bars it limits anyway.
MAX_BACKFILL_BARS = 2 * 4680
QUALIFY_TIMEOUT_SECONDS = 15.0


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    IB_LOST = "ib_lost"  # socket up, but the gateway lost IB's servers (1100)
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass
class Instrument:
    symbol: str
    con_id: int
    primary_exchange: str
    quote_req: int = 0
    bar_req: int = 0


@dataclass
class BackfillRequest:
    """One reqHistoricalData out to IB: the bars it covers, for every open gap of its symbol that wants them."""

    symbol: str
    gap_ids: set[str]
    covers: set[dt.datetime]
    sent_at: float
    bars: list[events.HistoricalBar] = field(default_factory=list)


class MarketDataProducer:
    """Owns the IB session and the Kafka sink for market data."""

    def __init__(
        self,
        settings: Settings,
        session: IbSession,
        sink: RecordProducer,
        *,
        wall: Callable[[], float] = time.monotonic,
        published_bars: dict[str, dt.datetime] | None = None,
        open_gaps: list[Gap] | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.sink = sink
        self.wall = wall
        self.instance_id = uuid.uuid4().hex[:12]
        self.calendar = TradingCalendar(settings.feed.trading_hours)
        self.clock = MarketClock()
        self.book = QuoteBook()
        self.tracker = BarTracker(self.calendar)
        for symbol, start in (published_bars or {}).items():
            if symbol in settings.feed.symbols:
                self.tracker.seed(symbol, start, "producer_restart")
        for gap in open_gaps or []:
            if gap.symbol in settings.feed.symbols:
                # Bars of it already recovered by the previous process may be published again (same values).
                expected = self.calendar.bar_starts(gap.start, gap.end)
                if expected:
                    self.tracker.resume(OpenGap(gap.gap_id, gap.symbol, expected, gap.cause, gap.detected_time))
        self.staleness = StalenessMonitor(settings.feed.stale_after_seconds)
        self.backoff = Backoff(settings.ib.reconnect_base_seconds, settings.ib.reconnect_cap_seconds)
        self.state = ConnectionState.CONNECTING
        self.instruments: dict[str, Instrument] = {}
        self.reconnect_count = 0
        self.generation = 0
        self._req_ids = itertools.count(1000)
        self._quote_reqs: dict[int, str] = {}
        self._bar_reqs: dict[int, str] = {}
        self._backfills: dict[int, BackfillRequest] = {}
        # Bars not yet asked for wait on their gaps (OpenGap.unrequested), not in the loop: IB allows 60 historical
        # requests per 10 minutes, and waiting for that inside the loop would stop live quotes and bars for minutes
        # after a run of disconnects. Waiting also lets one request cover several gaps of a symbol.
        self._pacing_backoff = Backoff(settings.ib.historical_pacing_backoff_seconds, PACING_BACKOFF_CAP_SECONDS)
        self._historical_paused_at = -math.inf
        self._historical_paused_until = 0.0
        self._next_backfill_check = 0.0
        self.pacing_violations = 0
        # Live bars of a symbol whose newest gap record Kafka has not acknowledged yet (see _record_gap_then_release).
        self._held_bars: dict[str, list[Bar]] = {}
        self._unacknowledged_gaps: dict[str, int] = {}
        self._gap_record_outcomes: collections.deque[tuple[Gap, bool]] = collections.deque()
        self._next_connect_at = 0.0
        self._next_tick = 0.0
        self._next_heartbeat = 0.0
        self._farm_broken = False
        self.alerts = AlertBook(COMPONENT)
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._kafka_ok = True
        self._kafka_checked = -1e9
        self._init_metrics()

    # --- metrics ------------------------------------------------------------------------------------------------

    def _init_metrics(self) -> None:
        m = meter("producers.market_data")
        self.m_quotes = m.create_counter("ibstream_quotes_published", description="Quotes sent to Kafka")
        self.m_bars = m.create_counter("ibstream_bars_published", description="5-second bars sent to Kafka")
        self.m_gaps = m.create_counter("ibstream_gaps", description="Gaps by final state")
        self.m_reconnects = m.create_counter("ibstream_ib_reconnects", description="IB reconnects")
        self.m_ingest_lag = m.create_histogram(
            "ibstream_feed_ingest_lag_seconds",
            unit="s",
            description="IB's clock when a live bar was published - the bar's event_time (IB's seconds: local clock "
            "skew excluded)",
        )
        m.create_observable_gauge(
            "ibstream_feed_staleness_seconds", [self._observe_staleness], unit="s",
            description="Seconds since the last tick per symbol",
        )  # fmt: skip
        m.create_observable_gauge(
            "ibstream_ib_connected", [self._observe_connected], description="1 when the IB session is connected"
        )

    def _observe_staleness(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        with self._snapshot_lock:
            ages = dict(self._snapshot.get("tick_age_seconds", {}))
        return [Observation(age, {"symbol": symbol}) for symbol, age in ages.items() if age is not None]

    def _observe_connected(self, _options: Any) -> list[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(1 if self.state == ConnectionState.CONNECTED else 0, {"component": COMPONENT})]

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set. Configuration problems found at the first connection raise ConfigError."""
        try:
            while not stop.is_set():
                self.step(0.05)
        finally:
            self.state = ConnectionState.STOPPED
            self.session.disconnect()
            self.sink.flush(30)
            self._update_snapshot()

    def step(self, wait: float) -> None:
        """One loop iteration: connect if due, handle a batch of IB events, do the periodic work."""
        now = self.wall()
        if self.state in (ConnectionState.CONNECTING, ConnectionState.DISCONNECTED) and now >= self._next_connect_at:
            self._connect()
        self._handle_batch(wait)
        self._release_held_bars()
        now = self.wall()
        if now >= self._next_backfill_check:
            # Waiting requests are retried a few times a second, not per batch of ticks (thousands a second).
            self._next_backfill_check = now + 0.1
            self._send_backfill_chunks()
        if now >= self._next_tick:
            self._next_tick = now + 1.0
            self._periodic(now)
        self.sink.poll(0)
        self._release_held_bars()

    def _connect(self) -> None:
        self.state = ConnectionState.CONNECTING
        try:
            connected = self.session.connect(self.settings.ib.connect_timeout_seconds)
        except IbConnectError as error:
            delay = self.backoff.next_delay()
            self._next_connect_at = self.wall() + delay
            self.state = ConnectionState.DISCONNECTED
            log.warning("IB connect failed; retrying", extra={"error": str(error), "retry_in_seconds": round(delay, 2)})
            return
        self._on_connected(connected)

    def _on_connected(self, connected: events.Connected) -> None:
        self.generation = connected.generation
        self.state = ConnectionState.CONNECTED
        self.backoff.reset()
        live = [account for account in connected.accounts if not account.startswith("DU")]
        if live and self.settings.ib.live_account not in connected.accounts:
            log.warning(
                "gateway manages a live account; market data only, no orders are placed by the producer",
                extra={"accounts": ",".join(connected.accounts)},
            )
        if self.reconnect_count or self.instruments:
            self.reconnect_count += 1
            self.m_reconnects.add(1)
        self._resolve("ib_disconnected", COMPONENT, "IB connection restored")
        self.session.req_market_data_type(self.settings.feed.market_data_type)
        self.session.req_current_time()
        if not self.instruments:
            self._qualify()
        self._subscribe_all()
        self._resume_backfills()
        log.info(
            "IB connected",
            extra={
                "generation": connected.generation,
                "accounts": ",".join(connected.accounts),
                "reconnects": self.reconnect_count,
            },
        )

    def _qualify(self) -> None:
        """Resolve every configured symbol to a contract; an unknown one stops startup naming the setting."""
        pending: dict[int, str] = {}
        for symbol in self.settings.feed.symbols:
            req_id = next(self._req_ids)
            pending[req_id] = symbol
            self.session.req_contract_details(req_id, stock_contract(symbol))
        deadline = self.wall() + QUALIFY_TIMEOUT_SECONDS
        found: dict[str, events.ContractDetail] = {}
        while pending and self.wall() < deadline:
            try:
                event = self.session.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(event, events.ContractDetail) and event.req_id in pending:
                found.setdefault(pending[event.req_id], event)
            elif isinstance(event, events.ContractDetailsEnd) and event.req_id in pending:
                pending.pop(event.req_id)
            elif isinstance(event, events.IbError) and event.req_id in pending:
                if event.kind is CodeKind.NO_SECURITY:
                    raise ConfigError(
                        "IBSTREAM_SYMBOLS", f"IB knows no stock {pending[event.req_id]!r} ({event.message})"
                    )
                pending.pop(event.req_id)
            else:
                self._dispatch(event)
        missing = [symbol for symbol in self.settings.feed.symbols if symbol not in found]
        if missing:
            raise ConfigError(
                "IBSTREAM_SYMBOLS", f"IB did not qualify {', '.join(missing)} within {QUALIFY_TIMEOUT_SECONDS:.0f}s"
            )
        now = self.wall()
        for symbol in self.settings.feed.symbols:
            detail = found[symbol]
            self.instruments[symbol] = Instrument(symbol, detail.con_id, detail.primary_exchange)
            self.book.track(symbol, detail.con_id)
            self.staleness.track(symbol, now)

    def _subscribe_all(self) -> None:
        """(Re)subscribe every symbol under fresh request ids, so late ticks of an old subscription are ignored."""
        for instrument in self.instruments.values():
            if instrument.quote_req:
                self.session.cancel_mkt_data(instrument.quote_req)
                self._quote_reqs.pop(instrument.quote_req, None)
            if instrument.bar_req:
                self.session.cancel_real_time_bars(instrument.bar_req)
                self._bar_reqs.pop(instrument.bar_req, None)
            contract = stock_contract(instrument.symbol, instrument.con_id, instrument.primary_exchange)
            instrument.quote_req = next(self._req_ids)
            instrument.bar_req = next(self._req_ids)
            self._quote_reqs[instrument.quote_req] = instrument.symbol
            self._bar_reqs[instrument.bar_req] = instrument.symbol
            self.session.req_mkt_data(instrument.quote_req, contract)
            self.session.req_real_time_bars(instrument.bar_req, contract, use_rth=self.calendar.hours == "rth")

    # --- events -------------------------------------------------------------------------------------------------

    def _handle_batch(self, wait: float) -> None:
        try:
            event = self.session.events.get(timeout=wait)
        except queue.Empty:
            return
        handled = 0
        while True:
            self._dispatch(event)
            handled += 1
            if handled >= 5000:
                break
            try:
                event = self.session.events.get_nowait()
            except queue.Empty:
                break
        self._publish_quotes()

    def _dispatch(self, event: events.IbEvent) -> None:
        match event:
            case events.TickPrice(req_id=req_id, tick_type=tick_type, price=price):
                symbol = self._quote_reqs.get(req_id)
                if symbol is not None and self.book.on_price(symbol, tick_type, price):
                    self._on_tick(symbol)
            case events.TickSize(req_id=req_id, tick_type=tick_type, size=size):
                symbol = self._quote_reqs.get(req_id)
                if symbol is not None and self.book.on_size(symbol, tick_type, size):
                    self._on_tick(symbol)
            case events.MarketDataType(req_id=req_id, market_data_type=data_type):
                symbol = self._quote_reqs.get(req_id)
                if symbol is not None:
                    self.book.mark_delayed(symbol, data_type in (3, 4))
            case events.RealtimeBar():
                self._on_realtime_bar(event)
            case events.HistoricalBar(req_id=req_id):
                request = self._backfills.get(req_id)
                if request is not None:
                    request.bars.append(event)
            case events.HistoricalEnd(req_id=req_id):
                self._on_backfill_done(req_id, None)
            case events.CurrentTime(time=epoch):
                self.clock.on_current_time(float(epoch), self.wall())
            case events.IbError():
                self._on_error(event)
            case events.Disconnected(generation=generation, reason=reason):
                if generation == self.generation and self.state != ConnectionState.STOPPED:
                    self._on_disconnected(reason)
            case _:
                pass

    def _on_tick(self, symbol: str) -> None:
        change = self.staleness.on_tick(symbol, self.wall())
        if change is not None:
            self._resolve("stale_feed", symbol, f"{symbol} data resumed", symbol=symbol)

    def _publish_quotes(self) -> None:
        wall = self.wall()
        for quote in self.book.drain(self.clock.now(wall), utc_now()):
            self.sink.send(quotes.TOPIC, quote)
            self.m_quotes.add(1, {"symbol": quote.symbol, "source": quote.source.value})

    def _bar_record(self, symbol: str, start_epoch: int, bar: events.RealtimeBar | events.HistoricalBar,
                    source: MarketDataSource) -> Bar:  # fmt: skip
        start = dt.datetime.fromtimestamp(start_epoch, dt.UTC)
        return Bar(
            symbol=symbol, start=start, open=bar.open, high=bar.high, low=bar.low, close=bar.close,
            volume=bar.volume, wap=bar.wap, count=bar.count, event_time=start + STEP, ingest_time=utc_now(),
            source=source,
        )  # fmt: skip

    def _on_realtime_bar(self, event: events.RealtimeBar) -> None:
        symbol = self._bar_reqs.get(event.req_id)
        if symbol is None:
            return
        wall = self.wall()
        self.clock.on_bar(float(event.time), wall)
        self._on_tick(symbol)
        start = dt.datetime.fromtimestamp(event.time, dt.UTC)
        publish, gap = self.tracker.on_live_bar(symbol, start, utc_now())
        source = MarketDataSource.DELAYED if self.book.is_delayed(symbol) else MarketDataSource.LIVE
        if gap is not None:
            with log_context(symbol=symbol):
                log.info(
                    "gap detected", extra={"gap_id": gap.gap_id, "missing_bars": len(gap.expected), "cause": gap.cause}
                )
            self._record_gap_then_release(gap)
        if publish:
            record = self._bar_record(symbol, event.time, event, source)
            # Each bar starts a trace: a signal it produces, and that signal's order and fills, continue it.
            with produce_span("producer.bar", symbol=symbol, source=source.value):
                held = self._held_bars.get(symbol)
                if held is not None:
                    held.append(record)
                else:
                    self.sink.send(bars.TOPIC, record)
            self.m_bars.add(1, {"symbol": symbol, "source": source.value})
            # Measured on IB's clock as the producer tracks it, not the local one: local clock skew is not lag,
            # and a simulated session's clock can be hours from the wall clock (a negative value would be dropped).
            self.m_ingest_lag.record(
                max(0.0, self.clock.epoch(wall) - record.event_time.timestamp()), {"symbol": symbol}
            )
        if gap is not None:
            if len(gap.expected) > MAX_BACKFILL_BARS:
                with log_context(symbol=symbol):
                    self._finish_gap(gap, GapState.UNRECOVERABLE,
                                     f"{len(gap.expected)} missing bars exceed the backfill window of "
                                     f"{MAX_BACKFILL_BARS}")  # fmt: skip
            else:
                self._start_backfill(gap)

    def _record_gap_then_release(self, gap: OpenGap) -> None:
        """Send the gap's OPEN record and hold the symbol's live bars until Kafka has it.

        A restarted producer resumes from the newest bar in Kafka. Were the bar that revealed the gap in Kafka
        without the gap record (both are sent asynchronously, to different topics), a crash in between would leave
        the gap's bars missing for good; held back, the restart finds the gap again itself.
        """
        symbol = gap.symbol
        self._held_bars.setdefault(symbol, [])
        self._unacknowledged_gaps[symbol] = self._unacknowledged_gaps.get(symbol, 0) + 1
        self._send_gap_record(gap.record(GapState.OPEN, utc_now()))

    def _send_gap_record(self, record: Gap) -> None:
        def recorded(error: object, _message: object) -> None:
            # Runs inside librdkafka's poll, where producing again would re-enter it: the loop acts on it.
            self._gap_record_outcomes.append((record, error is None))

        self.sink.send(gaps.TOPIC, record, on_delivery=recorded)

    def _release_held_bars(self) -> None:
        while self._gap_record_outcomes:
            record, delivered = self._gap_record_outcomes.popleft()
            if not delivered:
                self._send_gap_record(record)  # the bars wait on
                continue
            symbol = record.symbol
            self._unacknowledged_gaps[symbol] -= 1
            if self._unacknowledged_gaps[symbol] == 0:
                del self._unacknowledged_gaps[symbol]
                for bar in self._held_bars.pop(symbol, []):
                    self.sink.send(bars.TOPIC, bar)

    def _on_error(self, error: events.IbError) -> None:
        kind = error.kind
        if error.req_id in self._backfills:
            self._on_backfill_done(error.req_id, error)
            return
        symbol = self._quote_reqs.get(error.req_id) or self._bar_reqs.get(error.req_id)
        if kind is CodeKind.CONNECTION_LOST:
            self.state = ConnectionState.IB_LOST
            self.tracker.note_interruption(f"ib_{error.code}")
            self._fire(
                "ib_disconnected",
                COMPONENT,
                Severity.CRITICAL,
                f"IB connectivity lost ({error.code})",
                details={"code": str(error.code)},
            )
        elif kind is CodeKind.RESTORED_DATA_LOST:
            self.state = ConnectionState.CONNECTED
            self._resolve("ib_disconnected", COMPONENT, "IB connectivity restored, data lost: resubscribed")
            self._subscribe_all()
            self._resume_backfills()
        elif kind is CodeKind.RESTORED_DATA_MAINTAINED:
            self.state = ConnectionState.CONNECTED
            self._resolve("ib_disconnected", COMPONENT, "IB connectivity restored, data maintained")
            self._resume_backfills()
        elif kind is CodeKind.FARM_BROKEN:
            self._farm_broken = True
            self.tracker.note_interruption(f"farm_{error.code}")
        elif kind is CodeKind.FARM_OK and self._farm_broken:
            # A farm coming back after a break can leave subscriptions silently dead: resubscribe.
            self._farm_broken = False
            self._subscribe_all()
        elif kind is CodeKind.DELAYED_DATA and symbol is not None:
            self.book.mark_delayed(symbol, True)
        elif kind in (CodeKind.NOT_SUBSCRIBED, CodeKind.COMPETING_SESSION) and symbol is not None:
            self._fire(
                kind.value,
                symbol,
                Severity.WARNING,
                f"{symbol}: {error.message}",
                symbol=symbol,
                details={"code": str(error.code)},
            )
        level = logging.INFO if kind in (CodeKind.INFO, CodeKind.FARM_OK, CodeKind.FARM_INACTIVE) else logging.WARNING
        if level == logging.WARNING and kind is not CodeKind.DELAYED_DATA:
            record_error(f"ib_{kind.value}", COMPONENT)
        with log_context(symbol=symbol):
            log.log(
                level,
                "IB message",
                extra={"code": error.code, "ib_message": error.message, "kind": kind.value, "req_id": error.req_id},
            )

    def _on_disconnected(self, reason: str) -> None:
        self.state = ConnectionState.DISCONNECTED
        self.tracker.note_interruption("disconnect")
        self._quote_reqs.clear()
        self._bar_reqs.clear()
        for instrument in self.instruments.values():
            instrument.quote_req = instrument.bar_req = 0
        # Their gaps stay open; what the lost requests asked for is asked again after the reconnect.
        self._backfills.clear()
        for gap in self.tracker.gaps.values():
            if gap.requests or gap.unrequested:  # an attempt in progress: it asks again for all it still misses
                gap.unrequested = set(gap.missing)
            gap.requests.clear()
        delay = self.backoff.next_delay()
        self._next_connect_at = self.wall() + delay
        self._fire("ib_disconnected", COMPONENT, Severity.CRITICAL, f"IB connection lost: {reason}")
        log.warning("IB disconnected", extra={"reason": reason, "retry_in_seconds": round(delay, 2)})

    # --- backfill -----------------------------------------------------------------------------------------------

    def _start_backfill(self, gap: OpenGap) -> None:
        """Begin an attempt: every missing bar of the gap waits to be asked for."""
        gap.unrequested = set(gap.missing)
        gap.requests.clear()
        gap.last_error, gap.no_data = None, False
        self.sink.send(gaps.TOPIC, gap.record(GapState.BACKFILLING, utc_now()))
        self._send_backfill_chunks()

    def _send_backfill_chunks(self) -> None:
        """Ask IB for waiting bars, oldest gap first, as long as its historical pacing lets a request out now.

        One request covers up to an hour of a symbol's waiting bars, from its oldest one, whichever gaps they belong
        to: when pacing holds requests back, the gaps of many interruptions go out as a few requests.
        """
        bar_size = f"{BAR_SECONDS} secs"
        use_rth = self.calendar.hours == "rth"
        while self.state == ConnectionState.CONNECTED and self.wall() >= self._historical_paused_until:
            if self._pacing_backoff.attempt and self._backfills:
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
            if self.session.historical_delay(contract, end_text, duration, bar_size, use_rth=use_rth) > 0:
                return
            req_id = next(self._req_ids)
            request = BackfillRequest(oldest.symbol, set(), set(), self.wall())
            for gap in waiting:
                asked = {start for start in gap.unrequested if first <= start < end}
                if asked:
                    gap.unrequested -= asked
                    gap.requests.add(req_id)
                    request.gap_ids.add(gap.gap_id)
                    request.covers |= asked
            self._backfills[req_id] = request
            self.session.req_historical_data(req_id, contract, end_text, duration, bar_size, use_rth=use_rth)

    def _resume_backfills(self) -> None:
        """After a (re)connection: start the gaps never started, and ask again for what lost requests asked."""
        for gap in list(self.tracker.gaps.values()):
            if not gap.unrequested and not gap.requests:
                self._start_backfill(gap)
        self._send_backfill_chunks()

    def _on_backfill_done(self, req_id: int, error: events.IbError | None) -> None:
        request = self._backfills.pop(req_id, None)
        if request is None:
            return
        if error is not None and error.kind is CodeKind.PACING:
            # IB counts requests this process never saw (a predecessor's, another client's): back off and ask
            # again. A rejected request is no attempt; only IB's answers count towards giving up.
            self.pacing_violations += 1
            record_error("ib_pacing", COMPONENT)
            now = self.wall()
            # Requests sent together are refused together: only one sent since the last pause began lengthens it.
            if request.sent_at > self._historical_paused_at:
                delay = self._pacing_backoff.next_delay()
                self._historical_paused_at, self._historical_paused_until = now, now + delay
                log.warning("historical pacing violation; backfills paused",
                            extra={"symbol": request.symbol, "pause_seconds": round(delay, 1)})  # fmt: skip
            for gap_id in request.gap_ids:
                gap = self.tracker.gaps.get(gap_id)
                if gap is not None:
                    gap.requests.discard(req_id)
                    gap.unrequested |= request.covers & set(gap.missing)
            return
        self._pacing_backoff.reset()
        # Every open gap of the symbol takes the bars it misses, also gaps found after the request went out.
        symbol_gaps = [gap for gap in self.tracker.gaps.values() if gap.symbol == request.symbol]
        # As sets: a request brings up to 720 bars, and a gap may expect thousands.
        still_missing = {gap.gap_id: set(gap.missing) for gap in symbol_gaps}
        source = MarketDataSource.BACKFILL
        for bar in request.bars:
            start_epoch = int(bar.date)
            start = dt.datetime.fromtimestamp(start_epoch, dt.UTC)
            wanting = [gap for gap in symbol_gaps if start in still_missing[gap.gap_id]]
            if not wanting:
                continue
            with produce_span("producer.bar", symbol=request.symbol, source=source.value):
                self.sink.send(bars.TOPIC, self._bar_record(request.symbol, start_epoch, bar, source))
            self.m_bars.add(1, {"symbol": request.symbol, "source": source.value})
            for gap in wanting:
                gap.recovered.add(start)
                gap.unrequested.discard(start)
                still_missing[gap.gap_id].discard(start)
        for gap in symbol_gaps:
            gap.requests.discard(req_id)
            if gap.gap_id in request.gap_ids and error is not None:
                gap.last_error = f"{error.code}: {error.message}"
                gap.no_data = gap.no_data or error.kind is CodeKind.NO_DATA
            if gap.gap_id not in self.tracker.gaps:
                continue
            with log_context(symbol=gap.symbol):
                if not gap.missing:
                    self._finish_gap(gap, GapState.BACKFILLED, None)
                elif gap.gap_id not in request.gap_ids or gap.requests or gap.unrequested:
                    continue  # its attempt is still going
                else:
                    self._end_attempt(gap)
        self._send_backfill_chunks()  # an answer may let waiting requests out (after a probe: all of them)

    def _end_attempt(self, gap: OpenGap) -> None:
        """IB answered every request of the gap's attempt and bars are still missing: retry, or give up."""
        gap.attempts += 1
        if gap.no_data:
            self._finish_gap(gap, GapState.UNRECOVERABLE, f"IB has no data for the window: {gap.last_error}")
        elif gap.attempts >= BACKFILL_ATTEMPTS:
            reason = (
                f"{len(gap.missing)} of {len(gap.expected)} bars still missing after {gap.attempts} backfill "
                f"attempts" + (f"; last IB error {gap.last_error}" if gap.last_error else "")
            )
            self._finish_gap(gap, GapState.UNRECOVERABLE, reason)
        else:
            log.warning("backfill incomplete; retrying", extra={"gap_id": gap.gap_id, "missing_bars": len(gap.missing)})
            self._start_backfill(gap)

    def _finish_gap(self, gap: OpenGap, state: GapState, reason: str | None) -> None:
        self.sink.send(gaps.TOPIC, gap.record(state, utc_now(), reason))
        self.tracker.close(gap.gap_id)
        self.m_gaps.add(1, {"state": state.value})
        log.info(
            "gap closed",
            extra={"gap_id": gap.gap_id, "state": state.value, "reason": reason, "recovered_bars": len(gap.recovered)},
        )
        if state is GapState.UNRECOVERABLE:
            self._fire(
                "gap_unrecoverable",
                gap.gap_id,
                Severity.WARNING,
                f"{gap.symbol}: bars {gap.start.isoformat()}..{gap.end.isoformat()} unrecoverable: {reason}",
                symbol=gap.symbol,
                details={"missing_bars": str(len(gap.missing))},
            )

    # --- periodic -----------------------------------------------------------------------------------------------

    def _periodic(self, now: float) -> None:
        if self.state in (ConnectionState.CONNECTED, ConnectionState.IB_LOST):
            self.session.req_current_time()
        market_open = self.calendar.is_open(self.clock.now(now))
        for change in self.staleness.check(now, market_open):
            if change.stale:
                self.tracker.note_interruption("stale_feed", [change.symbol])
                self._fire(
                    "stale_feed",
                    change.symbol,
                    Severity.WARNING,
                    f"{change.symbol}: no data for {change.age_seconds:.1f}s during trading hours",
                    symbol=change.symbol,
                    details={
                        "age_seconds": f"{change.age_seconds:.1f}",
                        "threshold_seconds": str(self.staleness.threshold),
                    },
                )
            else:
                self._resolve("stale_feed", change.symbol, f"{change.symbol}: market closed", symbol=change.symbol)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.settings.feed.heartbeat_seconds
            active = sum(1 for symbol in self.instruments if not self.staleness.is_stale(symbol))
            self.sink.send(heartbeats.TOPIC, Heartbeat(
                component=COMPONENT, instance_id=self.instance_id, connection_state=self.state.value,
                symbols_active=active if self.state == ConnectionState.CONNECTED else 0,
                reconnect_count=self.reconnect_count, time=utc_now(), market_time=self.clock.now(now),
            ))  # fmt: skip
        self._update_snapshot()

    # --- alerts -------------------------------------------------------------------------------------------------

    def _fire(self, kind: str, subject: str, severity: Severity, message: str, *, symbol: str | None = None,
              details: dict[str, str] | None = None) -> None:  # fmt: skip
        alert = self.alerts.fire(kind, subject, severity, message, symbol=symbol, details=details)
        if alert is not None:
            self.sink.send(alerts.TOPIC, alert)

    def _resolve(self, kind: str, subject: str, message: str, *, symbol: str | None = None) -> None:
        alert = self.alerts.resolve(kind, subject, message, symbol=symbol)
        if alert is not None:
            self.sink.send(alerts.TOPIC, alert)

    # --- health -------------------------------------------------------------------------------------------------

    def _update_snapshot(self) -> None:
        now = self.wall()
        ages = self.staleness.ages(now)
        snapshot = {
            "connection_state": self.state.value,
            "reconnect_count": self.reconnect_count,
            "market_open": self.calendar.is_open(self.clock.now(now)),
            "market_time": self.clock.now(now).isoformat(),
            "subscriptions": len(self._quote_reqs) + len(self._bar_reqs),
            "tick_age_seconds": {symbol: round(age, 3) for symbol, age in ages.items()},
            "stale_symbols": sorted(symbol for symbol in self.instruments if self.staleness.is_stale(symbol)),
            "open_gaps": len(self.tracker.gaps),
            "kafka_delivered": self.sink.delivered,
            "kafka_failed": self.sink.failed,
        }
        with self._snapshot_lock:
            self._snapshot = snapshot

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /ready: IB connected, Kafka reachable, every subscription delivering (or the market closed)."""
        with self._snapshot_lock:
            snapshot = dict(self._snapshot)
        wall = time.monotonic()
        if wall - self._kafka_checked > 5.0:
            self._kafka_ok = self.sink.reachable(2.0)
            self._kafka_checked = wall
        snapshot["kafka_reachable"] = self._kafka_ok
        subscriptions_ok = bool(snapshot.get("subscriptions")) and (
            not snapshot.get("market_open") or not snapshot.get("stale_symbols")
        )
        ready = (
            snapshot.get("connection_state") == ConnectionState.CONNECTED.value and self._kafka_ok and subscriptions_ok
        )
        return ready, snapshot
