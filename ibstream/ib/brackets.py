"""Routed orders as IB orders: a single order or a bracket (parent, stop-loss, take-profit) of ``OrderTicket``s.

Pure. The execution consumer places these tickets at IB; ``ibstream backtest`` places the same tickets in the core's
matching engine (``ibstream.sim``), so a backtest's brackets are the live pipeline's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibstream.contracts import RoutedOrder
from ibstream.contracts.enums import AdaptivePriority, OrderLeg, OrderType, Side, TimeInForce
from ibstream.exceptions import IbstreamError
from ibstream.ib.session import OrderTicket


class InvalidOrderError(IbstreamError, ValueError):
    """A routed order that cannot be expressed as IB orders (missing prices, inconsistent bracket)."""


@dataclass(frozen=True)
class LegPlan:
    """One IB order of an intent: its leg, IB order id and ticket."""

    leg: OrderLeg
    ib_order_id: int
    ticket: OrderTicket


_IB_ORDER_TYPE = {
    OrderType.MKT: "MKT",
    OrderType.LMT: "LMT",
    OrderType.STP: "STP",
    OrderType.STP_LMT: "STP LMT",
    OrderType.MOC: "MOC",
    OrderType.LOC: "LOC",
}

#: Orders of the closing auction: IB takes them as day orders only.
CLOSE_ORDER_TYPES = frozenset({OrderType.MOC, OrderType.LOC})

#: IB's Adaptive algo: the name in algoStrategy, the order types it takes, and our priority → its adaptivePriority.
ADAPTIVE = "Adaptive"
ADAPTIVE_ORDER_TYPES = frozenset({OrderType.MKT, OrderType.LMT})
ADAPTIVE_PRIORITY = {
    AdaptivePriority.URGENT: "Urgent",
    AdaptivePriority.NORMAL: "Normal",
    AdaptivePriority.PATIENT: "Patient",
}

#: IB's ocaType for our OCA groups: the first fill of one entry cancels the others (with their brackets).
OCA_CANCEL_OTHERS = 1

#: IB order types of a bracket's stop-loss leg (a fixed stop, a trailing stop), as IB reports them.
STOP_LOSS_IB_TYPES = ("STP", "TRAIL")


def legs_of(order: RoutedOrder) -> list[OrderLeg]:
    """The legs an intent needs, in placement order (parent first; IB needs the parent before its children)."""
    legs = [OrderLeg.PARENT]
    if order.stop_loss is not None:
        legs.append(OrderLeg.STOP_LOSS)
    if order.take_profit is not None:
        legs.append(OrderLeg.TAKE_PROFIT)
    return legs


def validate(order: RoutedOrder) -> None:
    """Raise InvalidOrderError when IB could not take the order as routed."""
    _validate_trail_and_algo(order)
    if order.order_type in CLOSE_ORDER_TYPES and order.time_in_force is not TimeInForce.DAY:
        raise InvalidOrderError(f"a {order.order_type.value} order is a day order, not {order.time_in_force.value}")
    if order.order_type in (OrderType.LMT, OrderType.STP_LMT, OrderType.LOC) and order.limit_price is None:
        raise InvalidOrderError(f"{order.order_type.value} order without limit_price")
    if order.order_type in (OrderType.STP, OrderType.STP_LMT) and order.stop_price is None:
        raise InvalidOrderError(f"{order.order_type.value} order without stop_price")
    if order.stop_loss is not None and order.take_profit is not None:
        low, high = sorted((order.stop_loss, order.take_profit))
        expected_low = order.stop_loss if order.side is Side.BUY else order.take_profit
        if low != expected_low or low == high:
            raise InvalidOrderError(
                f"bracket prices inverted for a {order.side.value}: stop_loss={order.stop_loss} "
                f"take_profit={order.take_profit}"
            )


def _validate_trail_and_algo(order: RoutedOrder) -> None:
    """A trailing stop-loss needs its initial stop and exactly one positive trail (a percent under 100); the
    Adaptive algo takes market and limit entries only."""
    amount, percent = order.stop_loss_trail_amount, order.stop_loss_trail_percent
    if amount is not None or percent is not None:
        if order.stop_loss is None:
            raise InvalidOrderError("a trailing stop-loss needs stop_loss, its initial stop")
        if amount is not None and percent is not None:
            raise InvalidOrderError("a trailing stop-loss takes a trail amount or a trail percent, not both")
        trail = amount if amount is not None else percent
        if trail is None or trail <= 0 or (percent is not None and percent >= 100):
            raise InvalidOrderError(f"trailing stop-loss trail out of range: amount={amount} percent={percent}")
    if order.adaptive_priority is not None and order.order_type not in ADAPTIVE_ORDER_TYPES:
        raise InvalidOrderError(f"the Adaptive algo does not take {order.order_type.value} orders")


def _algo(order: RoutedOrder) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The entry's IB algo and its parameters: Adaptive with its priority, or none."""
    if order.adaptive_priority is None:
        return "", ()
    return ADAPTIVE, (("adaptivePriority", ADAPTIVE_PRIORITY[order.adaptive_priority]),)


