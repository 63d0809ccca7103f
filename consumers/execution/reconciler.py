"""Reconciliation I/O: asking IB for its view, and applying what ``reconciliation`` decides.

``IbQuery.ask`` sends reqAllOpenOrders + reqExecutions (+ reqPositions) and collects IB's answers until every end
marker arrived; None if IB did not answer in time or the connection dropped (nothing is placed then).
``Reconciler.apply`` runs at start and after every reconnect; ``Reconciler.adopt`` takes over an order a previous
attempt placed. Legs recorded cancelled because IB no longer lists them are cancelled at IB as well
(``OwedCancels``): once per IB connection until IB answers, never after an answer.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from consumers.execution.context import Context
from consumers.execution.fills import FillPairing
from consumers.execution.journal import InDoubt
from consumers.execution.reconciliation import (
    CancelRequest,
    IbSnapshot,
    StatusReport,
    adopt_closed_leg,
    adopt_open_leg,
    reconcile,
)
from consumers.execution.reporting import Reporter
from ibstream.contracts import RoutedOrder
from ibstream.contracts.enums import ExecutionSource, OrderLeg, Severity
from ibstream.ib import events
from ibstream.ib.brackets import leg_of_ib_order, legs_of
from ibstream.telemetry import log_context

log = logging.getLogger(__name__)


@dataclass
class Collector:
    """Gathers IB's answers to one snapshot request (open orders, executions, positions)."""

    snapshot: IbSnapshot
    exec_req_id: int
    open_done: bool = False
    exec_done: bool = False
    positions_done: bool = True

    @property
    def complete(self) -> bool:
        return self.open_done and self.exec_done and self.positions_done

    def take(self, event: events.IbEvent) -> None:
        """Keep what belongs to the answer (executions only of our request: live fills are not part of it)."""
        snapshot = self.snapshot
        match event:
            case events.OpenOrder():
                snapshot.open_orders.append(event)
            case events.OpenOrderEnd():
                self.open_done = True
            case events.OrderStatusUpdate():
                snapshot.statuses[(event.client_id, event.order_id)] = event
            case events.ExecutionDetail(req_id=req_id) if req_id == self.exec_req_id:
                snapshot.executions.append(event)
            case events.ExecutionEnd(req_id=req_id) if req_id == self.exec_req_id:
                self.exec_done = True
            case events.CommissionReport():
                snapshot.commissions[event.exec_id] = event
            case events.PositionUpdate() if snapshot.positions is not None:
                snapshot.positions.append(event)
            case events.PositionEnd():
                self.positions_done = True
            case _:
                pass


class IbQuery:
    """One question to IB at a time; the IB event mapping feeds the answers into ``collector``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.collector: Collector | None = None
        self._req_ids = itertools.count(9000)

    def ask(
        self,
        drain: Callable[[float], None],
        connected: Callable[[], bool],
        symbol: str = "",
        with_positions: bool = False,
    ) -> IbSnapshot | None:
        """Ask and wait, draining IB's events, for every end marker; None when IB did not answer in time or the
        connection dropped (the caller must not place then)."""
        collector = Collector(IbSnapshot(positions=[] if with_positions else None), next(self._req_ids))
        collector.positions_done = not with_positions
        self.collector = collector
        session = self.ctx.session
        try:
            sent = session.req_all_open_orders() and session.req_executions(collector.exec_req_id, symbol=symbol)
            if with_positions:
                sent = sent and session.req_positions()
            if not sent:
                return None
            deadline = self.ctx.wall() + self.ctx.settings.execution.ib_answer_timeout_seconds
            generation = self.ctx.generation
            while not collector.complete:
                if self.ctx.wall() > deadline or not connected():
                    log.warning("IB did not answer the order query", extra={"symbol": symbol})
                    return None
                drain(0.01)
                if self.ctx.generation != generation:
                    return None
            return collector.snapshot
        finally:
            self.collector = None


@dataclass
class _OwedCancel:
    """A cancelOrder reconciliation owes IB for a leg it recorded cancelled (``CancelRequest``)."""

    order_id: str
    leg: OrderLeg
    #: The IB connection (session generation) it was last sent on; None: not sent yet.
    sent_generation: int | None = None


class OwedCancels:
    """IB order id → the cancel reconciliation owes IB for it, until IB answers; then the id moves to ``answered``,
    so the cancel is never sent again (both hold only legs reconciliation presumed cancelled: few, like the book)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.owed: dict[int, _OwedCancel] = {}
        self.answered: set[int] = set()

    def send(self, requests: list[CancelRequest]) -> None:
        """Best-effort cancelOrder for the legs reconciliation recorded cancelled because IB no longer lists them:
        IB does not list an order its gateway holds untransmitted, and that order must never be transmitted later.
        Sent once per IB connection until IB answers (an answer lost with the connection is asked for again on the
        next), never after an answer."""
        for request in requests:
            if request.ib_order_id not in self.answered:
                self.owed.setdefault(request.ib_order_id, _OwedCancel(request.order_id, request.leg))
        for ib_order_id, owed in self.owed.items():
            if owed.sent_generation == self.ctx.generation:
                continue
            with log_context(order_id=owed.order_id, symbol=self.ctx.book.orders[owed.order_id].symbol):
                if self.ctx.session.cancel_order(ib_order_id):
                    owed.sent_generation = self.ctx.generation
                    log.info(
                        "cancel sent for a leg presumed cancelled (IB no longer lists it)",
                        extra={"leg": owed.leg.value, "ib_order_id": ib_order_id},
                    )
                else:
                    log.info(
                        "cancel for a leg presumed cancelled not sent: IB not connected; sent on reconnect",
                        extra={"leg": owed.leg.value, "ib_order_id": ib_order_id},
                    )

    def settle(self, ib_order_id: int) -> None:
        """IB answered for an order (a final status, or an error about it): a cancel we owed for it is settled."""
        if self.owed.pop(ib_order_id, None) is not None:
            self.answered.add(ib_order_id)


