"""Operator order commands from ``control.v1`` (issue #20 item 5): ``cancel_order`` (target: our order id) and
``cancel_all`` (target: ``account`` or a symbol). The API answered 404/409 from the warehouse; this module decides
again from the book, which may know more (an order that filled meanwhile), and refuses safely.

What "working" means: an order whose parent leg (the entry) is open at IB (pending_submit, submitted, acknowledged,
partially_filled). Cancelling it cancels the entry; IB (and ibsim) cancel its untriggered children with it.

* ``cancel_order`` of a working order: cancelOrder on the parent; IB's Cancelled arrives as an order event.
  Its entry partly filled with children: the remainder's cancel takes the children, so the filled part loses its
  stop: the cancel still goes (the operator asked) and the critical alert ``cancel_unprotected`` names the order.
* ``cancel_order`` of an order that is not working (filled, cancelled, rejected meanwhile): nothing is sent; an
  ``orders.events.v1`` record with the unchanged status and the reason in ``broker_message`` puts the no-op in the
  order trail. The protective legs of a filled entry are never cancelled here: flatten closes the position.
* ``cancel_order`` of an order the book does not hold (routed but not yet placed, or never): remembered; its routed
  order is refused unplaced when it arrives (``Placement`` asks ``withdrawn``).
* ``cancel_all``: every working entry in scope, plus children whose entry never filled (as the kill switch:
  ``trading_state.cancel_scope``); the protective legs of filled entries are kept.

Cancels go whatever the trading state (halted: "no new intents; cancels still go").

Replay: control.v1 is compacted and read from its beginning at startup, before the book is rebuilt, and commands read
while not READY cannot be sent. Such commands wait and are applied after the next reconciliation: a ``cancel_order``
always (the order id is unique, a cancel is never undone; a no-op is not recorded again), a ``cancel_all`` only if it
was issued within ``execution.operator_command_max_age_seconds`` — an old one must not cancel orders placed since.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from consumers.execution.context import Context
from consumers.execution.mapping import NAMESPACE
from consumers.execution.reporting import Reporter
from consumers.execution.state import Book, OrderState
from consumers.execution.trading_state import stray_child
from ibstream.contracts import ControlCommand, OrderEvent, order_events, utc_now
from ibstream.contracts.enums import ControlCommandKind, ExecutionSource, OrderLeg, Severity
from ibstream.trading_states import ACCOUNT_TARGETS

log = logging.getLogger(__name__)

#: The control commands this module applies.
KINDS = frozenset({ControlCommandKind.CANCEL_ORDER, ControlCommandKind.CANCEL_ALL})


@dataclass(frozen=True)
class CancelRequest:
    """One IB order to cancel."""

    order_id: str
    leg: OrderLeg
    ib_order_id: int


@dataclass(frozen=True)
class CancelPlan:
    """What a cancel command sends, or why it sends nothing (``noop``); ``unknown``: the book lacks the order."""

    requests: tuple[CancelRequest, ...] = ()
    noop: str | None = None
    unknown: bool = False
    unprotected: bool = False


def is_working(order: OrderState) -> bool:
    """An order is working while its entry (parent leg) is open at IB."""
    parent = order.legs.get(OrderLeg.PARENT)
    return parent is not None and parent.is_open


def plan_cancel_order(order: OrderState | None) -> CancelPlan:
    """What ``cancel_order`` does to one order of the book (None: the book does not hold it)."""
    if order is None:
        return CancelPlan(unknown=True)
    parent = order.legs.get(OrderLeg.PARENT)
    if parent is None or not parent.is_open:
        status = parent.status.value if parent is not None and parent.status is not None else "not placed"
        why = f"order is {status}, not working"
        if any(leg.is_open for leg in order.legs.values()):
            why += "; its protective legs stay (flatten closes the position)"
        return CancelPlan(noop=why)
    if parent.ib_order_id is None:
        return CancelPlan(noop="order has no IB id yet")
    unprotected = parent.filled > 0 and len(order.legs) > 1
    return CancelPlan((CancelRequest(order.order_id, OrderLeg.PARENT, parent.ib_order_id),), unprotected=unprotected)


def in_scope(order: OrderState, scope: str, account: str | None) -> bool:
    """Whether ``cancel_all``'s scope (the account or a symbol) covers the order."""
    return scope.lower() in ACCOUNT_TARGETS or scope == account or order.symbol == scope


def plan_cancel_all(book: Book, scope: str, account: str | None) -> list[CancelRequest]:
    """The IB orders ``cancel_all`` cancels: working entries in scope and children whose entry never filled."""
    requests: list[CancelRequest] = []
    for order_id, order in book.orders.items():
        if not in_scope(order, scope, account):
            continue
        parent = order.legs.get(OrderLeg.PARENT)
        for leg in order.open_legs():
            if leg.ib_order_id is None:
                continue
            if leg.leg is OrderLeg.PARENT or stray_child(parent):
                requests.append(CancelRequest(order_id, leg.leg, leg.ib_order_id))
    return requests


