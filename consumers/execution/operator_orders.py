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

``modify_order`` (target: our order id; the protocol: ``ibstream.order_modifications``) is applied only when risk's
approving decision ``modify:<command id>`` arrives with the digest of the command's terms (the command and its
decision come on different topics, in either order: whichever comes first waits for the other). Then every leg is
re-sent with its IB id and the new terms (IB modifies an order by placeOrder with the same id): the entry's limit or
stop price and quantity, the stop-loss leg's stop, the take-profit's limit; the children follow the parent's
quantity. It is refused — nothing sent, the reason recorded in the order's events — when risk rejected it, the terms
differ from those approved, the order is no longer working, the new terms change the symbol, side, type or bracket
shape, or the quantity is not above what already filled. An applied modification is recorded the same way (IB's
acknowledgement of a modification does not change the order's status, so it would leave no event of its own), and so
is IB refusing it (``refused_by_ib``: 103/104/105/110, or an error that would otherwise end the order, within 30 s of
sending): the order's status stays as it was, since the order still works at IB as before.
A modification read back at startup is not applied again (its approval may be long past): the operator re-issues it.

Replay: control.v1 is compacted and read from its beginning at startup, before the book is rebuilt, and commands read
while not READY cannot be sent. Such commands wait and are applied after the next reconciliation: a ``cancel_order``
always (the order id is unique, a cancel is never undone; a no-op is not recorded again), a ``cancel_all`` only if it
was issued within ``execution.operator_command_max_age_seconds`` — an old one must not cancel orders placed since.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from consumers.execution.context import Context
from consumers.execution.mapping import NAMESPACE
from consumers.execution.reporting import Reporter
from consumers.execution.state import Book, OrderState, status_of_error
from consumers.execution.trading_state import stray_child
from ibstream.contracts import ControlCommand, OrderEvent, RiskDecision, RoutedOrder, order_events, utc_now
from ibstream.contracts.enums import ControlCommandKind, ExecutionSource, OrderLeg, Severity
from ibstream.contracts.order_terms import terms_digest
from ibstream.ib import events
from ibstream.ib.brackets import InvalidOrderError, LegPlan, legs_of, plan_legs
from ibstream.ib.session import stock_contract
from ibstream.order_modifications import CHANGES, command_of, terms_from_parameters
from ibstream.trading_states import ACCOUNT_TARGETS

log = logging.getLogger(__name__)

#: The control commands this module applies.
KINDS = frozenset({ControlCommandKind.CANCEL_ORDER, ControlCommandKind.CANCEL_ALL, ControlCommandKind.MODIFY_ORDER})
#: IB's refusals of a modification (103 id spent, 104 filled, 105 not the same order, 110 price off tick).
MODIFY_REFUSAL_CODES = frozenset({103, 104, 105, 110})
#: How long after sending a modification an error about its order is taken as IB refusing it.
REFUSAL_WINDOW_SECONDS = 30.0
#: Modification decisions kept while their command has not been read yet (bounded: the oldest go first).
MAX_EARLY_DECISIONS = 1000


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


@dataclass(frozen=True)
class ModifyPlan:
    """The legs a modification re-sends, or why it sends nothing (``refusal``)."""

    legs: tuple[LegPlan, ...] = ()
    refusal: str | None = None


def plan_modify(order: OrderState, command: ControlCommand, decision: RiskDecision, account: str) -> ModifyPlan:
    """What an approved-or-not ``modify_order`` does to an order of the book (module docstring)."""
    if not decision.approved:
        failed = ", ".join(check.name for check in decision.checks if not check.passed)
        return ModifyPlan(refusal=f"risk rejected the modification ({failed or 'no check named'})")
    try:
        terms = terms_from_parameters(command.parameters)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        return ModifyPlan(refusal=f"the command's terms are unreadable: {error}")
    if decision.terms_digest != terms_digest(terms):
        return ModifyPlan(refusal="the command's terms differ from those risk approved")
    parent = order.legs.get(OrderLeg.PARENT)
    if parent is None or not parent.is_open:
        status = parent.status.value if parent is not None and parent.status is not None else "not placed"
        return ModifyPlan(refusal=f"order is {status}, not working")
    new = RoutedOrder(order_id=order.order_id, **terms.terms(), decision_id=decision.decision_id, routed_time=utc_now())
    if new.symbol != order.symbol or (order.side is not None and new.side is not order.side):
        return ModifyPlan(refusal="a modification cannot change the symbol or side")
    if set(legs_of(new)) != set(order.legs):
        return ModifyPlan(refusal="a modification cannot add or remove a stop loss or take profit")
    if new.quantity <= parent.filled:
        return ModifyPlan(refusal=f"the new quantity {new.quantity:g} is not above the {parent.filled:g} filled")
    ids = [order.legs[leg].ib_order_id for leg in legs_of(new)]
    if any(ib_id is None for ib_id in ids):
        return ModifyPlan(refusal="a leg has no IB id yet")
    try:
        return ModifyPlan(tuple(plan_legs(new, [ib_id for ib_id in ids if ib_id is not None], account)))
    except InvalidOrderError as error:
        return ModifyPlan(refusal=str(error))


def fresh(command: ControlCommand, now: dt.datetime, max_age_seconds: float) -> bool:
    """Whether a replayed command is recent enough to apply."""
    return (now - command.issued_time).total_seconds() <= max_age_seconds


def noop_event(order: OrderState, command: ControlCommand, why: str, now: dt.datetime) -> OrderEvent | None:
    """The order-trail record of a command that changed nothing: the parent's unchanged status, and why."""
    return trail_event(order, command, f"not applied: {why}", now)


def trail_event(order: OrderState, command: ControlCommand, outcome: str, now: dt.datetime) -> OrderEvent | None:
    """The order-trail record of what an operator command did (the parent's status, unchanged), once per command."""
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
        broker_message=f"{command.command.value} by {command.actor} {outcome}",
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
        #: command id → a modify_order waiting for its decision, and decisions waiting for their command.
        self.modifications: dict[str, ControlCommand] = {}
        self.early_decisions: dict[str, RiskDecision] = {}
        #: False until the first reconciliation: decisions read back while rebuilding are not acted on.
        self.live = False
        #: Whether orders may be sent now (the executor is READY); a modification decided meanwhile waits for resume.
        self.ready: Callable[[], bool] = lambda: True
        self.waiting_modifications: list[tuple[ControlCommand, RiskDecision]] = []
        #: IB order id → the modification just sent for it and when (our clock): IB's refusal of it is recognised.
        self.modifying: dict[int, tuple[ControlCommand, float]] = {}

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
        if command.command is ControlCommandKind.MODIFY_ORDER:
            self._on_modify(command, replayed)
            return
        if not trading:
            self.pending.append((command, replayed))
            return
        self._apply(command, replayed)

    def _on_modify(self, command: ControlCommand, replayed: bool) -> None:
        if replayed:
            log.info("modification read back at startup not applied", extra={"command_id": command.command_id})
            return
        decision = self.early_decisions.pop(command.command_id, None)
        if decision is None:
            self.modifications[command.command_id] = command
            return
        self._modify(command, decision)

    def on_decision(self, decision: RiskDecision) -> None:
        """Risk's verdict on a modification (``DecisionGate`` hands these over); applied with its command."""
        command_id = command_of(decision)
        if command_id is None or not self.live:
            return
        command = self.modifications.pop(command_id, None)
        if command is None:
            self.early_decisions[command_id] = decision
            while len(self.early_decisions) > MAX_EARLY_DECISIONS:
                del self.early_decisions[next(iter(self.early_decisions))]
            return
        self._modify(command, decision)

    def _modify(self, command: ControlCommand, decision: RiskDecision) -> None:
        if not self.ready():
            self.waiting_modifications.append((command, decision))
            return
        order = self.ctx.book.orders.get(command.target)
        if order is None:
            log.warning("modification of an order the book does not hold ignored", extra={"order_id": command.target})
            return
        plan = plan_modify(order, command, decision, self.ctx.account or "")
        if plan.refusal is not None:
            log.warning("modification not applied: %s", plan.refusal, extra={"order_id": order.order_id})
            self._record(order, command, f"not applied: {plan.refusal}")
            return
        contract = stock_contract(order.symbol)
        for leg in plan.legs:
            self.modifying[leg.ib_order_id] = (command, self.ctx.wall())
            self.ctx.session.place_order(leg.ib_order_id, contract, leg.ticket)
            order.legs[leg.leg].quantity = leg.ticket.quantity
        changes = command.parameters.get(CHANGES, "")
        log.warning("modification sent", extra={"order_id": order.order_id, "changes": changes, "legs": len(plan.legs)})
        self._record(order, command, f"applied ({changes or 'terms'}; decision {decision.decision_id})")

    def refused_by_ib(self, event: events.IbError) -> bool:
        """Whether ``event`` is IB refusing a modification sent in the last ``REFUSAL_WINDOW_SECONDS`` (a refusal
        code, or one that would otherwise end the order): recorded on the order, whose status stays as it was."""
        sent = self.modifying.get(event.req_id)
        if sent is None or self.ctx.wall() - sent[1] > REFUSAL_WINDOW_SECONDS:
            return False
        if event.code not in MODIFY_REFUSAL_CODES and status_of_error(event.kind) is None:
            return False
        found = self.ctx.book.find(event.req_id)
        del self.modifying[event.req_id]
        if found is None:
            return False
        order, leg = found
        log.warning(
            "IB refused a modification",
            extra={"order_id": order.order_id, "leg": leg.leg.value, "code": event.code, "ib_message": event.message},
        )
        self._record(order, sent[0], f"refused by IB for the {leg.leg.value} leg ({event.code}: {event.message})")
        return True

    def _record(self, order: OrderState, command: ControlCommand, outcome: str) -> None:
        event = trail_event(order, command, outcome, utc_now())
        if event is not None:
            self.reporter.outbox.enqueue(order_events.TOPIC, event)

    def resume(self) -> None:
        """After a reconciliation: apply what waited."""
        self.live = True
        waiting, self.waiting_modifications = self.waiting_modifications, []
        for command, decision in waiting:
            self._modify(command, decision)
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
            if not replayed:
                self._record(order, command, f"not applied: {plan.noop}")
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
