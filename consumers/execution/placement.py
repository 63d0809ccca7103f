"""Placement: one risk-approved order to IB, without ever doubling it and without a round trip to IB first.

The journal is the write-ahead record: an order is placed only after its IB ids are journaled (fsync), and it stays
in doubt there until its events are committed. So the orders that can already be at IB without our book knowing are
exactly the journaled-but-unconfirmed ones, plus (after a journal loss, or another executor's work) those IB listed
under an orderRef our book lacks at the last reconciliation (start and every reconnect). Only such an order is asked
about at IB; a fresh order goes straight to placeOrder.

Crash-safety protocol for one routed order (offset N of the single-partition ``orders.routed.v1``):

1. skip it if our book (rebuilt from ``orders.events.v1`` at startup) already holds the order and it is not in doubt;
2. only if it is in doubt (journaled by a previous attempt, or its orderRef seen at IB by the last reconciliation):
   ask IB, reqAllOpenOrders + reqExecutions; any order or execution carrying ``orderRef == order_id`` (from any
   client) means the order exists: adopt it, record its state, do not place;
3. otherwise take the IB ids from the journal if the intent is in doubt (a previous attempt crashed), else allocate
   fresh ids above the high-water mark, and write them to the journal with fsync            [crash: before_place]
4. placeOrder for every leg, parent first        [crash: mid_bracket, between a bracket's parent and children]
   (re-sending an id IB already holds modifies that order; it never adds one)             [crash: after_place]
5. one Kafka transaction: the pending_submit events                                       [crash: after_event]
   (one loop turn later, so IB's answer to the order rides along: ``service.Executor.step``)
6. after the commit: the consumer offset N+1 (asynchronously), and the intent leaves the journal.

A crash before 5 commits leaves offset N uncommitted and the events invisible (read_committed; the next
``init_transactions`` aborts the open transaction): the restarted executor meets N again, finds it in doubt in the
journal and decides by 2-4. A crash between 5 and the offset commit meets N again too, and 1 skips it: the committed
events put it in the book. The offset is not inside the transaction because librdkafka's
``send_offsets_to_transaction`` can hang for good when the group coordinator restarts (``Transactions.commit``).
Steps 5 and 6 are the outbox's (``outbox``).

Journal loss (an empty journal while the event topics show orders placed at IB: ``journal.journal_lost``): the
executor alerts, raises the high-water mark to the book's ids, and its start reconciliation (which precedes any
placing) marks every orderRef IB holds that the book does not know as in doubt (``note_ib_orders``), so step 2
catches an order the lost journal would have named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from consumers.execution.context import Context
from consumers.execution.crash import CrashPoints
from consumers.execution.flatten import is_flatten
from consumers.execution.journal import InDoubt
from consumers.execution.outbox import Outbox
from consumers.execution.reconciler import Reconciler
from consumers.execution.reconciliation import IbSnapshot
from consumers.execution.reporting import Reporter
from consumers.execution.state import LegState
from consumers.execution.trading_state import KillSwitch
from ibstream.contracts import RoutedOrder
from ibstream.contracts.enums import OrderLeg, OrderStatus, Severity
from ibstream.ib.brackets import InvalidOrderError, LegPlan, legs_of, plan_legs, validate
from ibstream.ib.session import stock_contract

log = logging.getLogger(__name__)

#: Asks IB about one symbol's orders and executions (``IbQuery.ask``); None: IB did not answer.
AskIb = Callable[[str], IbSnapshot | None]


class Placement:
    """Steps 1-4 of the protocol; the outbox does 5 and 6."""

    def __init__(
        self,
        ctx: Context,
        reporter: Reporter,
        outbox: Outbox,
        kill_switch: KillSwitch,
        reconciler: Reconciler,
        crash: CrashPoints,
        ask_ib: AskIb,
        withdrawn: Callable[[str], str | None] = lambda order_id: None,
    ) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.outbox = outbox
        self.kill_switch = kill_switch
        self.reconciler = reconciler
        self.crash = crash
        self.ask_ib = ask_ib
        #: Why an order may not be placed because the operator cancelled it first (``operator_orders``).
        self.withdrawn = withdrawn
        #: orderRefs IB listed at the last reconciliation that our book does not hold: in doubt like journaled ones.
        self.unknown_at_ib: set[str] = set()

    def note_ib_orders(self, snapshot: IbSnapshot) -> None:
        """After a reconciliation: remember the orderRefs IB holds (open or executed) that the book lacks."""
        self.unknown_at_ib = unknown_order_refs(snapshot, self.ctx.book.orders.keys())
        if self.unknown_at_ib:
            log.warning(
                "IB holds orders our book does not know; they are asked about before placing",
                extra={"count": len(self.unknown_at_ib), "order_refs": ",".join(sorted(self.unknown_at_ib)[:20])},
            )

    def place(self, order: RoutedOrder) -> bool:
        """The placement protocol (module docstring). False: undecided, retry later."""
        order_id = order.order_id
        entry = self.ctx.journal.in_doubt.get(order_id)
        if order_id in self.ctx.book.orders and entry is None:
            log.info("order already handled; duplicate delivery ignored")
            return True
        refusal = self._refusal(order)
        if refusal is not None:
            self.reject_locally(order, refusal)
            return True
        if self.crash.no_dedup:  # test hook (crash.NO_DEDUP_ENV): forget what IB and the journal know
            entry = None
        elif entry is not None or order_id in self.unknown_at_ib:
            return self._place_in_doubt(order, entry)
        self._remember(order)
        self._place_new(order, None)
        return True

    def _place_in_doubt(self, order: RoutedOrder, entry: InDoubt | None) -> bool:
        """Step 2: the order may be at IB already; ask IB about it before placing (or adopting) it."""
        order_id = order.order_id
        snapshot = self.ask_ib(order.symbol)
        if snapshot is None:
            return False
        self.unknown_at_ib.discard(order_id)
        at_ib = [o for o in snapshot.open_orders if o.order_ref == order_id]
        filled_at_ib = [e for e in snapshot.executions if e.order_ref == order_id]
        self._remember(order)
        if at_ib or filled_at_ib:
            log.warning(
                "order already at IB (a previous attempt placed it); adopting, not placing",
                extra={"open_at_ib": len(at_ib), "executions_at_ib": len(filled_at_ib), "in_doubt": entry is not None},
            )
            self._adopt(order, snapshot, entry)
            return True
        self._place_new(order, entry)
        return True

    def _remember(self, order: RoutedOrder) -> None:
        self.reporter.routed_times[order.order_id] = order.routed_time
        if is_flatten(order):
            self.ctx.flatten_orders[order.order_id] = order.symbol

    def _refusal(self, order: RoutedOrder) -> str | None:
        # A flatten goes through a halted scope: closing the position is what a halt wants (risk approved it only
        # because it closes the position and no further). An operator's cancel before placement withdraws any order.
        halted = None if is_flatten(order) else self.kill_switch.refusal(order.symbol)
        refusal = halted or self.withdrawn(order.order_id)
        if refusal is not None:
            return refusal
        try:
            validate(order)
        except InvalidOrderError as error:
            return f"invalid routed order: {error}"
        return None

    def _place_new(self, order: RoutedOrder, entry: InDoubt | None) -> None:
        """Steps 3 and 4: journal the ids (fsync), then placeOrder every leg."""
        order_id = order.order_id
        journal, book = self.ctx.journal, self.ctx.book
        if entry is not None:
            ids = list(entry.ib_order_ids)
        else:
            floor = max(self.ctx.next_valid_id - 1, book.max_ib_order_id)
            ids = journal.allocate(len(legs_of(order)), floor)
            journal.begin(InDoubt(order_id, order.symbol, tuple(ids)))
        self.crash.hit("before_place", order_id)
        assert self.ctx.account is not None
        plans = plan_legs(order, ids, self.ctx.account)
        book.register(order_id, order.symbol, order.side, [(p.leg, p.ib_order_id, p.ticket.quantity) for p in plans])
        self.send_legs(order, plans)
        self.crash.hit("after_place", order_id)
        self.outbox.settle_after_commit(order_id, placed=True)

    def send_legs(self, order: RoutedOrder, plans: list[LegPlan]) -> None:
        contract = stock_contract(order.symbol)
        for index, plan in enumerate(plans):
            if index == 1:
                self.crash.hit("mid_bracket", order.order_id)
            self.ctx.session.place_order(plan.ib_order_id, contract, plan.ticket)
            self.reporter.m_placed.add(1, {"leg": plan.leg.value})
            self.reporter.report(
                order.order_id,
                plan.leg,
                OrderStatus.PENDING_SUBMIT,
                broker_message=f"placeOrder {plan.ticket.order_type} {plan.ticket.action} {plan.ticket.quantity:g} "
                f"(IB id {plan.ib_order_id}, parent {plan.ticket.parent_id}, transmit {plan.ticket.transmit})",
            )

    def _adopt(self, order: RoutedOrder, snapshot: IbSnapshot, entry: InDoubt | None) -> None:
        """The order exists at IB: take over its ids, record what IB says, re-send only journaled legs IB lacks."""
        missing = self.reconciler.adopt(order, snapshot, entry)
        if missing and entry is not None:
            # Part of an intent reached IB: re-send the missing legs with their journaled ids (an id IB holds can only
            # be modified, never added), so a bracket is completed and transmitted.
            plans = [p for p in plan_legs(order, list(entry.ib_order_ids), self.ctx.account or "") if p.leg in missing]
            log.warning("re-sending legs IB does not list", extra={"legs": ",".join(leg.value for leg in missing)})
            self.send_legs(order, plans)
        elif missing:
            self.reporter.alert(
                "order_partly_at_ib",
                Severity.WARNING,
                f"legs {','.join(leg.value for leg in missing)} are not at IB and their ids were not journaled",
                {},
                order_id=order.order_id,
                symbol=order.symbol,
                key=(order.order_id,),
            )
        self.outbox.settle_after_commit(order.order_id, placed=False)

    def reject_locally(self, order: RoutedOrder, reason: str) -> None:
        log.warning("order not placed: %s", reason)
        self.ctx.book.register(order.order_id, order.symbol, order.side, [])
        state = self.ctx.book.orders[order.order_id]
        if OrderLeg.PARENT not in state.legs:
            state.legs[OrderLeg.PARENT] = LegState(OrderLeg.PARENT, order.quantity)
        self.reporter.report(order.order_id, OrderLeg.PARENT, OrderStatus.REJECTED, broker_message=reason)


def unknown_order_refs(snapshot: IbSnapshot, known: Iterable[str]) -> set[str]:
    """The orderRefs of IB's open orders and executions that are not among ``known`` order ids (pure)."""
    refs = {o.order_ref for o in snapshot.open_orders} | {e.order_ref for e in snapshot.executions}
    return {ref for ref in refs if ref} - set(known)