class Reconciler:
    """Applies reconciliation's decisions: adoptions, missed fills, status reports, cancels, alerts."""

    def __init__(self, ctx: Context, reporter: Reporter, fills: FillPairing, cancels: OwedCancels) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.fills = fills
        self.cancels = cancels

    def apply(self, snapshot: IbSnapshot) -> None:
        """Start and every reconnect: compare IB's open orders, executions and positions with the book."""
        ctx = self.ctx
        assert ctx.account is not None
        result = reconcile(ctx.book, snapshot, ctx.client_id, ctx.account, ctx.journal.in_doubt)
        for order_id, symbol, leg, ib_order in result.adoptions:
            ctx.book.adopt(order_id, symbol, leg, ib_order.order_id, ib_order.quantity, ib_order.perm_id)
            ctx.journal.raise_hwm(ib_order.order_id)
        for detail in result.executions:
            self.fills.recover(detail, snapshot.commissions.get(detail.exec_id))
        for report in result.reports:
            with log_context(order_id=report.order_id):
                self._report(report)
        self.cancels.send(result.cancels)
        for finding in result.findings:
            log.warning("reconciliation: %s", finding.message, extra={"kind": finding.kind})
            self.reporter.alert(
                finding.kind,
                Severity.WARNING,
                finding.message,
                finding.details,
                order_id=finding.order_id,
                symbol=finding.symbol,
                key=(ctx.account, finding.order_id or "", finding.symbol or "", finding.message),
            )
        log.info(
            "reconciled with IB",
            extra={
                "open_orders": len(snapshot.open_orders),
                "executions": len(snapshot.executions),
                "missed_fills": len(result.executions),
                "reports": len(result.reports),
                "findings": len(result.findings),
            },
        )

    def _report(self, report: StatusReport) -> None:
        self.reporter.report(
            report.order_id,
            report.leg,
            report.status,
            source=ExecutionSource.RECONCILIATION,
            reconciliation=report.reconciliation,
            filled=report.filled,
            avg_fill_price=report.avg_fill_price,
            broker_status=report.broker_status,
            broker_message=report.message,
        )

    def adopt(self, order: RoutedOrder, snapshot: IbSnapshot, entry: InDoubt | None) -> list[OrderLeg]:
        """The order exists at IB: take over its ids and record what IB says. Returns the legs IB lacks."""
        order_id = order.order_id
        book = self.ctx.book
        book.register(order_id, order.symbol, order.side, [])
        if entry is not None:
            journaled = zip(legs_of(order), entry.ib_order_ids, strict=True)
            book.register(order_id, order.symbol, order.side, [(leg, i, order.quantity) for leg, i in journaled])
        open_orders = self._adopt_open_orders(order, snapshot)
        executed_ids = self._adopt_executions(order, snapshot)
        missing: list[OrderLeg] = []
        for leg_state in list(book.orders[order_id].legs.values()):
            ib_id = leg_state.ib_order_id
            if ib_id is None:
                continue
            report: StatusReport | None
            if ib_id in open_orders:
                report = adopt_open_leg(
                    order_id, leg_state, open_orders[ib_id], snapshot.statuses.get((self.ctx.client_id, ib_id))
                )
            elif ib_id in executed_ids:
                report = adopt_closed_leg(order_id, leg_state, book.leg_fills(order_id, ib_id))
            else:
                missing.append(leg_state.leg)
                continue
            if report is not None:
                self._report(report)
        return missing

    def _adopt_open_orders(self, order: RoutedOrder, snapshot: IbSnapshot) -> dict[int, events.OpenOrder]:
        """IB's open orders carrying the order's orderRef: ours are adopted, another client's are alerted on."""
        adopted: dict[int, events.OpenOrder] = {}
        for ib_order in snapshot.open_orders:
            if ib_order.order_ref != order.order_id:
                continue
            if ib_order.client_id != self.ctx.client_id:
                self.reporter.alert(
                    "order_other_client",
                    Severity.WARNING,
                    f"order exists at IB under client {ib_order.client_id}; not placed again and not managed here",
                    {"client_id": str(ib_order.client_id), "ib_order_id": str(ib_order.order_id)},
                    order_id=order.order_id,
                    symbol=order.symbol,
                    key=(order.order_id, str(ib_order.client_id)),
                )
                continue
            leg = leg_of_ib_order(ib_order.parent_id, ib_order.order_type)
            self.ctx.book.adopt(
                order.order_id, order.symbol, leg, ib_order.order_id, ib_order.quantity, ib_order.perm_id
            )
            self.ctx.journal.raise_hwm(ib_order.order_id)
            adopted.setdefault(ib_order.order_id, ib_order)
        return adopted

    def _adopt_executions(self, order: RoutedOrder, snapshot: IbSnapshot) -> set[int]:
        """IB's executions carrying the order's orderRef: recorded; an unknown IB id is taken as the parent's."""
        book = self.ctx.book
        executed_ids: set[int] = set()
        for detail in snapshot.executions:
            if detail.order_ref != order.order_id:
                continue
            executed_ids.add(detail.order_id)
            parent = book.orders[order.order_id].legs.get(OrderLeg.PARENT)
            if book.find(detail.order_id) is None and (parent is None or parent.ib_order_id is None):
                book.adopt(
                    order.order_id, order.symbol, OrderLeg.PARENT, detail.order_id, order.quantity, detail.perm_id
                )
            self.fills.recover(detail, snapshot.commissions.get(detail.exec_id))
        return executed_ids