def _stop_loss_ticket(
    order: RoutedOrder, exit_action: str, parent_id: int, transmit: bool, account: str
) -> OrderTicket:
    """The bracket's protective leg: a stop at stop_loss, or a trailing stop starting there (TRAIL: the trail amount
    in auxPrice or the percent in trailingPercent, the initial stop in trailStopPrice)."""
    trailing = order.stop_loss_trail_amount is not None or order.stop_loss_trail_percent is not None
    return OrderTicket(
        action=exit_action,
        quantity=order.quantity,
        order_type="TRAIL" if trailing else "STP",
        order_ref=order.order_id,
        aux_price=order.stop_loss_trail_amount if trailing else order.stop_loss,
        time_in_force="GTC",
        parent_id=parent_id,
        transmit=transmit,
        account=account,
        trailing_percent=order.stop_loss_trail_percent,
        trail_stop_price=order.stop_loss if trailing else None,
    )


def plan_legs(order: RoutedOrder, ib_order_ids: list[int], account: str) -> list[LegPlan]:
    """IB orders for an intent: a single order, or a bracket whose children name the parent's id.

    Brackets follow IB's rule for atomic submission: every order but the last has transmit=False, so IB holds the
    parent until the last child arrives and nothing trades half-protected. ``orderRef`` is our order id on every
    leg: it is how we find our orders at IB after a crash.
    """
    validate(order)
    legs = legs_of(order)
    if len(ib_order_ids) != len(legs):
        raise ValueError(f"{len(legs)} legs need {len(legs)} IB order ids, got {len(ib_order_ids)}")
    exit_action = "SELL" if order.side is Side.BUY else "BUY"
    parent_id = ib_order_ids[0]
    plans: list[LegPlan] = []
    for index, (leg, ib_id) in enumerate(zip(legs, ib_order_ids, strict=True)):
        last = index == len(legs) - 1
        if leg is OrderLeg.PARENT:
            algo_strategy, algo_params = _algo(order)
            ticket = OrderTicket(
                action=order.side.value,
                quantity=order.quantity,
                order_type=_IB_ORDER_TYPE[order.order_type],
                order_ref=order.order_id,
                limit_price=order.limit_price,
                aux_price=order.stop_price,
                time_in_force=order.time_in_force.value,
                transmit=last,
                account=account,
                algo_strategy=algo_strategy,
                algo_params=algo_params,
                oca_group=order.oca_group or "",
                oca_type=OCA_CANCEL_OTHERS if order.oca_group else 0,
            )
        elif leg is OrderLeg.STOP_LOSS:
            ticket = _stop_loss_ticket(order, exit_action, parent_id, last, account)
        else:
            ticket = OrderTicket(
                action=exit_action,
                quantity=order.quantity,
                order_type="LMT",
                order_ref=order.order_id,
                limit_price=order.take_profit,
                time_in_force="GTC",
                parent_id=parent_id,
                transmit=last,
                account=account,
            )
        plans.append(LegPlan(leg, ib_id, ticket))
    return plans


def leg_of_ib_order(parent_id: int, order_type: str) -> OrderLeg:
    """Which leg an IB order is, for orders we find at IB rather than placed in this process."""
    if not parent_id:
        return OrderLeg.PARENT
    return OrderLeg.STOP_LOSS if order_type.upper().startswith(STOP_LOSS_IB_TYPES) else OrderLeg.TAKE_PROFIT
