"""The executor: risk-approved orders from Kafka to IB, and IB's callbacks back to Kafka, without ever doubling an
order.

One thread owns all state. It drains the IB session's event queue, polls the control and routed-order consumers,
and publishes through one transactional producer. ibapi's threads only enqueue events; the health server only reads
a snapshot.

Crash-safety protocol for one routed order (offset N of the single-partition ``orders.routed.v1``):

1. skip it if our book (rebuilt from ``orders.events.v1`` at startup) already holds the order and it is not in doubt;
2. ask IB: reqAllOpenOrders + reqExecutions; any order or execution carrying ``orderRef == order_id`` (from any
   client) means the order exists: adopt it, record its state, do not place;
3. otherwise take the IB ids from the journal if the intent is in doubt (a previous attempt crashed), else allocate
   fresh ids above the high-water mark, and write them to the journal with fsync            [crash: before_place]
4. placeOrder for every leg, parent first        [crash: mid_bracket, between a bracket's parent and children]
   (re-sending an id IB already holds modifies that order; it never adds one)             [crash: after_place]
5. one Kafka transaction: the pending_submit events                                       [crash: after_event]
6. after the commit: the consumer offset N+1 (asynchronously), and the intent leaves the journal.

A crash before 5 commits leaves offset N uncommitted and the events invisible (read_committed; the next
``init_transactions`` aborts the open transaction): the restarted executor meets N again and decides by 1-4. A crash
between 5 and the offset commit meets N again too, and 1 skips it: the committed events put it in the book. The offset
is not inside the transaction because librdkafka's ``send_offsets_to_transaction`` can hang for good when the group
coordinator restarts (``Transactions.commit``).
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanContext

from consumers.execution.exceptions import FencedError
from consumers.execution.journal import InDoubt, Journal
from consumers.execution.mapping import (
    CANCEL_MOOT_CODES,
    QTY_EPSILON,
    TERMINAL,
    InvalidOrderError,
    LegPlan,
    leg_of_ib_order,
    legs_of,
    may_trade,
    plan_legs,
    status_from_ib,
    validate,
)
from consumers.execution.state import (
    RECOVERED,
    Book,
    CancelRequest,
    IbSnapshot,
    LegState,
    execution_record,
    reconcile,
    status_of_error,
)
from ibstream.alerting import AlertBook
from ibstream.backoff import Backoff
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    OrderEvent,
    Position,
    Record,
    RoutedOrder,
    TopicSpec,
    alerts,
    control,
    executions,
    order_events,
    positions,
    routed_orders,
    utc_now,
)
from ibstream.contracts.enums import (
    ControlCommandKind,
    ExecutionSource,
    OrderLeg,
    OrderStatus,
    Severity,
)
from ibstream.contracts.serde import DecodeError
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.ib.session import IbConnectError, IbSession, stock_contract
from ibstream.kafka.clients import (
    OffsetError,
    TransactionError,
    Transactions,
    commit_offsets,
    create_consumer,
    create_transactional_producer,
    is_fatal,
)
from ibstream.kafka.records import (
    DeadLetterRouter,
    KafkaMessage,
    RecordProducer,
    codec_from_settings,
    consume_to_end,
    decode_message,
)
from ibstream.telemetry import (
    as_current,
    consume_span,
    current_span_context,
    log_context,
    meter,
    record_error,
    within,
)

log = logging.getLogger(__name__)

COMPONENT = "execution"
#: Test hook (crash tests only): SIGKILL this process at the named point of the placement protocol
#: (mid_bracket: after a bracket's parent was sent, before its children).
CRASH_AT_ENV = "IBSTREAM_EXECUTION_CRASH_AT"
#: Test hook: only for this order id (unset: the first order that reaches the point).
CRASH_ORDER_ENV = "IBSTREAM_EXECUTION_CRASH_ORDER"
CRASH_POINTS = frozenset({"before_place", "mid_bracket", "after_place", "after_event"})
#: Test hook (chaos checker's self-test only, never set in a deployment): "1" deliberately breaks the placement
#: protocol — no orderRef lookup at IB and no journaled ids — so a re-delivered order is placed a second time. It
#: exists to prove the chaos checker reports duplicate orders.
NO_DEDUP_ENV = "IBSTREAM_EXECUTION_TEST_NO_DEDUP"
#: Kill-switch targets that stop every symbol (the same set the risk gate honours); the account id does too.
GLOBAL_TARGETS = frozenset({"*", "all", "global", "account"})
#: Orders whose placing span execution remembers for their later events' spans.
_MAX_ORDER_TRACES = 10_000
#: A fill whose commission report has not arrived after this long is published without it.
COMMISSION_WAIT_SECONDS = 2.0


class State(StrEnum):
    """Where the executor is; orders are placed only in READY."""

    CONNECTING = "connecting"
    RECONCILING = "reconciling"
    READY = "ready"
    IB_LOST = "ib_lost"  # socket up, gateway lost IB's servers (1100): no placing until restored and reconciled
    DISCONNECTED = "disconnected"
    REFUSED = "refused"  # paper interlock: a live account that the settings do not name
    STOPPED = "stopped"


@dataclass
class _Collector:
    """Gathers IB's answers to one snapshot request (open orders, executions, positions)."""

    snapshot: IbSnapshot
    exec_req_id: int
    open_done: bool = False
    exec_done: bool = False
    positions_done: bool = True

    @property
    def complete(self) -> bool:
        return self.open_done and self.exec_done and self.positions_done


@dataclass
class _OwedCancel:
    """A cancelOrder reconciliation owes IB for a leg it recorded cancelled (``state.CancelRequest``)."""

    order_id: str
    leg: OrderLeg
    #: The IB connection (session generation) it was last sent on; None: not sent yet.
    sent_generation: int | None = None


