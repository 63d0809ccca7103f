"""IB's callbacks about orders, mapped to what we record: order statuses, fills, positions, errors about orders.

Every event first feeds the open ``IbQuery`` collector, if a question to IB is pending. Connection-level events
(disconnects, connectivity codes, nextValidId) are the service's; everything here is about orders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from consumers.execution.context import Context
from consumers.execution.fills import FillPairing
from consumers.execution.mapping import CANCEL_MOOT_CODES, TERMINAL, status_from_ib
from consumers.execution.reconciler import IbQuery, OwedCancels
from consumers.execution.reporting import Reporter
from consumers.execution.state import status_of_error
from ibstream.contracts import Position, positions, utc_now
from ibstream.contracts.enums import ExecutionSource
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.telemetry import log_context

log = logging.getLogger(__name__)

#: IB messages that are news, not trouble.
_INFO_KINDS = frozenset({CodeKind.FARM_OK, CodeKind.INFO, CodeKind.FARM_INACTIVE})


class OrderEvents:
    """Maps one IB event about orders onto the book, the fills and the outbox."""

    def __init__(
        self, ctx: Context, reporter: Reporter, fills: FillPairing, cancels: OwedCancels, query: IbQuery
    ) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.fills = fills
        self.cancels = cancels
        self.query = query
        #: Whether an error is IB refusing a modification we just sent (``operator_orders``): then it says nothing
        #: about the order's status, which stays as it was.
        self.modification_refused: Callable[[events.IbError], bool] = lambda event: False

    def handle(self, event: events.IbEvent) -> None:
        collector = self.query.collector
        if collector is not None:
            collector.take(event)
        match event:
            case events.OrderStatusUpdate():
                self.on_order_status(event)
            case events.ExecutionDetail():
                self.fills.on_execution(event)
            case events.CommissionReport():
                self.fills.on_commission(event)
            case events.PositionUpdate():
                self.on_position(event)
            case events.IbError():
                self.on_error(event)
            case _:
                pass

    def on_error(self, event: events.IbError) -> None:
        """An IB error or message (not a connectivity change): about one of our orders, or logged."""
        found = self.ctx.book.find(event.req_id) if event.req_id > 0 else None
        if found is None:
            level = logging.INFO if event.kind in _INFO_KINDS else logging.WARNING
            log.log(
                level, "IB message", extra={"req_id": event.req_id, "code": event.code, "ib_message": event.message}
            )
            return
        order, leg = found
        with log_context(order_id=order.order_id, symbol=order.symbol):
            if event.code in CANCEL_MOOT_CODES:
                # Nothing left to cancel (unknown to IB, or already done): harmless, says nothing about the status.
                self.cancels.settle(event.req_id)
                log.info(
                    "IB had nothing to cancel",
                    extra={
                        "leg": leg.leg.value,
                        "ib_order_id": event.req_id,
                        "code": event.code,
                        "ib_message": event.message,
                    },
                )
                return
            if self.modification_refused(event):
                return
            status = status_of_error(event.kind)
            if status is None:
                log.warning(
                    "IB message about an order",
                    extra={"leg": leg.leg.value, "code": event.code, "ib_message": event.message},
                )
                return
            self.cancels.settle(event.req_id)
            self.reporter.report(
                order.order_id,
                leg.leg,
                status,
                broker_code=event.code,
                broker_message=event.message,
            )

    def on_order_status(self, update: events.OrderStatusUpdate) -> None:
        if update.client_id != self.ctx.client_id:
            return
        found = self.ctx.book.find(update.order_id)
        if found is None:
            return
        order, leg = found
        status = status_from_ib(update.status, update.filled, update.remaining)
        if status is None:
            return
        if status in TERMINAL:
            self.cancels.settle(update.order_id)
        with log_context(order_id=order.order_id, symbol=order.symbol):
            self.reporter.report(
                order.order_id,
                leg.leg,
                status,
                filled=update.filled,
                avg_fill_price=update.avg_fill_price or None,
                perm_id=update.perm_id or None,
                broker_status=update.status,
                at=update.received_time,
            )

    def on_position(self, update: events.PositionUpdate) -> None:
        account = self.ctx.account
        if account is not None and update.account not in ("", account):
            return
        source = ExecutionSource.RECONCILIATION if self.query.collector is not None else ExecutionSource.LIVE
        self.reporter.outbox.enqueue(
            positions.TOPIC,
            Position(
                account=update.account or account or "",
                symbol=update.symbol,
                con_id=update.con_id,
                quantity=update.quantity,
                avg_cost=update.avg_cost,
                source=source,
                time=utc_now(),
            ),
        )