def fresh(command: ControlCommand, now: dt.datetime, max_age_seconds: float) -> bool:
    """Whether a replayed command is recent enough to apply."""
    return (now - command.issued_time).total_seconds() <= max_age_seconds


def noop_event(order: OrderState, command: ControlCommand, why: str, now: dt.datetime) -> OrderEvent | None:
    """The order-trail record of a cancel that changed nothing: the parent's unchanged status, and why."""
    parent = order.legs.get(OrderLeg.PARENT)
    if parent is None or parent.status is None:
        return None
    return OrderEvent(
        event_id=str(uuid.uuid5(NAMESPACE, f"{order.order_id}|{command.command.value}|{command.command_id}")),
        order_id=order.order_id,
        leg=OrderLeg.PARENT,
        symbol=order.symbol,
        ib_order_id=parent.ib_order_id,
        perm_id=parent.perm_id,
        status=parent.status,
        previous_status=parent.status,
        filled_quantity=parent.filled,
        remaining_quantity=max(parent.quantity - parent.filled, 0.0),
        avg_fill_price=parent.avg_fill_price,
        broker_status=parent.broker_status,
        broker_message=f"{command.command.value} by {command.actor} not applied: {why}",
        source=ExecutionSource.LIVE,
        event_time=now,
    )


class OperatorOrders:
    """Applies cancel commands to the book's orders (module docstring)."""

    def __init__(self, ctx: Context, reporter: Reporter) -> None:
        self.ctx = ctx
        self.reporter = reporter
        #: Commands read while they could not be sent (replay, not READY): applied after the next reconciliation.
        self.pending: list[tuple[ControlCommand, bool]] = []
        #: order id → the cancel of an order not yet placed: its routed order is refused.
        self.withdrawn_orders: dict[str, ControlCommand] = {}

    def on_command(self, command: ControlCommand, *, trading: bool, replayed: bool = False) -> None:
        """Apply now when ``trading``; otherwise after the next reconciliation (``resume``)."""
        if command.command not in KINDS:
            return
        log.warning(
            "operator order command",
            extra={
                "command": command.command.value,
                "target": command.target,
                "actor": command.actor,
                "command_id": command.command_id,
                "replayed": replayed,
            },
        )
        if not trading:
            self.pending.append((command, replayed))
            return
        self._apply(command, replayed)

    def resume(self) -> None:
        """After a reconciliation: apply what waited."""
        pending, self.pending = self.pending, []
        max_age = self.ctx.settings.execution.operator_command_max_age_seconds
        for command, replayed in pending:
            if command.command is ControlCommandKind.CANCEL_ALL and not fresh(command, utc_now(), max_age):
                log.info("old cancel_all not applied", extra={"command_id": command.command_id})
                continue
            self._apply(command, replayed)

    def withdrawn(self, order_id: str) -> str | None:
        """Why a routed order may not be placed: the operator cancelled it before it was placed."""
        command = self.withdrawn_orders.get(order_id)
        if command is None:
            return None
        return f"cancelled by {command.actor} before placement: {command.reason}"

    def _apply(self, command: ControlCommand, replayed: bool) -> None:
        if command.command is ControlCommandKind.CANCEL_ALL:
            requests = plan_cancel_all(self.ctx.book, command.target, self.ctx.account)
            self._send(requests)
            log.warning("cancel_all: cancel requested", extra={"target": command.target, "requests": len(requests)})
            return
        order = self.ctx.book.orders.get(command.target)
        plan = plan_cancel_order(order)
        if plan.unknown:
            self.withdrawn_orders[command.target] = command
            log.warning("cancel of an order not placed: it will not be", extra={"order_id": command.target})
            return
        assert order is not None
        if plan.noop is not None:
            log.warning("cancel not applied: %s", plan.noop, extra={"order_id": order.order_id})
            event = None if replayed else noop_event(order, command, plan.noop, utc_now())
            if event is not None:
                self.reporter.outbox.enqueue(order_events.TOPIC, event)
            return
        if plan.unprotected:
            self._unprotected(order, command)
        self._send(list(plan.requests))

    def _send(self, requests: list[CancelRequest]) -> None:
        for request in requests:
            sent = self.ctx.session.cancel_order(request.ib_order_id)
            log.info(
                "cancelOrder",
                extra={
                    "order_id": request.order_id,
                    "leg": request.leg.value,
                    "ib_order_id": request.ib_order_id,
                    "sent": sent,
                },
            )

    def _unprotected(self, order: OrderState, command: ControlCommand) -> None:
        filled = order.legs[OrderLeg.PARENT].filled
        self.reporter.alert(
            "cancel_unprotected",
            Severity.CRITICAL,
            f"cancel of {order.order_id} ({order.symbol}) by {command.actor}: its entry was partly filled "
            f"({filled:g}); cancelling the remainder cancels its stop and target too: flatten or protect the position",
            {"actor": command.actor, "command_id": command.command_id, "filled": f"{filled:g}"},
            order_id=order.order_id,
            symbol=order.symbol,
            key=(order.order_id,),
        )
