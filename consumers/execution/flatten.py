"""Flatten orders: routed orders carrying ``flatten_id`` (a market order closing a held position, see
``streams.orchestration.flatten``).

Execution places a flatten even while its scope is halted (the kill switch and a halted trading state refuse every
other routed order locally), never cancels one when the kill switch cancels its scope's entries, and once one has
filled cancels the protective legs (stop loss, take profit) still working for its symbol: they protected the
position the flatten closed, and left working they would open a new one when they trigger.

The flatten orders in progress live in ``Context.flatten_orders`` (order_id → symbol), in memory: after a restart a
flatten placed before it is not known as one (its protective-leg cancel then falls to the operator; the runbook says
how to check).
"""

from __future__ import annotations

import logging

from consumers.execution.context import Context
from consumers.execution.state import Book, LegState
from ibstream.contracts import RoutedOrder
from ibstream.contracts.enums import OrderLeg, OrderStatus

log = logging.getLogger(__name__)


def is_flatten(order: RoutedOrder) -> bool:
    return order.flatten_id is not None


def protective_legs(book: Book, symbol: str, flatten_order_id: str) -> list[tuple[str, LegState]]:
    """(order_id, leg) of every stop loss and take profit still working for ``symbol``, other than the flatten's,
    except the children of an entry still working with nothing filled: they protect no position yet and go with
    their entry's cancel (the kill switch's business, not the flatten's)."""
    found = []
    for order_id, order in book.orders.items():
        if order.symbol != symbol or order_id == flatten_order_id:
            continue
        parent = order.legs.get(OrderLeg.PARENT)
        if parent is not None and parent.is_open and parent.filled <= 0:
            continue
        found += [(order_id, leg) for leg in order.open_legs() if leg.leg is not OrderLeg.PARENT]
    return found


def flatten_outcome(book: Book, order_id: str) -> OrderStatus | None:
    """FILLED once the flatten's order filled; CANCELLED/REJECTED/ERROR if it ended otherwise; None while working."""
    order = book.orders.get(order_id)
    parent = None if order is None else order.legs.get(OrderLeg.PARENT)
    if parent is None or parent.is_open or parent.status is None:
        return None
    return parent.status


class Flattens:
    """Watches the flatten orders in progress and cancels their symbol's protective legs once one has filled."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def sweep(self) -> int:
        """Cancel the protective legs of the symbols whose flatten has filled; returns the cancels requested."""
        requested = 0
        for order_id, symbol in list(self.ctx.flatten_orders.items()):
            outcome = flatten_outcome(self.ctx.book, order_id)
            if outcome is None:
                continue
            del self.ctx.flatten_orders[order_id]
            if outcome is not OrderStatus.FILLED:
                log.warning(
                    "flatten ended without filling: protective legs kept",
                    extra={"order_id": order_id, "symbol": symbol, "status": outcome.value},
                )
                continue
            legs = protective_legs(self.ctx.book, symbol, order_id)
            for protected, leg in legs:
                if leg.ib_order_id is not None and self.ctx.session.cancel_order(leg.ib_order_id):
                    requested += 1
                    log.info(
                        "flatten filled: protective leg cancelled",
                        extra={"order_id": protected, "symbol": symbol, "leg": leg.leg.value},
                    )
            log.warning(
                "flatten filled", extra={"order_id": order_id, "symbol": symbol, "protective_legs_cancelled": len(legs)}
            )
        return requested