class Executor:
    """Owns the IB session for one account and client id, the journal, and the Kafka clients of execution."""

    def __init__(
        self, settings: Settings, session: IbSession, journal: Journal, *, wall: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.session = session
        self.journal = journal
        self.wall = wall
        self.prefix = settings.kafka.topic_prefix
        self.client_id = session.client_id
        self.state = State.CONNECTING
        self.book = Book()
        self.account: str | None = None
        self.generation = 0
        self.kill_switches: dict[str, ControlCommand] = {}
        self.backoff = Backoff(settings.ib.reconnect_base_seconds, settings.ib.reconnect_cap_seconds)
        self.codec = codec_from_settings(settings)
        self._crash_at = os.environ.get(CRASH_AT_ENV, "")
        self._crash_order = os.environ.get(CRASH_ORDER_ENV, "")
        self._no_dedup = os.environ.get(NO_DEDUP_ENV) == "1"
        if self._no_dedup:
            log.error("test hook %s=1: duplicate orders are possible; never run like this in production", NO_DEDUP_ENV)
        if self._crash_at and self._crash_at not in CRASH_POINTS:
            raise ValueError(f"{CRASH_AT_ENV}={self._crash_at!r}: expected one of {sorted(CRASH_POINTS)}")
        self._next_valid_id = 0
        self._next_connect_at = 0.0
        self._req_ids = itertools.count(9000)
        self._collector: _Collector | None = None
        # Each record with the span it was produced under: sent later in one transaction, it still carries its
        # order's trace context.
        self._outbox: list[tuple[TopicSpec[Any], Record, SpanContext | None]] = []
        # order_id → the span that placed it: IB's acks and fills arrive later, outside any consumed record, and
        # their spans join the order's trace through it. Bounded; an order adopted after a restart has none.
        self._traces: collections.OrderedDict[str, SpanContext] = collections.OrderedDict()
        self._dead: list[tuple[KafkaMessage, BaseException]] = []
        self._offsets: dict[tuple[str, int], int] = {}
        self._offsets_dirty = False
        self._settle: list[str] = []
        self._crash_batch: str | None = None
        self._held: collections.deque[KafkaMessage] = collections.deque()
        self._pending_execs: dict[str, tuple[events.ExecutionDetail, ExecutionSource, float]] = {}
        self._early_commissions: dict[str, events.CommissionReport] = {}
        self._routed_times: dict[str, dt.datetime] = {}
        self._acked_at: dict[str, float] = {}
        self.alerts = AlertBook(COMPONENT)
        self._paused = False
        self.routed_consumers_replaced = 0
        self._reconcile_due = False
        # IB order id → the cancel reconciliation owes IB for it, until IB answers; then the id moves to the set, so
        # the cancel is never sent again (both hold only legs reconciliation presumed cancelled: few, like the book).
        self._owed_cancels: dict[int, _OwedCancel] = {}
        self._answered_cancels: set[int] = set()
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"state": self.state.value}
        # Kafka clients: the transactional producer needs the account (its transactional.id), known after connect.
        self.producer: Any = None
        self.sink: RecordProducer | None = None
        self.tx: Transactions | None = None
        self.routed: Any = None
        self.control: Any = None
        self.dlq: DeadLetterRouter | None = None
        self._init_metrics()

    # --- metrics ------------------------------------------------------------------------------------------------

    def _init_metrics(self) -> None:
        m = meter("consumers.execution")
        self.m_outcomes = m.create_counter(
            "ibstream_execution_orders", description="Orders that reached a final state, by outcome"
        )
        self.m_placed = m.create_counter("ibstream_execution_placed", description="IB orders placed (legs)")
        self.m_intent_to_ack = m.create_histogram(
            "ibstream_execution_intent_to_ack_seconds",
            unit="s",
            description="routed_time → IB acknowledged",
        )
        self.m_ack_to_fill = m.create_histogram(
            "ibstream_execution_ack_to_fill_seconds",
            unit="s",
            description="IB acknowledged → filled",
        )
        m.create_observable_gauge(
            "ibstream_ib_connected", [self._observe_connected], description="1 when the IB session is connected"
        )
        self.m_impossible = m.create_counter(
            "ibstream_execution_impossible_transitions", description="Status reports that contradicted our state"
        )

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; raises FencedError if another executor took over the account."""
        self._start_control()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.state = State.STOPPED
            self._update_snapshot()
            self.session.disconnect()
            self._close_kafka()

    def step(self, wait: float = 0.02) -> None:
        """One iteration: connect if due, handle IB events, control commands, at most one routed order, publish."""
        if self.state in (State.CONNECTING, State.DISCONNECTED) and self.wall() >= self._next_connect_at:
            self._connect()
        if self._reconcile_due and self.state in (State.IB_LOST, State.READY):
            self._reconcile_due = False
            self._reconcile_and_resume()
        self._drain(wait)
        self._poll_control()
        self._poll_routed()
        self._expire_pending_executions()
        self._flush()
        self._update_snapshot()

    def _observe_connected(self, _options: CallbackOptions) -> list[Observation]:
        connected = self.state in (State.RECONCILING, State.READY, State.REFUSED)
        return [Observation(1 if connected else 0, {"component": COMPONENT})]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /ready: placing orders (connected, reconciled, interlock passed)."""
        with self._snapshot_lock:
            snapshot = dict(self._snapshot)
        return snapshot.get("state") == State.READY.value, snapshot

    def _update_snapshot(self) -> None:
        with self._snapshot_lock:
            self._snapshot = {
                "state": self.state.value,
                "account": self.account,
                "client_id": self.client_id,
                "kill_switch": sorted(self.kill_switches),
                "open_orders": sum(1 for o in self.book.orders.values() if o.open_legs()),
                "in_doubt": len(self.journal.in_doubt),
                "held_routed_orders": len(self._held),
            }

    def _close_kafka(self) -> None:
        for consumer in (self.routed, self.control):
            if consumer is not None:
                try:
                    consumer.close()
                except Exception as error:  # closing is best effort on the way out
                    log.warning("consumer close failed", extra={"error": str(error)})

    # --- Kafka setup --------------------------------------------------------------------------------------------

    def _start_control(self) -> None:
        """Read control.v1 (compacted) from its beginning, so a kill switch engaged while we were down holds."""
        self.control = create_consumer(
            self.settings, f"{self.prefix}{self.settings.execution.group_id}-control-{uuid.uuid4().hex[:8]}",
            **{"enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 100},
        )  # fmt: skip
        count = consume_to_end(
            self.control, {self.prefix + control.TOPIC.name: control.TOPIC.partitions}, self._on_control
        )
        log.info(
            "control commands read", extra={"commands": count, "kill_switch": ",".join(sorted(self.kill_switches))}
        )

    def _start_kafka(self, account: str) -> None:
        """First connection: fence older executors of this account, rebuild the book, join the routed group."""
        transactional_id = f"{self.prefix}{self.settings.execution.group_id}-{account}"
        self.producer = create_transactional_producer(self.settings, transactional_id)
        self.tx = Transactions(self.producer, timeout=30.0)
        try:
            # Fences any older producer with this id and aborts the transaction a crashed one left open; only then
            # can a read_committed rebuild reach the end of the event topics.
            self.tx.init()
        except TransactionError as error:
            raise FencedError(str(error)) from None
        self.sink = RecordProducer(self.producer, self.codec, self.prefix)
        self.dlq = DeadLetterRouter(self.sink, self.codec, COMPONENT, self.prefix)
        self._rebuild()
        self._join_routed(account)
        log.info("kafka ready", extra={"transactional_id": transactional_id})

    def _join_routed(self, account: str) -> None:
        group = f"{self.prefix}{self.settings.execution.group_id}"
        self.routed = create_consumer(
            self.settings, group,
            **{
                "enable.auto.commit": False,
                # Static membership: a restarted executor takes its partition back at once instead of waiting for
                # the dead member's session to time out; a second live instance with the same id is fenced.
                "group.instance.id": f"{group}-{account}",
                "session.timeout.ms": 10_000,
            },
        )  # fmt: skip
        self.routed.subscribe([self.prefix + routed_orders.TOPIC.name])
        self._paused = False

    def _replace_routed(self, reason: str) -> None:
        """The routed consumer was fenced for good (``is_fatal``, e.g. its session ran out while the broker
        restarted): join again as a new consumer. Records it fetched but we have not committed are re-delivered
        from the last committed offset; the book recognises the ones already handled, so none is placed twice."""
        log.error("routed consumer fenced; replacing it", extra={"error": reason})
        record_error("consumer_fenced", COMPONENT)
        try:
            self.routed.close()
        except Exception as error:  # a fenced consumer may refuse to leave politely; it is dropped either way
            log.warning("closing the fenced routed consumer failed", extra={"error": str(error)})
        self._held.clear()
        assert self.account is not None  # the routed consumer exists only once an account is bound
        self._join_routed(self.account)
        self.routed_consumers_replaced += 1

    def _rebuild(self) -> None:
        reader = create_consumer(
            self.settings, f"{self.prefix}{self.settings.execution.group_id}-rebuild-{uuid.uuid4().hex[:8]}",
            **{"enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 10},
        )  # fmt: skip
        events_topic = self.prefix + order_events.TOPIC.name
        exec_topic = self.prefix + executions.TOPIC.name

        def handle(message: KafkaMessage) -> None:
            try:
                if message.topic() == events_topic:
                    self.book.rebuild_event(decode_message(self.codec, order_events.TOPIC, message))
                else:
                    self.book.rebuild_execution(decode_message(self.codec, executions.TOPIC, message))
            except DecodeError as error:
                log.error("undecodable record skipped in rebuild", extra={"error": str(error)})
                record_error("decode", COMPONENT)

        try:
            count = consume_to_end(
                reader, {events_topic: order_events.TOPIC.partitions, exec_topic: executions.TOPIC.partitions}, handle
            )
        finally:
            reader.close()
        # Intents whose events did commit (a crash after the commit, before the journal write) are settled.
        self.journal.settle([order_id for order_id in self.journal.in_doubt if order_id in self.book.orders])
        log.info(
            "book rebuilt",
            extra={"records": count, "orders": len(self.book.orders), "in_doubt": len(self.journal.in_doubt),
                   "max_ib_order_id": self.book.max_ib_order_id},
        )  # fmt: skip

    # --- IB connection ------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        self.state = State.CONNECTING
        try:
            connected = self.session.connect(self.settings.ib.connect_timeout_seconds)
        except IbConnectError as error:
            delay = self.backoff.next_delay()
            self._next_connect_at = self.wall() + delay
            self.state = State.DISCONNECTED
            log.warning("IB connect failed; retrying", extra={"error": str(error), "retry_in_seconds": round(delay, 2)})
            return
        self.generation = connected.generation
        self._next_valid_id = max(self._next_valid_id, connected.next_valid_id)
        self.backoff.reset()
        account = self.settings.execution.account or connected.accounts[0]
        if self.account is None:
            self.account = account
            self._start_kafka(account)
        if account != self.account or account not in connected.accounts:
            self._refuse(
                f"gateway manages {','.join(connected.accounts)}, executor is bound to {self.account}",
                connected.accounts,
            )
            return
        if not may_trade(account, self.settings.ib.live_account):
            self._refuse(
                f"account {account} is not a paper account (DU…) and IBSTREAM_IB_LIVE_ACCOUNT does not name it",
                connected.accounts,
            )
            return
        self._resolve("ib_disconnected", (account,), "IB connection restored")
        log.info(
            "IB connected",
            extra={"account": account, "next_valid_id": connected.next_valid_id, "generation": connected.generation,
                   "journal_hwm": self.journal.hwm},
        )  # fmt: skip
        self._reconcile_and_resume()

    def _refuse(self, reason: str, accounts: tuple[str, ...]) -> None:
        """Paper interlock: hold every routed order (nothing consumed past) until an operator intervenes."""
        self.state = State.REFUSED
        log.error("refusing to place orders: %s", reason, extra={"accounts": ",".join(accounts)})
        record_error("refused", COMPONENT)
        self._alert(
            "paper_interlock", Severity.CRITICAL, f"execution refuses to place orders: {reason}",
            {"accounts": ",".join(accounts), "live_account_setting": self.settings.ib.live_account or ""},
            key=(self.account or "",),
        )  # fmt: skip
        self._pause_routed()
        self._flush()

    def _reconcile_and_resume(self) -> None:
        self.state = State.RECONCILING
        if not self._reconcile():
            if self.state is State.RECONCILING:
                # IB did not answer in time: stay out of READY and try again on the next step.
                self.state = State.IB_LOST
                self._reconcile_due = True
            return
        self.state = State.READY
        for target in list(self.kill_switches):
            self._cancel_scope(target)

    # --- IB events ----------------------------------------------------------------------------------------------

    def _drain(self, wait: float) -> None:
        try:
            event = self.session.events.get(timeout=wait)
        except queue.Empty:
            return
        self._dispatch(event)
        for _ in range(10_000):
            try:
                event = self.session.events.get_nowait()
            except queue.Empty:
                return
            self._dispatch(event)

    def _dispatch(self, event: events.IbEvent) -> None:
        match event:
            case events.OrderStatusUpdate():
                self._on_order_status(event)
            case events.OpenOrder():
                self._on_open_order(event)
            case events.OpenOrderEnd():
                if self._collector is not None:
                    self._collector.open_done = True
            case events.ExecutionDetail():
                self._on_execution(event)
            case events.ExecutionEnd(req_id=req_id):
                if self._collector is not None and req_id == self._collector.exec_req_id:
                    self._collector.exec_done = True
            case events.CommissionReport():
                self._on_commission(event)
            case events.PositionUpdate():
                self._on_position(event)
            case events.PositionEnd():
                if self._collector is not None:
                    self._collector.positions_done = True
            case events.IbError():
                self._on_error(event)
            case events.NextValidId(order_id=order_id):
                self._next_valid_id = max(self._next_valid_id, order_id)
            case events.Disconnected(generation=generation) if generation == self.generation:
                self._on_disconnected(event)
            case _:
                pass

    def _on_disconnected(self, event: events.Disconnected) -> None:
        if self.state in (State.STOPPED, State.REFUSED):
            return
        self.state = State.DISCONNECTED
        delay = self.backoff.next_delay()
        self._next_connect_at = self.wall() + delay
        log.warning(
            "IB disconnected; reconnecting", extra={"reason": event.reason, "retry_in_seconds": round(delay, 2)}
        )
        self._alert(
            "ib_disconnected", Severity.WARNING, f"execution lost its IB connection: {event.reason}", {},
            key=(self.account or "",),
        )  # fmt: skip

    def _on_error(self, event: events.IbError) -> None:
        if event.kind is CodeKind.CONNECTION_LOST and self.state is State.READY:
            self.state = State.IB_LOST
            log.warning("IB lost its servers; placing paused", extra={"code": event.code, "ib_message": event.message})
            return
        if event.kind in (CodeKind.RESTORED_DATA_LOST, CodeKind.RESTORED_DATA_MAINTAINED) and self.state in (
            State.IB_LOST,
            State.READY,
        ):
            log.info("IB connectivity restored; reconciling", extra={"code": event.code})
            self._reconcile_due = True
            return
        found = self.book.find(event.req_id) if event.req_id > 0 else None
        if found is not None and event.code in CANCEL_MOOT_CODES:
            # Nothing left to cancel (unknown to IB, or already done): harmless, and it says nothing about the status.
            self._cancel_answered(event.req_id)
            with log_context(order_id=found[0].order_id, symbol=found[0].symbol):
                log.info(
                    "IB had nothing to cancel",
                    extra={"leg": found[1].leg.value, "ib_order_id": event.req_id, "code": event.code,
                           "ib_message": event.message},
                )  # fmt: skip
            return
        if found is None:
            level = (
                logging.INFO
                if event.kind in (CodeKind.FARM_OK, CodeKind.INFO, CodeKind.FARM_INACTIVE)
                else logging.WARNING
            )
            log.log(
                level, "IB message", extra={"req_id": event.req_id, "code": event.code, "ib_message": event.message}
            )
            return
        order, leg = found
        with log_context(order_id=order.order_id, symbol=order.symbol):
            status = status_of_error(event.kind)
            if status is None:
                log.warning(
                    "IB message about an order",
                    extra={"leg": leg.leg.value, "code": event.code, "ib_message": event.message},
                )
                return
            self._cancel_answered(event.req_id)
            self._report(
                order.order_id, leg.leg, status, broker_code=event.code, broker_message=event.message,
            )  # fmt: skip

    def _on_order_status(self, update: events.OrderStatusUpdate) -> None:
        if self._collector is not None:
            self._collector.snapshot.statuses[(update.client_id, update.order_id)] = update
        if update.client_id != self.client_id:
            return
        found = self.book.find(update.order_id)
        if found is None:
            return
        order, leg = found
        status = status_from_ib(update.status, update.filled, update.remaining)
        if status is None:
            return
        if status in TERMINAL:
            self._cancel_answered(update.order_id)
        with log_context(order_id=order.order_id, symbol=order.symbol):
            self._report(
                order.order_id, leg.leg, status, filled=update.filled,
                avg_fill_price=update.avg_fill_price or None, perm_id=update.perm_id or None,
                broker_status=update.status,
            )  # fmt: skip

    def _on_open_order(self, order: events.OpenOrder) -> None:
        if self._collector is not None:
            self._collector.snapshot.open_orders.append(order)

    def _on_execution(self, detail: events.ExecutionDetail) -> None:
        if self._collector is not None and detail.req_id == self._collector.exec_req_id:
            self._collector.snapshot.executions.append(detail)
        if detail.order_ref not in self.book.orders:
            return
        if detail.exec_id in self.book.exec_ids or detail.exec_id in self._pending_execs:
            return
        source = ExecutionSource.LIVE if detail.req_id < 0 else ExecutionSource.RECONCILIATION
        self._pending_execs[detail.exec_id] = (detail, source, self.wall() + COMMISSION_WAIT_SECONDS)
        early = self._early_commissions.pop(detail.exec_id, None)
        if early is not None:
            self._finish_execution(detail.exec_id, early)

    def _on_commission(self, report: events.CommissionReport) -> None:
        if self._collector is not None:
            self._collector.snapshot.commissions[report.exec_id] = report
        if report.exec_id in self._pending_execs:
            self._finish_execution(report.exec_id, report)
        elif report.exec_id not in self.book.exec_ids:
            self._early_commissions[report.exec_id] = report

    def _finish_execution(self, exec_id: str, commission: events.CommissionReport | None) -> None:
        detail, source, _ = self._pending_execs.pop(exec_id)
        record = execution_record(detail, commission, source, utc_now())
        if self.book.record_execution(record):
            with within(self._traces.get(record.order_id), "execution.fill", order_id=record.order_id,
                        exec_id=exec_id, source=source.value):  # fmt: skip
                self._enqueue(executions.TOPIC, record)
            with log_context(order_id=record.order_id, symbol=record.symbol):
                log.info(
                    "fill",
                    extra={"exec_id": exec_id, "quantity": record.quantity, "price": record.price,
                           "source": source.value},
                )  # fmt: skip

    def _expire_pending_executions(self) -> None:
        now = self.wall()
        for exec_id in [e for e, (_, _, deadline) in self._pending_execs.items() if deadline <= now]:
            self._finish_execution(exec_id, None)

    def _on_position(self, update: events.PositionUpdate) -> None:
        if self._collector is not None and self._collector.snapshot.positions is not None:
            self._collector.snapshot.positions.append(update)
        if self.account is not None and update.account not in ("", self.account):
            return
        source = ExecutionSource.RECONCILIATION if self._collector is not None else ExecutionSource.LIVE
        self._enqueue(
            positions.TOPIC, Position(
                account=update.account or self.account or "", symbol=update.symbol, con_id=update.con_id,
                quantity=update.quantity, avg_cost=update.avg_cost, source=source, time=utc_now(),
            )
        )  # fmt: skip

    # --- the state machine, metrics and alerts ------------------------------------------------------------------

    def _report(
        self,
        order_id: str,
        leg: OrderLeg,
        status: OrderStatus,
        *,
        source: ExecutionSource = ExecutionSource.LIVE,
        reconciliation: str | None = None,
        **fields: Any,
    ) -> None:
        step = self.book.report(
            order_id, leg, status, now=utc_now(), source=source, reconciliation=reconciliation, **fields
        )
        if step.impossible is not None:
            self.m_impossible.add(1)
            record_error("impossible_transition", COMPONENT)
            log.error("impossible order transition not applied", extra={"transition": step.impossible})
            self._alert(
                "impossible_transition", Severity.WARNING, f"IB reported an impossible transition: {step.impossible}",
                {"leg": leg.value, "reported_status": status.value, "source": source.value},
                order_id=order_id, symbol=self.book.orders[order_id].symbol, key=(order_id, step.impossible),
            )  # fmt: skip
            return
        if step.event is None:
            return
        with within(self._traces.get(order_id), f"execution.order {status.value}", order_id=order_id,
                    leg=leg.value, source=source.value):  # fmt: skip
            self._enqueue(order_events.TOPIC, step.event)
        self._observe(step.event)
        log.info(
            "order %s", step.event.status.value,
            extra={"leg": leg.value, "ib_order_id": step.event.ib_order_id, "filled": step.event.filled_quantity,
                   "broker_status": step.event.broker_status, "broker_code": step.event.broker_code,
                   "source": source.value, "reconciliation": reconciliation},
        )  # fmt: skip

    def _observe(self, event: OrderEvent) -> None:
        if event.leg is not OrderLeg.PARENT:
            return
        order_id = event.order_id
        reached = event.status in (OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED)
        if reached and order_id not in self._acked_at:
            self._acked_at[order_id] = self.wall()
            routed_time = self._routed_times.get(order_id)
            if routed_time is not None:
                self.m_intent_to_ack.record(max((event.event_time - routed_time).total_seconds(), 0.0))
        if event.status in TERMINAL:
            self.m_outcomes.add(1, {"outcome": event.status.value})
            acked = self._acked_at.pop(order_id, None)
            if event.status is OrderStatus.FILLED and acked is not None:
                self.m_ack_to_fill.record(max(self.wall() - acked, 0.0))
            self._routed_times.pop(order_id, None)

    def _alert(
        self,
        kind: str,
        severity: Severity,
        message: str,
        details: dict[str, str],
        *,
        key: tuple[str, ...],
        order_id: str | None = None,
        symbol: str | None = None,
    ) -> None:
        alert = self.alerts.fire(kind, "|".join(key), severity, message, symbol=symbol, order_id=order_id,
                                 details=details)  # fmt: skip
        if alert is not None:
            self._enqueue(alerts.TOPIC, alert)

    def _resolve(self, kind: str, key: tuple[str, ...], message: str) -> None:
        alert = self.alerts.resolve(kind, "|".join(key), message)
        if alert is not None:
            self._enqueue(alerts.TOPIC, alert)

    def _enqueue(self, spec: TopicSpec[Any], record: Record) -> None:
        """Queue a record for the next transaction, with the span it belongs to."""
        self._outbox.append((spec, record, current_span_context()))

    # --- asking IB ----------------------------------------------------------------------------------------------

    def _ask_ib(self, symbol: str = "", with_positions: bool = False) -> IbSnapshot | None:
        """reqAllOpenOrders + reqExecutions (+ reqPositions), waiting for every end marker; None if IB did not
        answer in time or the connection dropped (the caller must not place then)."""
        collector = _Collector(IbSnapshot(positions=[] if with_positions else None), next(self._req_ids))
        collector.positions_done = not with_positions
        self._collector = collector
        try:
            sent = self.session.req_all_open_orders() and self.session.req_executions(
                collector.exec_req_id, symbol=symbol
            )
            if with_positions:
                sent = sent and self.session.req_positions()
            if not sent:
                return None
            deadline = self.wall() + self.settings.execution.ib_answer_timeout_seconds
            generation = self.generation
            while not collector.complete:
                if self.wall() > deadline or self.state in (State.DISCONNECTED, State.CONNECTING):
                    log.warning("IB did not answer the order query", extra={"symbol": symbol})
                    return None
                self._drain(0.01)
                if self.generation != generation:
                    return None
            return collector.snapshot
        finally:
            self._collector = None

    def _reconcile(self) -> bool:
        """Start and every reconnect: compare IB's open orders, executions and positions with the book."""
        snapshot = self._ask_ib(with_positions=True)
        if snapshot is None:
            return False
        assert self.account is not None
        result = reconcile(self.book, snapshot, self.client_id, self.account, self.journal.in_doubt)
        for order_id, symbol, leg, ib_order in result.adoptions:
            self.book.adopt(order_id, symbol, leg, ib_order.order_id, ib_order.quantity, ib_order.perm_id)
            self.journal.raise_hwm(ib_order.order_id)
        for detail in result.executions:
            if detail.exec_id not in self._pending_execs:
                self._pending_execs[detail.exec_id] = (detail, ExecutionSource.RECONCILIATION, self.wall())
            self._finish_execution(detail.exec_id, snapshot.commissions.get(detail.exec_id))
        for report in result.reports:
            with log_context(order_id=report.order_id):
                self._report(
                    report.order_id, report.leg, report.status, source=ExecutionSource.RECONCILIATION,
                    reconciliation=report.reconciliation, filled=report.filled,
                    avg_fill_price=report.avg_fill_price, broker_status=report.broker_status,
                    broker_message=report.message,
                )  # fmt: skip
        self._cancel_at_ib(result.cancels)
        for finding in result.findings:
            log.warning("reconciliation: %s", finding.message, extra={"kind": finding.kind})
            self._alert(
                finding.kind, Severity.WARNING, finding.message, finding.details,
                order_id=finding.order_id, symbol=finding.symbol,
                key=(self.account, finding.order_id or "", finding.symbol or "", finding.message),
            )  # fmt: skip
        log.info(
            "reconciled with IB",
            extra={"open_orders": len(snapshot.open_orders), "executions": len(snapshot.executions),
                   "missed_fills": len(result.executions), "reports": len(result.reports),
                   "findings": len(result.findings)},
        )  # fmt: skip
        return True

    def _cancel_at_ib(self, requests: list[CancelRequest]) -> None:
        """Best-effort cancelOrder for the legs reconciliation recorded cancelled because IB no longer lists them:
        IB does not list an order its gateway holds untransmitted, and that order must never be transmitted later.
        Sent once per IB connection until IB answers (an answer lost with the connection is asked for again on the
        next), never after an answer."""
        for request in requests:
            if request.ib_order_id not in self._answered_cancels:
                self._owed_cancels.setdefault(request.ib_order_id, _OwedCancel(request.order_id, request.leg))
        for ib_order_id, owed in self._owed_cancels.items():
            if owed.sent_generation == self.generation:
                continue
            with log_context(order_id=owed.order_id, symbol=self.book.orders[owed.order_id].symbol):
                if self.session.cancel_order(ib_order_id):
                    owed.sent_generation = self.generation
                    log.info(
                        "cancel sent for a leg presumed cancelled (IB no longer lists it)",
                        extra={"leg": owed.leg.value, "ib_order_id": ib_order_id},
                    )
                else:
                    log.info("cancel for a leg presumed cancelled not sent: IB not connected; sent on reconnect",
                             extra={"leg": owed.leg.value, "ib_order_id": ib_order_id})  # fmt: skip

    def _cancel_answered(self, ib_order_id: int) -> None:
        """IB answered for an order (a final status, or an error about it): a cancel we owed for it is settled."""
        if self._owed_cancels.pop(ib_order_id, None) is not None:
            self._answered_cancels.add(ib_order_id)

    # --- routed orders ------------------------------------------------------------------------------------------

    def _poll_routed(self) -> None:
        if self.routed is None:
            return
        ready = self.state is State.READY
        if not ready:
            # Keep the group membership alive without taking records: paused partitions return nothing.
            self._pause_routed()
        elif self._paused:
            self.routed.resume(self.routed.assignment())
            self._paused = False
        message = self.routed.poll(0)
        if message is not None:
            if is_fatal(message.error()):
                self._replace_routed(str(message.error()))
                return
            if message.error() is not None:
                log.warning("routed consumer error", extra={"error": str(message.error())})
            else:
                # A record fetched before a pause took effect is held, in order, never dropped: its offset must not
                # be committed past before it is handled.
                self._held.append(message)
        if ready and self._held:
            self._handle_routed(self._held.popleft())

    def _pause_routed(self) -> None:
        if self.routed is not None and not self._paused:
            assignment = self.routed.assignment()
            if assignment:
                self.routed.pause(assignment)
                self._paused = True

    def _handle_routed(self, message: KafkaMessage) -> None:
        position = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        try:
            order = decode_message(self.codec, routed_orders.TOPIC, message)
        except DecodeError as error:
            self._dead.append((message, error))
            record_error("decode", COMPONENT)
            self._advance(position, offset)
            return
        with log_context(order_id=order.order_id, symbol=order.symbol), consume_span(
            "execution.place", message.headers(), order_id=order.order_id, symbol=order.symbol
        ):  # fmt: skip
            placing = current_span_context()
            if placing is not None:
                self._traces[order.order_id] = placing
                while len(self._traces) > _MAX_ORDER_TRACES:
                    self._traces.popitem(last=False)
            if self._place(order):
                self._advance(position, offset)
                self._flush()
            else:
                # IB could not be asked: not consumed, retried when IB answers again (held, never skipped).
                self._held.appendleft(message)

    def _advance(self, position: tuple[str, int], offset: int) -> None:
        self._offsets[position] = offset + 1
        self._offsets_dirty = True

    def _place(self, order: RoutedOrder) -> bool:
        """The placement protocol (module docstring). False: undecided, retry later."""
        order_id = order.order_id
        entry = self.journal.in_doubt.get(order_id)
        if order_id in self.book.orders and entry is None:
            log.info("order already handled; duplicate delivery ignored")
            return True
        scope = self._kill_scope(order.symbol)
        if scope is not None:
            self._reject_locally(order, f"kill switch on ({scope}): {self.kill_switches[scope].reason}")
            return True
        try:
            validate(order)
        except InvalidOrderError as error:
            self._reject_locally(order, f"invalid routed order: {error}")
            return True
        snapshot = self._ask_ib(symbol=order.symbol)
        if snapshot is None:
            return False
        at_ib = [o for o in snapshot.open_orders if o.order_ref == order_id]
        filled_at_ib = [e for e in snapshot.executions if e.order_ref == order_id]
        if self._no_dedup:  # test hook (NO_DEDUP_ENV): forget what IB and the journal know
            at_ib, filled_at_ib, entry = [], [], None
        self._routed_times[order_id] = order.routed_time
        legs = legs_of(order)
        if at_ib or filled_at_ib:
            log.warning(
                "order already at IB (a previous attempt placed it); adopting, not placing",
                extra={"open_at_ib": len(at_ib), "executions_at_ib": len(filled_at_ib), "in_doubt": entry is not None},
            )  # fmt: skip
            self._adopt(order, snapshot, entry)
            return True
        if entry is not None:
            ids = list(entry.ib_order_ids)
        else:
            floor = max(self._next_valid_id - 1, self.book.max_ib_order_id)
            ids = self.journal.allocate(len(legs), floor)
            self.journal.begin(InDoubt(order_id, order.symbol, tuple(ids)))
        self._crash("before_place", order_id)
        assert self.account is not None
        plans = plan_legs(order, ids, self.account)
        self.book.register(
            order_id, order.symbol, order.side, [(p.leg, p.ib_order_id, p.ticket.quantity) for p in plans]
        )
        self._send_legs(order, plans)
        self._crash("after_place", order_id)
        self._crash_batch = order_id
        self._settle.append(order_id)
        return True

    def _send_legs(self, order: RoutedOrder, plans: list[LegPlan]) -> None:
        contract = stock_contract(order.symbol)
        for index, plan in enumerate(plans):
            if index == 1:
                self._crash("mid_bracket", order.order_id)
            self.session.place_order(plan.ib_order_id, contract, plan.ticket)
            self.m_placed.add(1, {"leg": plan.leg.value})
            self._report(
                order.order_id, plan.leg, OrderStatus.PENDING_SUBMIT,
                broker_message=f"placeOrder {plan.ticket.order_type} {plan.ticket.action} {plan.ticket.quantity:g} "
                f"(IB id {plan.ib_order_id}, parent {plan.ticket.parent_id}, transmit {plan.ticket.transmit})",
            )  # fmt: skip

    def _adopt(self, order: RoutedOrder, snapshot: IbSnapshot, entry: InDoubt | None) -> None:
        """The order exists at IB: take over its ids, record what IB says, re-send only journaled legs IB lacks."""
        order_id = order.order_id
        self.book.register(order_id, order.symbol, order.side, [])
        if entry is not None:
            journaled = zip(legs_of(order), entry.ib_order_ids, strict=True)
            self.book.register(order_id, order.symbol, order.side, [(leg, i, order.quantity) for leg, i in journaled])
        open_ids: set[int] = set()
        for ib_order in snapshot.open_orders:
            if ib_order.order_ref != order_id:
                continue
            if ib_order.client_id != self.client_id:
                self._alert(
                    "order_other_client", Severity.WARNING,
                    f"order exists at IB under client {ib_order.client_id}; not placed again and not managed here",
                    {"client_id": str(ib_order.client_id), "ib_order_id": str(ib_order.order_id)},
                    order_id=order_id, symbol=order.symbol, key=(order_id, str(ib_order.client_id)),
                )  # fmt: skip
                continue
            leg = leg_of_ib_order(ib_order.parent_id, ib_order.order_type)
            self.book.adopt(order_id, order.symbol, leg, ib_order.order_id, ib_order.quantity, ib_order.perm_id)
            self.journal.raise_hwm(ib_order.order_id)
            open_ids.add(ib_order.order_id)
        executed_ids: set[int] = set()
        for detail in snapshot.executions:
            if detail.order_ref != order_id:
                continue
            executed_ids.add(detail.order_id)
            parent = self.book.orders[order_id].legs.get(OrderLeg.PARENT)
            if self.book.find(detail.order_id) is None and (parent is None or parent.ib_order_id is None):
                self.book.adopt(
                    order_id, order.symbol, OrderLeg.PARENT, detail.order_id, order.quantity, detail.perm_id
                )
            if detail.exec_id not in self.book.exec_ids and detail.exec_id not in self._pending_execs:
                self._pending_execs[detail.exec_id] = (detail, ExecutionSource.RECONCILIATION, self.wall())
            if detail.exec_id in self._pending_execs:
                self._finish_execution(detail.exec_id, snapshot.commissions.get(detail.exec_id))
        missing: list[OrderLeg] = []
        for leg_state in list(self.book.orders[order_id].legs.values()):
            ib_id = leg_state.ib_order_id
            if ib_id is None:
                continue
            if ib_id in open_ids:
                update = snapshot.statuses.get((self.client_id, ib_id))
                broker = (
                    update.status
                    if update is not None
                    else next(
                        o.status for o in snapshot.open_orders if o.order_id == ib_id and o.client_id == self.client_id
                    )
                )
                filled = update.filled if update is not None else 0.0
                remaining = update.remaining if update is not None else leg_state.quantity - filled
                status = status_from_ib(broker, filled, remaining)
                if status is not None:
                    self._report(
                        order_id, leg_state.leg, status, source=ExecutionSource.RECONCILIATION,
                        reconciliation=RECOVERED, filled=filled, broker_status=broker,
                        avg_fill_price=(update.avg_fill_price or None) if update is not None else None,
                    )  # fmt: skip
            elif ib_id in executed_ids:
                filled = self.book.leg_fills(order_id, ib_id)
                done = filled + QTY_EPSILON >= leg_state.quantity
                self._report(
                    order_id, leg_state.leg, OrderStatus.FILLED if done else OrderStatus.CANCELLED,
                    source=ExecutionSource.RECONCILIATION, reconciliation=RECOVERED, filled=filled,
                    broker_message=None if done else "no longer open at IB, partly filled: presumed cancelled",
                )  # fmt: skip
            else:
                missing.append(leg_state.leg)
        if missing and entry is not None:
            # Part of an intent reached IB: re-send the missing legs with their journaled ids (an id IB holds can only
            # be modified, never added), so a bracket is completed and transmitted.
            plans = [p for p in plan_legs(order, list(entry.ib_order_ids), self.account or "") if p.leg in missing]
            log.warning("re-sending legs IB does not list", extra={"legs": ",".join(leg.value for leg in missing)})
            self._send_legs(order, plans)
        elif missing:
            self._alert(
                "order_partly_at_ib", Severity.WARNING,
                f"legs {','.join(leg.value for leg in missing)} are not at IB and their ids were not journaled",
                {}, order_id=order_id, symbol=order.symbol, key=(order_id,),
            )  # fmt: skip
        self._settle.append(order_id)

    def _reject_locally(self, order: RoutedOrder, reason: str) -> None:
        log.warning("order not placed: %s", reason)
        self.book.register(order.order_id, order.symbol, order.side, [])
        state = self.book.orders[order.order_id]
        if OrderLeg.PARENT not in state.legs:
            state.legs[OrderLeg.PARENT] = LegState(OrderLeg.PARENT, order.quantity)
        self._report(order.order_id, OrderLeg.PARENT, OrderStatus.REJECTED, broker_message=reason)

    # --- kill switch --------------------------------------------------------------------------------------------

    def _poll_control(self) -> None:
        if self.control is None:
            return
        for _ in range(100):
            message = self.control.poll(0)
            if message is None:
                return
            if message.error() is not None:
                continue  # partition EOF and transient errors: nothing to apply
            self._on_control(message)

    def _on_control(self, message: KafkaMessage) -> None:
        if message.value() is None:
            return  # a compaction tombstone
        try:
            command = decode_message(self.codec, control.TOPIC, message)
        except DecodeError as error:
            log.error("undecodable control command ignored", extra={"error": str(error)})
            record_error("decode", COMPONENT)
            return
        if command.command not in (ControlCommandKind.KILL_SWITCH_ON, ControlCommandKind.KILL_SWITCH_OFF):
            return
        target = command.target.strip()
        target = target.lower() if target.lower() in GLOBAL_TARGETS else target
        if command.command is ControlCommandKind.KILL_SWITCH_ON:
            self.kill_switches[target] = command
            log.warning("kill switch on", extra={"target": target, "actor": command.actor, "reason": command.reason})
            self._alert(
                "kill_switch", Severity.CRITICAL,
                f"kill switch on for {target} by {command.actor}: {command.reason}; execution cancels and holds",
                {"target": target, "actor": command.actor, "command_id": command.command_id}, key=(target,),
            )  # fmt: skip
            if self.state is State.READY:
                self._cancel_scope(target)
        elif self.kill_switches.pop(target, None) is not None:
            log.warning("kill switch off", extra={"target": target, "actor": command.actor})
            self._resolve("kill_switch", (target,), f"kill switch off for {target}")

    def _kill_scope(self, symbol: str) -> str | None:
        for target in self.kill_switches:
            if target in GLOBAL_TARGETS or target == symbol or target == self.account:
                return target
        return None

    def _cancel_scope(self, target: str) -> None:
        """Cancel every working order we own in the kill switch's scope (a parent's cancel takes its children)."""
        everything = target in GLOBAL_TARGETS or target == self.account
        cancelled = 0
        for order in self.book.orders.values():
            if not everything and order.symbol != target:
                continue
            open_legs = order.open_legs()
            parent = order.legs.get(OrderLeg.PARENT)
            for leg in open_legs:
                if leg.leg is not OrderLeg.PARENT and parent is not None and parent.is_open:
                    continue
                if leg.ib_order_id is not None and self.session.cancel_order(leg.ib_order_id):
                    cancelled += 1
        log.warning("kill switch: cancel requested", extra={"target": target, "cancel_requests": cancelled})

    # --- publishing ---------------------------------------------------------------------------------------------

    def _flush(self) -> None:
        """One transaction: every record produced since the last flush + the routed consumer's offsets."""
        if not (self._outbox or self._dead or self._offsets_dirty):
            return
        if self.tx is None or self.sink is None or self.dlq is None:
            return  # not connected yet: records wait for the producer
        try:
            self.tx.begin()
            for spec, record, context in self._outbox:
                with as_current(context):
                    self.sink.send(spec, record)
            for message, error in self._dead:
                self.dlq.route(routed_orders.TOPIC, message, error)
            if self._crash_batch is not None:
                self.sink.flush(10)  # the records really are on the broker, inside the open transaction
                self._crash("after_event", self._crash_batch)
            self.tx.commit()
        except Exception as error:  # TransactionError, or librdkafka refusing a produce in a broken transaction
            if isinstance(error, TransactionError) and error.fatal:
                raise FencedError(f"execution producer fenced or broken: {error}") from None
            log.warning("transaction failed; retrying", extra={"error": str(error), "records": len(self._outbox)})
            record_error("transaction", COMPONENT)
            try:
                self.tx.abort()
            except TransactionError as abort_error:
                if abort_error.fatal:
                    raise FencedError(str(abort_error)) from None
            return
        if self._offsets_dirty and self.routed is not None:
            # After the events are committed, never with them (Transactions.commit says why): a crash in between
            # re-delivers the order, and step 1 finds it in the book rebuilt from those events.
            try:
                commit_offsets(self.routed, self._offsets, asynchronous=True)
            except OffsetError as error:
                log.warning("routed offset commit failed; the book skips the re-delivery", extra={"error": str(error)})
        self._outbox.clear()
        self._dead.clear()
        self._offsets_dirty = False
        self._crash_batch = None
        settled, self._settle = self._settle, []
        self.journal.settle(settled)

    def _crash(self, point: str, order_id: str) -> None:
        """Test hook: SIGKILL ourselves at ``point`` (set only by the crash tests via IBSTREAM_EXECUTION_CRASH_AT)."""
        if self._crash_at != point or (self._crash_order and self._crash_order != order_id):
            return
        log.warning("test hook: SIGKILL at %s", point, extra={"order_id": order_id})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
