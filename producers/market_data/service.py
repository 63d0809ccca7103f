"""The market data producer: IB quotes and 5-second bars into Kafka, through disconnects, with gap backfill.

One thread owns all state: it drains the IB session's event queue, publishes records, and runs the periodic work
(market clock, staleness, heartbeats, backfills, reconnects). ibapi's threads only enqueue events; the health
server only reads a snapshot (``readiness``). The connection lifecycle (reconnects with backoff, what IB's
connectivity codes mean) is ``ibstream.ib.connection``; the producer's reactions to IB's messages are
``ib_messages``, the per-symbol subscriptions ``subscriptions``, gap backfill ``backfill``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ibstream.config import Settings
from ibstream.contracts import Gap, Heartbeat, bars, heartbeats, quotes, utc_now
from ibstream.contracts.enums import GapState, MarketDataSource, Severity
from ibstream.ib import events
from ibstream.ib.connection import ConnectionState, IbConnection, in_daily_restart_window, live_accounts
from ibstream.ib.protocol import Session
from ibstream.kafka.records import RecordProducer
from ibstream.market_clock import MarketClock
from ibstream.market_hours import TradingCalendar
from ibstream.telemetry import log_context, produce_span
from producers.market_data.alert_sink import AlertSink
from producers.market_data.backfill import COMPONENT, Backfiller, bar_record
from producers.market_data.bar_tracker import BarTracker
from producers.market_data.gap_records import GapRecords
from producers.market_data.ib_messages import IbMessages
from producers.market_data.instruments import Instrument, qualify
from producers.market_data.liveness import CompetingSession, FarmRecovery, StreamLiveness
from producers.market_data.metrics import ProducerMetrics
from producers.market_data.quote_book import QuoteBook
from producers.market_data.readiness import HealthSnapshot
from producers.market_data.staleness import StalenessMonitor
from producers.market_data.subscriptions import Subscriptions

log = logging.getLogger(__name__)

#: Two regular sessions of 5-second bars: a longer outage (a producer down for days) is recorded as unrecoverable
#: instead of hammering IB's historical service for bars it limits anyway.
MAX_BACKFILL_BARS = 2 * 4680

__all__ = ["COMPONENT", "ConnectionState", "Instrument", "MarketDataProducer"]


class MarketDataProducer:
    """Owns the IB session and the Kafka sink for market data."""

    def __init__(
        self,
        settings: Settings,
        session: Session,
        sink: RecordProducer,
        *,
        wall: Callable[[], float] = time.monotonic,
        published_bars: dict[str, dt.datetime] | None = None,
        open_gaps: list[Gap] | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.wall = wall
        self.instance_id = uuid.uuid4().hex[:12]
        self.calendar = TradingCalendar(settings.feed.trading_hours)
        self.clock = MarketClock()
        self.book = QuoteBook()
        self.tracker = BarTracker(self.calendar)
        self.tracker.restore(settings.feed.symbols, published_bars or {}, open_gaps or [])
        self.staleness = StalenessMonitor(settings.feed.stale_after_seconds)
        self.connection = IbConnection(
            session,
            base_seconds=settings.ib.reconnect_base_seconds,
            cap_seconds=settings.ib.reconnect_cap_seconds,
            timeout_seconds=settings.ib.connect_timeout_seconds,
            wall=wall,
        )
        self.instruments: dict[str, Instrument] = {}
        self.reconnect_count = 0
        self._req_ids = itertools.count(1000)
        self.subscriptions = Subscriptions(
            self.connection, self.instruments, self._req_ids, use_rth=self.calendar.hours == "rth"
        )
        self._next_backfill_check = 0.0
        self.gap_records = GapRecords(sink)
        self._next_tick = 0.0
        self._next_heartbeat = 0.0
        self.alerts = AlertSink(COMPONENT, sink)
        self.health = HealthSnapshot(sink)
        self.metrics = ProducerMetrics(self.health.observe_staleness, self._observe_connected)
        self.backfill = Backfiller(
            self.connection,
            sink,
            self.tracker,
            self.calendar,
            self.instruments,
            self._req_ids,
            self.alerts.fire,
            self.metrics,
            settings.ib.historical_pacing_backoff_seconds,
        )
        self.liveness = StreamLiveness()
        self.farm_recovery = FarmRecovery(settings.feed.stale_after_seconds)
        self.competing = CompetingSession(settings.ib.competing_session_retry_seconds)
        self.ib_messages = IbMessages(
            self.connection,
            self.subscriptions,
            self.backfill,
            self.book,
            self.tracker,
            self.alerts,
            self.farm_recovery,
            self.competing,
            wall,
        )

    # --- the connection's and the backfill's state, by the names operators and tests know ----------------------

    @property
    def session(self) -> Session:
        return self.connection.session

    @property
    def pacing_violations(self) -> int:
        return self.backfill.pacing_violations

    @property
    def _historical_paused_until(self) -> float:
        return self.backfill.paused_until

    @property
    def state(self) -> ConnectionState:
        return self.connection.state

    @state.setter
    def state(self, state: ConnectionState) -> None:
        self.connection.state = state

    @property
    def generation(self) -> int:
        return self.connection.generation

    @generation.setter
    def generation(self, generation: int) -> None:
        self.connection.generation = generation

    # --- metrics: the connection gauge -------------------------------------------------------------------------

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
            self.connection.stop()
            self.sink.flush(30)
            self._update_snapshot()

    def step(self, wait: float) -> None:
        """One loop iteration: connect if due, handle a batch of IB events, do the periodic work."""
        if self.connection.due:
            self._connect()
        self._handle_batch(wait)
        self.gap_records.release()
        now = self.wall()
        if now >= self._next_backfill_check:
            # Waiting requests are retried a few times a second, not per batch of ticks (thousands a second).
            self._next_backfill_check = now + 0.1
            self.backfill.send_chunks()
        if now >= self._next_tick:
            self._next_tick = now + 1.0
            self._periodic(now)
        self.sink.poll(0)
        self.gap_records.release()

    def _connect(self) -> None:
        connected = self.connection.connect()
        if connected is not None:
            self._on_connected(connected)

    def _on_connected(self, connected: events.Connected) -> None:
        self.connection.on_connected(connected)
        if live_accounts(connected.accounts, self.settings.ib.live_account):
            log.warning(
                "gateway manages a live account; market data only, no orders are placed by the producer",
                extra={"accounts": ",".join(connected.accounts)},
            )
        if self.reconnect_count or self.instruments:
            self.reconnect_count += 1
            self.metrics.m_reconnects.add(1)
        self.alerts.resolve("ib_disconnected", COMPONENT, "IB connection restored")
        self.session.req_market_data_type(self.settings.feed.market_data_type)
        self.session.req_current_time()
        if not self.instruments:
            self._qualify()
        self.subscriptions.subscribe_all()
        self.backfill.resume()
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
        found = qualify(self.session, self.settings.feed.symbols, self._req_ids, self.wall, self._dispatch)
        now = self.wall()
        for symbol in self.settings.feed.symbols:
            detail = found[symbol]
            self.instruments[symbol] = Instrument(symbol, detail.con_id, detail.primary_exchange)
            self.book.track(symbol, detail.con_id)
            self.staleness.track(symbol, now)

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
            case events.TickPrice() | events.TickSize() | events.MarketDataType():
                self._on_quote_event(event)
            case events.RealtimeBar():
                self._on_realtime_bar(event)
            case events.HistoricalBar():
                self.backfill.on_bar(event)
            case events.HistoricalEnd(req_id=req_id):
                self.backfill.done(req_id, None)
            case events.CurrentTime(time=epoch):
                self.clock.on_current_time(float(epoch), self.wall())
            case events.IbError():
                self.ib_messages.on_error(event)
            case events.Disconnected():
                self._on_disconnected(event)
            case _:
                pass

    def _on_quote_event(self, event: events.TickPrice | events.TickSize | events.MarketDataType) -> None:
        symbol = self.subscriptions.quote_symbol(event.req_id)
        if symbol is None:
            return
        match event:
            case events.TickPrice(tick_type=tick_type, price=price) if self.book.on_price(symbol, tick_type, price):
                self.liveness.on_quote(symbol, self.wall())
                self._on_tick(symbol)
            case events.TickSize(tick_type=tick_type, size=size) if self.book.on_size(symbol, tick_type, size):
                self.liveness.on_quote(symbol, self.wall())
                self._on_tick(symbol)
            case events.MarketDataType(market_data_type=data_type):
                self.book.mark_delayed(symbol, data_type in (3, 4))
            case _:
                pass

    def _on_tick(self, symbol: str) -> None:
        change = self.staleness.on_tick(symbol, self.wall())
        if change is not None:
            self.alerts.resolve("stale_feed", symbol, f"{symbol} data resumed", symbol=symbol)
        if self.competing.on_data():
            self.alerts.resolve("competing_session", COMPONENT, "competing live session ended: market data resumed")
            log.info("competing live session ended: market data resumed", extra={"symbol": symbol})

    def _publish_quotes(self) -> None:
        wall = self.wall()
        for quote in self.book.drain(self.clock.now(wall), utc_now()):
            self.sink.send(quotes.TOPIC, quote)
            self.metrics.m_quotes.add(1, {"symbol": quote.symbol, "source": quote.source.value})

    def _on_realtime_bar(self, event: events.RealtimeBar) -> None:
        symbol = self.subscriptions.bar_symbol(event.req_id)
        if symbol is None:
            return
        wall = self.wall()
        self.clock.on_bar(float(event.time), wall)
        self.liveness.on_bar(symbol, wall)
        self._on_tick(symbol)
        start = dt.datetime.fromtimestamp(event.time, dt.UTC)
        publish, gap = self.tracker.on_live_bar(symbol, start, utc_now())
        source = MarketDataSource.DELAYED if self.book.is_delayed(symbol) else MarketDataSource.LIVE
        if gap is not None:
            with log_context(symbol=symbol):
                log.info(
                    "gap detected", extra={"gap_id": gap.gap_id, "missing_bars": len(gap.expected), "cause": gap.cause}
                )
            self.gap_records.record_open(gap)
        if publish:
            record = bar_record(symbol, event.time, event, source)
            # Each bar starts a trace: a signal it produces, and that signal's order and fills, continue it.
            with produce_span(
                "producer.bar", topic=self.sink.topic(bars.TOPIC), key=symbol, symbol=symbol, source=source.value
            ):
                self.gap_records.send_bar(record)
            self.metrics.m_bars.add(1, {"symbol": symbol, "source": source.value})
            # Measured on IB's clock as the producer tracks it, not the local one: local clock skew is not lag,
            # and a simulated session's clock can be hours from the wall clock (a negative value would be dropped).
            self.metrics.m_ingest_lag.record(
                max(0.0, self.clock.epoch(wall) - record.event_time.timestamp()), {"symbol": symbol}
            )
        if gap is not None:
            if len(gap.expected) > MAX_BACKFILL_BARS:
                with log_context(symbol=symbol):
                    self.backfill.finish_gap(
                        gap,
                        GapState.UNRECOVERABLE,
                        f"{len(gap.expected)} missing bars exceed the backfill window of {MAX_BACKFILL_BARS}",
                    )
            else:
                self.backfill.start(gap)

    def _on_disconnected(self, event: events.Disconnected) -> None:
        delay = self.connection.on_disconnected(event)
        if delay is None:
            return
        ib = self.settings.ib
        expected = in_daily_restart_window(
            self.clock.now(self.wall()),
            ib.daily_restart_time,
            ib.daily_restart_timezone,
            ib.daily_restart_window_seconds,
        )
        self.tracker.note_interruption("daily_restart" if expected else "disconnect")
        self.subscriptions.drop_all()
        self.backfill.on_disconnected()
        if expected:
            # IB Gateway's daily restart at its configured time: expected, so recorded (info) and never paged.
            message = f"IB Gateway daily restart (configured {ib.daily_restart_time} {ib.daily_restart_timezone})"
            self.alerts.fire("ib_disconnected", COMPONENT, Severity.INFO, f"{message}: {event.reason}")
            log.info(
                "IB disconnected",
                extra={"reason": event.reason, "retry_in_seconds": round(delay, 2), "daily_restart": True},
            )
            return
        self.alerts.fire("ib_disconnected", COMPONENT, Severity.CRITICAL, f"IB connection lost: {event.reason}")
        log.warning(
            "IB disconnected",
            extra={"reason": event.reason, "retry_in_seconds": round(delay, 2), "daily_restart": False},
        )

    # --- periodic -----------------------------------------------------------------------------------------------

    def _periodic(self, now: float) -> None:
        if self.state in (ConnectionState.CONNECTED, ConnectionState.IB_LOST):
            self.session.req_current_time()
            self._recover_streams(now)
        market_open = self.calendar.is_open(self.clock.now(now))
        # A competing session explains the silence: one alert for it, no stale-feed alert per symbol.
        for change in self.staleness.check(now, market_open and not self.competing.active):
            if change.stale:
                self.tracker.note_interruption("stale_feed", [change.symbol])
                self.alerts.fire(
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
                why = "competing live session" if self.competing.active else "market closed"
                self.alerts.resolve("stale_feed", change.symbol, f"{change.symbol}: {why}", symbol=change.symbol)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.settings.feed.heartbeat_seconds
            active = sum(1 for symbol in self.instruments if not self.staleness.is_stale(symbol))
            self.sink.send(
                heartbeats.TOPIC,
                Heartbeat(
                    component=COMPONENT,
                    instance_id=self.instance_id,
                    connection_state=self.state.value,
                    symbols_active=active if self.state == ConnectionState.CONNECTED else 0,
                    reconnect_count=self.reconnect_count,
                    time=utc_now(),
                    market_time=self.clock.now(now),
                ),
            )
        self._update_snapshot()

    def _recover_streams(self, now: float) -> None:
        """After a farm came back, resubscribe the streams that stayed silent; in a competing session, ask again."""
        broken_at = self.farm_recovery.due(now)
        if broken_at is not None:
            silent = self.liveness.silent_since(list(self.instruments), broken_at)
            if silent:
                log.info("data farm back but streams silent: resubscribing", extra={"symbols": ",".join(silent)})
                self.subscriptions.resubscribe(silent)
        if self.competing.probe_due(now):
            log.info("competing live session: asking for market data again")
            self.subscriptions.subscribe_all()

    # --- health -------------------------------------------------------------------------------------------------

    def _update_snapshot(self) -> None:
        now = self.wall()
        ages = self.staleness.ages(now)
        snapshot = {
            "connection_state": self.state.value,
            "reconnect_count": self.reconnect_count,
            "market_open": self.calendar.is_open(self.clock.now(now)),
            "market_time": self.clock.now(now).isoformat(),
            "subscriptions": len(self.subscriptions),
            "tick_age_seconds": {symbol: round(age, 3) for symbol, age in ages.items()},
            "stale_symbols": sorted(symbol for symbol in self.instruments if self.staleness.is_stale(symbol)),
            "open_gaps": len(self.tracker.gaps),
            "kafka_delivered": self.sink.delivered,
            "kafka_failed": self.sink.failed,
        }
        self.health.update(snapshot)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /ready: IB connected, Kafka reachable, every subscription delivering (or the market closed)."""
        return self.health.readiness()
