"""The executor: risk-approved orders from Kafka to IB, and IB's callbacks back to Kafka, without ever doubling an
order (the protocol: ``placement``; its commit point: ``outbox``).

One thread owns all state. It drains the IB session's event queue, polls the control and routed-order consumers,
and publishes through one transactional producer. ibapi's threads only enqueue events; the health server only reads
a snapshot. This module wires the parts and runs the loop; each concern has its module: ``placement``, ``ib_events``
(+ ``fills``), ``reconciliation`` (pure) and ``reconciler`` (its I/O), ``outbox``, ``trading_state`` (the kill
switch), ``decisions`` (a routed order needs risk's approved decision with the same terms), ``intake`` (the Kafka
clients), ``reporting`` (events, metrics, alerts).

State machine (orders are placed only in READY):

    CONNECTING ─connect ok, interlock passed─▶ RECONCILING ─IB answered─▶ READY
    CONNECTING ─connect failed─▶ DISCONNECTED ─backoff with jitter─▶ CONNECTING
    RECONCILING ─IB did not answer─▶ IB_LOST (reconcile again on the next step)
    READY ─1100─▶ IB_LOST ─1101/1102─▶ (reconcile) ─▶ READY
    any ─socket closed─▶ DISCONNECTED;  connect with a live account not named by the settings ─▶ REFUSED (final)

The connection itself (connect, backoff with jitter, generations, what IB's codes mean) is ``ibstream.ib.connection``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanContext

from consumers.execution.account_feed import AccountFeed
from consumers.execution.account_values import PublishPolicy
from consumers.execution.context import Context
from consumers.execution.crash import CrashPoints
from consumers.execution.decisions import DecisionGate, Verdict
from consumers.execution.fills import FillPairing
from consumers.execution.flatten import Flattens
from consumers.execution.ib_events import OrderEvents
from consumers.execution.intake import Intake
from consumers.execution.journal import Journal, journal_lost
from consumers.execution.operator_orders import OperatorOrders
from consumers.execution.outbox import COMPONENT, Outbox
from consumers.execution.placement import Placement
from consumers.execution.reconciler import IbQuery, OwedCancels, Reconciler
from consumers.execution.reconciliation import IbSnapshot
from consumers.execution.reporting import Reporter
from consumers.execution.state import Book
from consumers.execution.trading_state import KillSwitch
from ibstream.alerting import AlertBook
from ibstream.config import Settings
from ibstream.contracts import ControlCommand, Record, TopicSpec, control, routed_orders, utc_now
from ibstream.contracts.enums import Severity
from ibstream.contracts.serde import DecodeError
from ibstream.ib import events
from ibstream.ib.connection import Connectivity, IbConnection, in_daily_restart_window, may_trade
from ibstream.ib.protocol import Session
from ibstream.kafka.records import KafkaMessage, codec_from_settings, decode_message
from ibstream.telemetry import (
    consume_span,
    consumed_attributes,
    current_span_context,
    log_context,
    meter,
    record_error,
)

__all__ = ["COMPONENT", "Executor", "State"]

log = logging.getLogger(__name__)

#: How long one loop turn waits for IB's next event when nothing happens: also how long a routed order can wait
#: before it is polled (the routed consumer cannot wake the loop: confluent-kafka has no wake-up call), so it bounds
#: routed → placed, whose mean it adds half of.
STEP_WAIT_SECONDS = 0.001
#: How often the health snapshot is rebuilt (it counts the book's open orders: not every turn).
SNAPSHOT_SECONDS = 0.1


class State(StrEnum):
    """Where the executor is; orders are placed only in READY."""

    CONNECTING = "connecting"
    RECONCILING = "reconciling"
    READY = "ready"
    IB_LOST = "ib_lost"  # socket up, gateway lost IB's servers (1100): no placing until restored and reconciled
    DISCONNECTED = "disconnected"
    REFUSED = "refused"  # paper interlock: a live account that the settings do not name
    STOPPED = "stopped"


class Executor:
    """Owns the IB session for one account and client id, the journal, and the Kafka clients of execution."""

    def __init__(
        self,
        settings: Settings,
        session: Session,
        journal: Journal,
        *,
        wall: Callable[[], float] = time.monotonic,
        crash: CrashPoints | None = None,
    ) -> None:
        self.settings = settings
        self.wall = wall
        self.ctx = Context(settings, session, journal, wall)
        self.state = State.CONNECTING
        self.connection = IbConnection(
            session,
            base_seconds=settings.ib.reconnect_base_seconds,
            cap_seconds=settings.ib.reconnect_cap_seconds,
            timeout_seconds=settings.ib.connect_timeout_seconds,
            wall=wall,
        )
        self._reconcile_due = False
        self._flush_deferred = False
        self._snapshot_at = float("-inf")
        crash = crash or CrashPoints()
        self.outbox = Outbox(journal, crash)
        self.reporter = Reporter(self.ctx, self.outbox)
        self.intake = Intake(self.ctx, codec_from_settings(settings), self.outbox)
        self.decisions = DecisionGate(self.ctx, self.reporter, self.outbox, self.intake.codec)
        self.kill_switch = KillSwitch(self.ctx, self.reporter)
        self.operator_orders = OperatorOrders(self.ctx, self.reporter)
        self.decisions.modifications = self.operator_orders.on_decision
        self.operator_orders.ready = lambda: self.state is State.READY
        self.query = IbQuery(self.ctx)
        self.fills = FillPairing(self.ctx, self.reporter)
        self.cancels = OwedCancels(self.ctx)
        self.reconciler = Reconciler(self.ctx, self.reporter, self.fills, self.cancels)
        self.order_events = OrderEvents(self.ctx, self.reporter, self.fills, self.cancels, self.query)
        self.order_events.modification_refused = self.operator_orders.refused_by_ib
        self.placement = Placement(
            self.ctx,
            self.reporter,
            self.outbox,
            self.kill_switch,
            self.reconciler,
            crash,
            lambda symbol: self._ask_ib(symbol=symbol),
            self.operator_orders.withdrawn,
        )
        self.flattens = Flattens(self.ctx)
        self.account_feed = AccountFeed(
            self.ctx,
            self.outbox,
            PublishPolicy(settings.execution.account_publish_min_seconds, settings.execution.account_heartbeat_seconds),
        )
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"state": self.state.value}
        meter("consumers.execution").create_observable_gauge(
            "ibstream_ib_connected", [self._observe_connected], description="1 when the IB session is connected"
        )

    # --- shared state, by the names operators and tests know --------------------------------------------------------

    @property
    def session(self) -> Session:
        return self.ctx.session

    @property
    def journal(self) -> Journal:
        return self.ctx.journal

    @property
    def client_id(self) -> int:
        return self.ctx.client_id

    @property
    def alerts(self) -> AlertBook:
        return self.reporter.alerts

    @property
    def kill_switches(self) -> dict[str, ControlCommand]:
        return self.kill_switch.switches

    @property
    def routed_consumers_replaced(self) -> int:
        return self.intake.routed_consumers_replaced

    @property
    def _outbox(self) -> list[tuple[TopicSpec[Any], Record, SpanContext | None]]:
        return self.outbox.records

    @property
    def book(self) -> Book:
        return self.ctx.book

    @book.setter
    def book(self, book: Book) -> None:
        self.ctx.book = book

    @property
    def account(self) -> str | None:
        return self.ctx.account

    @account.setter
    def account(self, account: str | None) -> None:
        self.ctx.account = account

    @property
    def generation(self) -> int:
        return self.ctx.generation

    @generation.setter
    def generation(self, generation: int) -> None:
        self.ctx.generation = generation

    # --- the loop -------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; raises FencedError if another executor took over the account."""
        count = self.intake.start_control(self._on_replayed_control)
        log.info(
            "control commands read", extra={"commands": count, "kill_switch": ",".join(sorted(self.kill_switches))}
        )
        try:
            while not stop.is_set():
                self.step()
            self._flush()  # a placement's events deferred by the last turn (``step``) leave before we stop
        finally:
            self.state = State.STOPPED
            self._update_snapshot()
            self.connection.stop()
            self.intake.close()

    def step(self, wait: float = STEP_WAIT_SECONDS) -> None:
        """One iteration: connect if due, handle IB events, control commands, at most one routed order, publish."""
        if self.connection.due:
            self._connect()
        if self._reconcile_due and self.state in (State.IB_LOST, State.READY):
            self._reconcile_due = False
            self._reconcile_and_resume()
        self._drain(wait)
        self.intake.poll_control(self._on_control)
        self.intake.poll_decisions(self.decisions.on_message)
        message = self.intake.poll_routed(self.state is State.READY)
        placed = False
        if message is not None:
            placed = self._handle_routed(message)
        self.flattens.sweep()
        self.fills.expire()
        self.account_feed.tick()
        # A placement's events wait one turn of the loop: IB's answer to the order (it comes within milliseconds) is
        # handled by the next drain instead of after the transaction commit the loop would block in now, and it
        # leaves in the same transaction. Only one turn: with an order every turn the events still commit every
        # other turn. The order stays in doubt in the journal until they commit (``placement``), so this changes
        # nothing after a crash.
        if placed and not self._flush_deferred:
            self._flush_deferred = True
        else:
            self._flush_deferred = False
            self._flush()
        if self.wall() - self._snapshot_at >= SNAPSHOT_SECONDS:
            self._update_snapshot()

    def _flush(self) -> None:
        self.outbox.flush(self.intake.routed)

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
            case events.NextValidId(order_id=order_id):
                self.ctx.next_valid_id = max(self.ctx.next_valid_id, order_id)
            case events.Disconnected(generation=generation):
                if generation == self.generation:
                    self._on_disconnected(event)
            case events.IbError() if self._on_connectivity(event):
                pass
            case (
                events.AccountValue()
                | events.AccountDownloadEnd()
                | events.AccountPnL()
                | events.PortfolioUpdate()
                | events.PositionPnL()
            ):
                self.account_feed.handle(event)
            case _:
                self.order_events.handle(event)

    def _handle_routed(self, message: KafkaMessage) -> bool:
        """One routed record; True when it went through placement (its events wait in the outbox)."""
        position = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        try:
            order = decode_message(self.intake.codec, routed_orders.TOPIC, message)
        except DecodeError as error:
            self.outbox.dead_letter(message, error)
            record_error("decode", COMPONENT)
            self.outbox.advance(position, offset)
            return False
        with log_context(order_id=order.order_id, symbol=order.symbol):
            verdict = self.decisions.screen(order, message)
        if verdict is Verdict.WAIT:
            self.intake.held.appendleft(message)  # its decision may still come: held, nothing consumed past it
            return False
        if verdict is Verdict.REFUSE:
            self.outbox.advance(position, offset)  # dead-lettered (decisions.DecisionGate.refuse), never placed
            self._flush()
            return False
        with (
            log_context(order_id=order.order_id, symbol=order.symbol),
            consume_span(
                "execution.place",
                message.headers(),
                messaging=consumed_attributes(message, self.intake.group),
                order_id=order.order_id,
                symbol=order.symbol,
            ),
        ):
            self.reporter.remember_trace(order.order_id, current_span_context())
            if self.placement.place(order):
                self.decisions.done(order.order_id)
                self.outbox.advance(position, offset)
                return True
            # IB could not be asked: not consumed, retried when IB answers again (held, never skipped).
            self.intake.held.appendleft(message)
            return False

    def _on_replayed_control(self, message: KafkaMessage) -> None:
        self._on_control(message, replayed=True)

    def _on_control(self, message: KafkaMessage, replayed: bool = False) -> None:
        if message.value() is None:
            return  # a compaction tombstone
        try:
            command = decode_message(self.intake.codec, control.TOPIC, message)
        except DecodeError as error:
            record_error("decode", COMPONENT)
            self.kill_switch.on_undecodable(message.key(), str(error))
            return
        self.kill_switch.on_command(command, trading=self.state is State.READY)
        self.operator_orders.on_command(command, trading=self.state is State.READY, replayed=replayed)

    # --- IB connection ------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        self.state = State.CONNECTING
        connected = self.connection.connect()
        if connected is None:
            self.state = State.DISCONNECTED
            return
        self.generation = connected.generation
        self.ctx.next_valid_id = max(self.ctx.next_valid_id, connected.next_valid_id)
        account = self.settings.execution.account or connected.accounts[0]
        if self.account is None:
            self.account = account
            self.intake.start(account, self.decisions.on_message)
            self.decisions.forget_handled()
            self._check_journal()
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
        self.reporter.resolve("ib_disconnected", (account,), "IB connection restored")
        self.account_feed.subscribe(account)
        log.info(
            "IB connected",
            extra={
                "account": account,
                "next_valid_id": connected.next_valid_id,
                "generation": connected.generation,
                "journal_hwm": self.journal.hwm,
            },
        )
        self._reconcile_and_resume()

    def _check_journal(self) -> None:
        """After the book's rebuild: an empty journal while the events show orders placed at IB was lost. Ids go on
        above the book's, and the reconciliation that follows (before any placing) marks what IB holds that the book
        lacks as in doubt (``placement``)."""
        book = self.book
        if not journal_lost(self.journal.empty, book.max_ib_order_id):
            return
        self.journal.raise_hwm(book.max_ib_order_id)
        log.error(
            "execution journal lost: empty, yet the events record orders placed at IB; reconciling before placing",
            extra={"journal": str(self.journal.path), "max_ib_order_id": book.max_ib_order_id},
        )
        record_error("journal_lost", COMPONENT)
        self.reporter.alert(
            "execution_journal_lost",
            Severity.CRITICAL,
            f"execution's journal {self.journal.path} is empty while the order events record IB orders: its "
            "storage was lost or not mounted; orders IB holds are checked before any is placed",
            {"journal": str(self.journal.path), "max_ib_order_id": str(book.max_ib_order_id)},
            key=(self.account or "",),
        )

    def _refuse(self, reason: str, accounts: tuple[str, ...]) -> None:
        """Paper interlock: hold every routed order (nothing consumed past) until an operator intervenes."""
        self.state = State.REFUSED
        log.error("refusing to place orders: %s", reason, extra={"accounts": ",".join(accounts)})
        record_error("refused", COMPONENT)
        self.reporter.alert(
            "paper_interlock",
            Severity.CRITICAL,
            f"execution refuses to place orders: {reason}",
            {"accounts": ",".join(accounts), "live_account_setting": self.settings.ib.live_account or ""},
            key=(self.account or "",),
        )
        self.intake.pause_routed()
        self._flush()

    def _on_disconnected(self, event: events.Disconnected) -> None:
        if self.state in (State.STOPPED, State.REFUSED):
            return
        delay = self.connection.on_disconnected(event)
        if delay is None:
            return
        self.account_feed.disconnected()
        self.state = State.DISCONNECTED
        ib = self.settings.ib
        # IB Gateway restarts itself daily at its configured time: a drop then is expected, recorded, never paged.
        expected = in_daily_restart_window(
            utc_now(), ib.daily_restart_time, ib.daily_restart_timezone, ib.daily_restart_window_seconds
        )
        log.log(
            logging.INFO if expected else logging.WARNING,
            "IB disconnected",  # the producer's event too: one jq filter finds every deployable's drop
            extra={"reason": event.reason, "retry_in_seconds": round(delay, 2), "daily_restart": expected},
        )
        self.reporter.alert(
            "ib_disconnected",
            Severity.INFO if expected else Severity.WARNING,
            f"execution lost its IB connection{' in the daily gateway restart' if expected else ''}: {event.reason}",
            {},
            key=(self.account or "",),
        )

    def _on_connectivity(self, event: events.IbError) -> bool:
        """1100 pauses placing; 1101/1102 reconcile on the next step. False: not a connectivity change for us."""
        meaning = self.connection.on_error(event)
        if meaning is Connectivity.LOST and self.state is State.READY:
            self.state = State.IB_LOST
            self.account_feed.disconnected()  # IB's values are stale until the restore's fresh round
            log.warning("IB lost its servers; placing paused", extra={"code": event.code, "ib_message": event.message})
            return True
        if meaning in (Connectivity.RESTORED_DATA_LOST, Connectivity.RESTORED_DATA_MAINTAINED) and self.state in (
            State.IB_LOST,
            State.READY,
        ):
            log.info("IB connectivity restored; reconciling", extra={"code": event.code})
            self._reconcile_due = True
            if self.account is not None:
                self.account_feed.subscribe(self.account)
            return True
        return False

    # --- reconciliation ---------------------------------------------------------------------------------------------

    def _reconcile_and_resume(self) -> None:
        self.state = State.RECONCILING
        if not self._reconcile():
            if self.state is State.RECONCILING:
                # IB did not answer in time: stay out of READY and try again on the next step.
                self.state = State.IB_LOST
                self._reconcile_due = True
            return
        self.state = State.READY
        self.kill_switch.cancel_all()
        self.operator_orders.resume()

    def _reconcile(self) -> bool:
        """Start and every reconnect: compare IB's open orders, executions and positions with the book."""
        snapshot = self._ask_ib(with_positions=True)
        if snapshot is None:
            return False
        self.reconciler.apply(snapshot)
        self.placement.note_ib_orders(snapshot)
        return True

    def _ask_ib(self, symbol: str = "", with_positions: bool = False) -> IbSnapshot | None:
        connected = lambda: self.state not in (State.DISCONNECTED, State.CONNECTING)  # noqa: E731
        return self.query.ask(self._drain, connected, symbol, with_positions)

    # --- health -------------------------------------------------------------------------------------------------

    def _observe_connected(self, _options: CallbackOptions) -> list[Observation]:
        connected = self.state in (State.RECONCILING, State.READY, State.REFUSED)
        return [Observation(1 if connected else 0, {"component": COMPONENT})]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /ready: placing orders (connected, reconciled, interlock passed)."""
        with self._snapshot_lock:
            snapshot = dict(self._snapshot)
        return snapshot.get("state") == State.READY.value, snapshot

    def _update_snapshot(self) -> None:
        self._snapshot_at = self.wall()
        with self._snapshot_lock:
            self._snapshot = {
                "state": self.state.value,
                "account": self.account,
                "client_id": self.client_id,
                "kill_switch": sorted(self.kill_switches),
                "trading_states": {
                    scope: state.state.value for scope, state in self.kill_switch.states.restricted().items()
                },
                "open_orders": sum(1 for o in self.book.orders.values() if o.open_legs()),
                "in_doubt": len(self.journal.in_doubt),
                "held_routed_orders": len(self.intake.held),
                "awaiting_risk_decision": len(self.decisions.waiting_since),
            }
