"""The risk view feed: every worker reads quotes, positions, executions, control, decisions, routed orders, order
events and account states in full.

Risk needs account-wide state (all positions, every symbol's last quote, the kill switch) while intents are
spread over partitions and workers. Each worker therefore keeps its own replica, read by a consumer with a
private group (every partition, no commits) in a background thread. This plays the role of a Faust GlobalTable
without its open recovery bugs, and keeps the kill switch one consumer poll away (≈ the poll timeout) instead of
one changelog round trip.

Control records are folded by ``ibstream.trading_states`` (trading states and kill switches by scope, stale commands
ignored); one that does not decode halts the scope its key names, where a record of another topic is only skipped
(its owning consumer dead-letters it).

What the feed costs the event loop: it runs in a thread that shares the GIL with the Faust worker, so it does not
decode a decision or a routed order whose order id the view already holds (the worker's own, applied when it decided
them: most of what the two topics carry back to a busy worker). Such a record would change nothing: see
``RiskView.has_decision`` and ``RiskView.holds_order``. (Taking what is waiting with ``consume(n, 0)`` after each
poll was tried: the view then missed quotes sent just before an intent — tests/integration/test_trading_states.py
failed on stale quotes — so the feed polls one record at a time.)

Where each topic starts reading (so a restart rebuilds the view without replaying years of quotes):
control and positions from the beginning (compacted / latest wins), quotes from a few staleness periods ago,
executions from the start of the UTC day (daily P&L), decisions from ``decisions_lookback`` ago (dedup of
redelivered intents across restarts, and the throttle window), routed orders and order events from the same lookback
(the entries working or in flight: an order routed earlier than that and still working is not counted), account
states from the last ``ACCOUNT_TAIL`` records of each partition (the newest per account is all that counts, and it
is there however long ago it was written: a worker restarted after IB's account stream stopped still fails
``account_state`` closed instead of falling back to the static equity).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    Heartbeat,
    Record,
    TopicSpec,
    account_states,
    control,
    executions,
    heartbeats,
    order_events,
    positions,
    quotes,
    risk_decisions,
    routed_orders,
    utc_now,
)
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.kafka.clients import create_consumer, offsets_at_times, tail_offset
from ibstream.market_clock import FeedClock
from ibstream.risk import RiskView

log = logging.getLogger(__name__)

OFFSET_BEGINNING = -2
OFFSET_END = -1
#: Account records read back per partition at startup: the newest is enough, a few more allow for the transaction
#: markers execution's transactional producer leaves between records.
ACCOUNT_TAIL = 50


def _start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class ViewFeed:
    """Folds the account/market topics into a ``RiskView`` from a background thread."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        view: RiskView,
        *,
        poll_seconds: float = 0.05,
        decisions_lookback: timedelta = timedelta(days=2),
        clock: FeedClock | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._view = view
        self._poll = poll_seconds
        self._decisions_lookback = decisions_lookback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_eof: set[tuple[str, int]] = set()
        self._assigned = False
        prefix = settings.kafka.topic_prefix
        self._specs: dict[str, tuple[TopicSpec[Any], Callable[[Any], object]]] = {
            prefix + quotes.TOPIC.name: (quotes.TOPIC, view.apply_quote),
            prefix + positions.TOPIC.name: (positions.TOPIC, view.apply_position),
            prefix + executions.TOPIC.name: (executions.TOPIC, view.apply_execution),
            prefix + control.TOPIC.name: (control.TOPIC, view.apply_control),
            prefix + risk_decisions.TOPIC.name: (risk_decisions.TOPIC, view.apply_decision),
            prefix + routed_orders.TOPIC.name: (routed_orders.TOPIC, view.apply_routed),
            prefix + order_events.TOPIC.name: (order_events.TOPIC, view.apply_order_event),
            prefix + account_states.TOPIC.name: (account_states.TOPIC, view.apply_account_state),
        }
        if clock is not None:
            feed_clock = clock

            def observe(heartbeat: Heartbeat) -> None:
                # Only the producer speaks for IB's clock; other components' heartbeats carry wall time.
                if heartbeat.component == "producer" and heartbeat.market_time is not None:
                    feed_clock.observe(heartbeat.market_time)

            self._specs[prefix + heartbeats.TOPIC.name] = (heartbeats.TOPIC, observe)
        # Topics whose records are keyed by order id, and whether the view already holds what such a record says.
        self._known: dict[str, Callable[[str], bool]] = {
            prefix + risk_decisions.TOPIC.name: view.has_decision,
            prefix + routed_orders.TOPIC.name: view.holds_order,
        }
        self.applied = 0
        self.undecodable = 0
        #: Records not decoded because the view already held what they say.
        self.known = 0

    def _start_time(self, topic: str, now: datetime) -> datetime | None:
        """None = from the beginning."""
        spec = self._specs[topic][0]
        if spec is quotes.TOPIC:
            return now - timedelta(seconds=max(60.0, 3 * self._settings.risk.quote_max_age_seconds))
        if spec is executions.TOPIC:
            return _start_of_day(now)
        if spec in (risk_decisions.TOPIC, routed_orders.TOPIC, order_events.TOPIC):
            return now - self._decisions_lookback
        if spec is heartbeats.TOPIC:
            return now - timedelta(minutes=1)
        return None

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        now = utc_now()
        tail = [p for p in partitions if self._specs[p.topic][0] is account_states.TOPIC]
        by_time = [p for p in partitions if p not in tail and self._start_time(p.topic, now) is not None]
        for p in partitions:
            start = self._start_time(p.topic, now)
            p.offset = OFFSET_BEGINNING if start is None else int(start.timestamp() * 1000)
        for p in tail:
            p.offset = tail_offset(consumer, p, ACCOUNT_TAIL)
        if by_time:
            found = offsets_at_times(consumer, by_time)
            for p in by_time:
                # -1: nothing at or after that time, start at the end.
                p.offset = found.get((p.topic, p.partition), OFFSET_END)
        consumer.assign(partitions)
        self._pending_eof = {(p.topic, p.partition) for p in partitions}
        self._assigned = True
        log.info("risk view feed assigned", extra={"partitions": len(partitions)})

    def start(self) -> None:
        """Start reading in a daemon thread; ``view.ready`` is set once every partition reached its end."""
        consumer = create_consumer(
            self._settings,
            f"{self._settings.kafka.topic_prefix}{self._settings.streams.app_id}-view-{uuid.uuid4().hex[:12]}",
            **{
                "enable.auto.commit": False,
                # Eager assignment so the callback can set start offsets with a plain assign().
                "partition.assignment.strategy": "range",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 20,
            },
        )
        consumer.subscribe(list(self._specs), on_assign=self._on_assign)
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="risk-view-feed", daemon=True)
        self._thread.start()

    def _run(self, consumer: Any) -> None:
        try:
            while not self._stop.is_set():
                message = consumer.poll(self._poll)
                if message is None:
                    continue
                self._handle(message)
        finally:
            consumer.close()

    def _handle(self, message: Any) -> None:
        error = message.error()
        if error is None:
            self._apply(message)
        elif error.name() == "_PARTITION_EOF":
            self._pending_eof.discard((message.topic(), message.partition()))
            if self._assigned and not self._pending_eof and not self._view.ready.is_set():
                log.info("risk view caught up", extra={"applied": self.applied, "known": self.known})
                self._view.ready.set()
        else:
            log.warning("risk view feed error", extra={"error": str(error)})

    def _apply(self, message: Any) -> None:
        spec, apply = self._specs[message.topic()]
        if message.value() is None:
            return  # a compaction tombstone: deletes a key, commands nothing
        known = self._known.get(message.topic())
        if known is not None:
            key = message.key()
            if key is not None and known(key.decode(errors="replace")):
                self.known += 1
                return
        try:
            record: Record = self._codec.decode(
                message.topic(), spec.record, message.value(), message.partition(), message.offset()
            )
        except DecodeError as error:
            self.undecodable += 1
            if spec is control.TOPIC:
                # Fail closed: a control record we cannot read (corrupt, or a command this version does not know)
                # halts its scope; skipping it could leave trading on that the record meant to stop.
                halt = self._view.apply_undecodable_control(message.key(), str(error), utc_now())
                log.error("undecodable control record halts trading", extra={"scope": halt.scope, "error": str(error)})
                return
            # The owning consumer of that topic dead-letters it; the view only skips what it cannot read.
            log.warning("risk view skipped an undecodable record", extra={"error": str(error)})
            return
        stale = self._view.trading.stale
        apply(record)
        self.applied += 1
        if self._view.trading.stale > stale and isinstance(record, ControlCommand):
            log.warning(
                "stale control command ignored",
                extra={"command_id": record.command_id, "target": record.target, "sequence": record.sequence},
            )

    def wait_ready(self, timeout: float) -> bool:
        """Block until the view caught up (tests, startup)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._view.ready.wait(0.05):
                return True
        return False

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
