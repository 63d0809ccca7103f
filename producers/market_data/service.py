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
    gap_id: str
    bars: list[events.HistoricalBar] = field(default_factory=list)


@dataclass(frozen=True)
class BackfillChunk:
    """One reqHistoricalData of a gap's backfill, waiting for IB's historical pacing to let it out."""

    gap_id: str
    contract: Any
    end: str
    duration: str
    use_rth: bool


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
        self.calendar = TradingCalendar(settings.trading_hours)
        self.clock = MarketClock()
        self.book = QuoteBook()
        self.tracker = BarTracker(self.calendar)
        for symbol, start in (published_bars or {}).items():
            if symbol in settings.symbols:
                self.tracker.seed(symbol, start, "producer_restart")
        for gap in open_gaps or []:
            if gap.symbol in settings.symbols:
                # Bars of it already recovered by the previous process may be published again (same values).
                expected = self.calendar.bar_starts(gap.start, gap.end)
                if expected:
                    self.tracker.resume(OpenGap(gap.gap_id, gap.symbol, expected, gap.cause, gap.detected_time))
        self.staleness = StalenessMonitor(settings.stale_after_seconds)
        self.backoff = Backoff(settings.ib_reconnect_base_seconds, settings.ib_reconnect_cap_seconds)
        self.state = ConnectionState.CONNECTING
        self.instruments: dict[str, Instrument] = {}
        self.reconnect_count = 0
        self.generation = 0
        self._req_ids = itertools.count(1000)
        self._quote_reqs: dict[int, str] = {}
        self._bar_reqs: dict[int, str] = {}
        self._backfills: dict[int, BackfillRequest] = {}
        # Chunks not yet sent: IB allows 60 historical requests per 10 minutes, and waiting for that inside the loop
        # would stop live quotes and bars for minutes after a run of disconnects.
        self._backfill_queue: collections.deque[BackfillChunk] = collections.deque()
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
            "ibstream_feed_ingest_lag_seconds", unit="s", description="ingest_time - event_time of bars"
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
        self._send_backfill_chunks()
        now = self.wall()
        if now >= self._next_tick:
            self._next_tick = now + 1.0
            self._periodic(now)
        self.sink.poll(0)

    def _connect(self) -> None:
        self.state = ConnectionState.CONNECTING
        try:
            connected = self.session.connect(self.settings.ib_connect_timeout_seconds)
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
        if live and self.settings.ib_live_account not in connected.accounts:
            log.warning(
                "gateway manages a live account; market data only, no orders are placed by the producer",
                extra={"accounts": ",".join(connected.accounts)},
            )
        if self.reconnect_count or self.instruments:
            self.reconnect_count += 1
            self.m_reconnects.add(1)
        self._resolve("ib_disconnected", COMPONENT, "IB connection restored")
        self.session.req_market_data_type(self.settings.market_data_type)
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
        for symbol in self.settings.symbols:
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
        missing = [symbol for symbol in self.settings.symbols if symbol not in found]
        if missing:
            raise ConfigError(
                "IBSTREAM_SYMBOLS", f"IB did not qualify {', '.join(missing)} within {QUALIFY_TIMEOUT_SECONDS:.0f}s"
            )
        now = self.wall()
        for symbol in self.settings.symbols:
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
        if publish:
            record = self._bar_record(symbol, event.time, event, source)
            # Each bar starts a trace: a signal it produces, and that signal's order and fills, continue it.
            with produce_span("producer.bar", symbol=symbol, source=source.value):
                self.sink.send(bars.TOPIC, record)
            self.m_bars.add(1, {"symbol": symbol, "source": source.value})
            self.m_ingest_lag.record(
                (record.ingest_time - self.clock.now(wall)).total_seconds() + 5.0, {"symbol": symbol}
            )
        if gap is not None:
            with log_context(symbol=symbol):
                log.info(
                    "gap detected", extra={"gap_id": gap.gap_id, "missing_bars": len(gap.expected), "cause": gap.cause}
                )
            self.sink.send(gaps.TOPIC, gap.record(GapState.OPEN, utc_now()))
            if len(gap.expected) > MAX_BACKFILL_BARS:
                with log_context(symbol=symbol):
                    self._finish_gap(gap, GapState.UNRECOVERABLE,
                                     f"{len(gap.expected)} missing bars exceed the backfill window of "
                                     f"{MAX_BACKFILL_BARS}")  # fmt: skip
            else:
                self._start_backfill(gap)

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
        self._backfills.clear()  # their gaps stay open and are re-requested after the reconnect
        self._backfill_queue.clear()
        delay = self.backoff.next_delay()
        self._next_connect_at = self.wall() + delay
        self._fire("ib_disconnected", COMPONENT, Severity.CRITICAL, f"IB connection lost: {reason}")
        log.warning("IB disconnected", extra={"reason": reason, "retry_in_seconds": round(delay, 2)})

    # --- backfill -----------------------------------------------------------------------------------------------

    def _start_backfill(self, gap: OpenGap) -> None:
        if self.state != ConnectionState.CONNECTED:
            return  # resumed on the next (re)connection
        gap.attempts += 1
        instrument = self.instruments[gap.symbol]
        contract = stock_contract(instrument.symbol, instrument.con_id, instrument.primary_exchange)
        self.sink.send(gaps.TOPIC, gap.record(GapState.BACKFILLING, utc_now()))
        missing = gap.missing
        # Cover the missing bars in chunks IB accepts for 5-second bars, newest first like IB pages.
        chunk_end = missing[-1] + STEP
        first = missing[0]
        while chunk_end > first:
            seconds = min(BACKFILL_CHUNK_SECONDS, int((chunk_end - first).total_seconds()))
            seconds = max(seconds, 60)  # shorter durations are refused as an "invalid step"
            end_text = chunk_end.strftime("%Y%m%d-%H:%M:%S")
            self._backfill_queue.append(
                BackfillChunk(gap.gap_id, contract, end_text, f"{seconds} S", self.calendar.hours == "rth")
            )
            chunk_end -= dt.timedelta(seconds=seconds)
        self._send_backfill_chunks()

    def _send_backfill_chunks(self) -> None:
        """Send queued chunks, oldest first, as long as IB's historical pacing lets them out without a wait."""
        bar_size = f"{BAR_SECONDS} secs"
        while self._backfill_queue and self.state == ConnectionState.CONNECTED:
            chunk = self._backfill_queue[0]
            if chunk.gap_id not in self.tracker.gaps:
                self._backfill_queue.popleft()  # closed meanwhile
                continue
            if self.session.historical_delay(chunk.contract, chunk.end, chunk.duration, bar_size,
                                             use_rth=chunk.use_rth) > 0:  # fmt: skip
                return
            self._backfill_queue.popleft()
            req_id = next(self._req_ids)
            self._backfills[req_id] = BackfillRequest(chunk.gap_id)
            self.session.req_historical_data(req_id, chunk.contract, chunk.end, chunk.duration, bar_size,
                                             use_rth=chunk.use_rth)  # fmt: skip

    def _backfill_pending(self, gap_id: str) -> bool:
        return any(r.gap_id == gap_id for r in self._backfills.values()) or any(
            c.gap_id == gap_id for c in self._backfill_queue
        )

    def _resume_backfills(self) -> None:
        pending = {request.gap_id for request in self._backfills.values()}
        pending |= {chunk.gap_id for chunk in self._backfill_queue}
        for gap in list(self.tracker.gaps.values()):
            if gap.gap_id not in pending:
                self._start_backfill(gap)

    def _on_backfill_done(self, req_id: int, error: events.IbError | None) -> None:
        request = self._backfills.pop(req_id, None)
        if request is None:
            return
        gap = self.tracker.gaps.get(request.gap_id)
        if gap is None:
            return
        wanted = set(gap.missing)
        source = MarketDataSource.BACKFILL
        for bar in request.bars:
            start_epoch = int(bar.date)
            start = dt.datetime.fromtimestamp(start_epoch, dt.UTC)
            if start in wanted:
                with produce_span("producer.bar", symbol=gap.symbol, source=source.value):
                    self.sink.send(bars.TOPIC, self._bar_record(gap.symbol, start_epoch, bar, source))
                self.m_bars.add(1, {"symbol": gap.symbol, "source": source.value})
                gap.recovered.add(start)
        if self._backfill_pending(gap.gap_id):
            return  # other chunks of this gap are still out or waiting to go
        with log_context(symbol=gap.symbol):
            if not gap.missing:
                self._finish_gap(gap, GapState.BACKFILLED, None)
            elif error is not None and error.kind is CodeKind.NO_DATA:
                self._finish_gap(gap, GapState.UNRECOVERABLE, f"IB has no data for the window: {error.message}")
            elif gap.attempts >= BACKFILL_ATTEMPTS:
                reason = (
                    f"{len(gap.missing)} of {len(gap.expected)} bars still missing after {gap.attempts} "
                    f"backfill attempts" + (f"; last IB error {error.code}: {error.message}" if error else "")
                )
                self._finish_gap(gap, GapState.UNRECOVERABLE, reason)
            else:
                log.warning(
                    "backfill incomplete; retrying", extra={"gap_id": gap.gap_id, "missing_bars": len(gap.missing)}
                )
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
            self._next_heartbeat = now + self.settings.heartbeat_seconds
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
