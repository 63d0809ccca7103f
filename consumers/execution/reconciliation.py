"""The pure reconciliation of our book with IB's view: small functions, one per case, no I/O.

Startup and every reconnect run ``reconcile`` over IB's open orders, executions and positions; a re-delivered
routed order that IB already holds (a previous attempt placed it) is adopted with ``adopt_open_leg`` and
``adopt_closed_leg``. Both decide an IB order's status with ``ib_order_status`` and whether a leg's fills cover it
with ``covered``. Rules:

* an open IB order of our client carrying a known orderRef: adopt its id if we lacked it; its status is
  recorded as ``matched`` (same as ours) or ``recovered`` (IB moved on while we were not listening);
* an IB execution of a known orderRef whose exec_id we never recorded is a missed fill: record it;
* a leg we think is working that IB no longer lists is ``filled`` (recovered) when its executions cover its
  quantity, otherwise ``cancelled``: ``recovered`` when the bracket explains it (a sibling filled, or the
  parent ended), else ``mismatch`` with an alert; either way it is also cancelled at IB (``CancelRequest``);
* an open IB order whose orderRef we do not know (nor hold in doubt from a crash) is unexplained: alert;
* an IB position that differs from the net of our recorded executions is unexplained: alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.execution.mapping import IB_SIDE, QTY_EPSILON, status_from_ib
from consumers.execution.state import Book, LegState, OrderState
from ibstream.contracts.enums import OrderLeg, OrderStatus, Side
from ibstream.ib import events
from ibstream.ib.brackets import leg_of_ib_order

#: Values of OrderEvent.reconciliation_status (the warehouse's unreconciled-orders audit reads "mismatch").
MATCHED = "matched"  # IB agrees with what we had recorded
RECOVERED = "recovered"  # IB knew something we had missed (a fill during a disconnect, an adopted order)
MISMATCH = "mismatch"  # IB and we disagree in a way we cannot explain

#: Fills that each IB order id of an intent received: (order_id, IB order id) → shares.
Fills = dict[tuple[str, int], float]


@dataclass
class IbSnapshot:
    """What IB answered to reqAllOpenOrders, reqExecutions and (optionally) reqPositions."""

    open_orders: list[events.OpenOrder] = field(default_factory=list)
    statuses: dict[tuple[int, int], events.OrderStatusUpdate] = field(default_factory=dict)  # (client id, IB id)
    executions: list[events.ExecutionDetail] = field(default_factory=list)
    commissions: dict[str, events.CommissionReport] = field(default_factory=dict)
    positions: list[events.PositionUpdate] | None = None

    def status_of(self, order: events.OpenOrder) -> events.OrderStatusUpdate | None:
        return self.statuses.get((order.client_id, order.order_id))


@dataclass(frozen=True)
class StatusReport:
    """A status reconciliation decided for one leg."""

    order_id: str
    leg: OrderLeg
    status: OrderStatus
    filled: float
    avg_fill_price: float | None
    broker_status: str | None
    reconciliation: str
    message: str | None = None


@dataclass(frozen=True)
class Finding:
    """Something IB has that we cannot explain: an alert."""

    kind: str
    message: str
    details: dict[str, str]
    order_id: str | None = None
    symbol: str | None = None


@dataclass(frozen=True)
class CancelRequest:
    """A leg presumed cancelled because IB no longer lists it: cancel it at IB as well. IB does not list an order
    its gateway still holds untransmitted (a bracket whose transmitting leg was lost with the connection), and such
    an order could be transmitted later; the cancel makes our presumption true."""

    order_id: str
    leg: OrderLeg
    ib_order_id: int


@dataclass
class Reconciliation:
    """What a reconciliation decided: IB orders to adopt, missed fills, status corrections, alerts, and the legs to
    cancel at IB because we now record them cancelled."""

    adoptions: list[tuple[str, str, OrderLeg, events.OpenOrder]] = field(default_factory=list)
    executions: list[events.ExecutionDetail] = field(default_factory=list)
    reports: list[StatusReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    cancels: list[CancelRequest] = field(default_factory=list)


@dataclass(frozen=True)
class IbOrderStatus:
    """IB's word on one of its orders: orderStatus if it sent one, else the open order's own status."""

    status: OrderStatus | None
    broker_status: str
    filled: float
    avg_fill_price: float | None


# --- shared by reconciliation and adoption ----------------------------------------------------------------------------


def ib_order_status(order: events.OpenOrder, update: events.OrderStatusUpdate | None, quantity: float) -> IbOrderStatus:
    """Our status for an open IB order (``quantity``: the leg's, used when IB sent no orderStatus)."""
    broker_status = update.status if update is not None else order.status
    filled = update.filled if update is not None else 0.0
    remaining = update.remaining if update is not None else quantity - filled
    avg = update.avg_fill_price if update is not None else None
    return IbOrderStatus(status_from_ib(broker_status, filled, remaining), broker_status, filled, avg)


def covered(filled: float, quantity: float) -> bool:
    """The leg's fills cover its quantity."""
    return filled + QTY_EPSILON >= quantity


# --- one function per case ------------------------------------------------------------------------------------------


def report_open_order(book: Book, order: events.OpenOrder, snapshot: IbSnapshot) -> StatusReport | None:
    """An open IB order of ours: its status, ``matched`` if we had recorded it, else ``recovered``."""
    leg = leg_of_ib_order(order.parent_id, order.order_type)
    ib = ib_order_status(order, snapshot.status_of(order), order.quantity)
    if ib.status is None:
        return None
    current = book.orders[order.order_ref].legs.get(leg)
    same = current is not None and current.status == ib.status and abs(current.filled - ib.filled) < QTY_EPSILON
    return StatusReport(
        order.order_ref, leg, ib.status, ib.filled, ib.avg_fill_price, ib.broker_status, MATCHED if same else RECOVERED
    )


def unexplained_order(order: events.OpenOrder) -> Finding:
    """An open IB order whose orderRef we neither know nor hold in doubt."""
    return Finding(
        "unexplained_order",
        f"IB has an open order we did not place: {order.action} {order.quantity:g} {order.symbol} "
        f"(client {order.client_id}, id {order.order_id}, orderRef {order.order_ref!r})",
        {
            "ib_order_id": str(order.order_id),
            "client_id": str(order.client_id),
            "perm_id": str(order.perm_id),
            "order_ref": order.order_ref,
            "status": order.status,
        },
        symbol=order.symbol,
    )


def missed_executions(book: Book, snapshot: IbSnapshot) -> tuple[list[events.ExecutionDetail], Fills]:
    """IB's executions of our orders that we never recorded, and the shares they add per IB order."""
    missed: list[events.ExecutionDetail] = []
    new_fills: Fills = {}
    seen: set[str] = set()
    for detail in snapshot.executions:
        if detail.order_ref not in book.orders or detail.exec_id in book.exec_ids or detail.exec_id in seen:
            continue
        seen.add(detail.exec_id)
        missed.append(detail)
        key = (detail.order_ref, detail.order_id)
        new_fills[key] = new_fills.get(key, 0.0) + detail.shares
    return missed, new_fills


def reconcile_closed_leg(
    book: Book, order: OrderState, leg: LegState, new_fills: Fills
) -> tuple[StatusReport, CancelRequest | None, Finding | None]:
    """A leg we think is working that IB no longer lists: filled if its executions cover it, else cancelled (and
    cancelled at IB too), unexplained unless the bracket explains it."""
    assert leg.ib_order_id is not None
    key = (order.order_id, leg.ib_order_id)
    filled = max(leg.filled, book.leg_fills(*key) + new_fills.get(key, 0.0))
    if covered(filled, leg.quantity):
        report = StatusReport(
            order.order_id,
            leg.leg,
            OrderStatus.FILLED,
            filled,
            None,
            None,
            RECOVERED,
            "filled while we were not listening (recovered from IB's executions)",
        )
        return report, None, None
    explained = bracket_explains(order, leg, book, new_fills)
    message = "no longer open at IB and its executions do not cover it: presumed cancelled" + (
        "" if explained else " (unexplained)"
    )
    report = StatusReport(
        order.order_id,
        leg.leg,
        OrderStatus.CANCELLED,
        filled,
        None,
        None,
        RECOVERED if explained else MISMATCH,
        message,
    )
    cancel = CancelRequest(order.order_id, leg.leg, leg.ib_order_id)
    if explained:
        return report, cancel, None
    finding = Finding(
        "order_missing_at_ib",
        f"{leg.leg.value} leg (IB id {leg.ib_order_id}) {message}",
        {"ib_order_id": str(leg.ib_order_id), "filled": f"{filled:g}", "quantity": f"{leg.quantity:g}"},
        order_id=order.order_id,
        symbol=order.symbol,
    )
    return report, cancel, finding


def bracket_explains(order: OrderState, leg: LegState, book: Book, new_fills: Fills) -> bool:
    """A bracket child ends without filling when its sibling filled (OCA) or its parent ended unfilled."""
    if leg.leg is OrderLeg.PARENT:
        return False
    parent = order.legs.get(OrderLeg.PARENT)
    if parent is not None and parent.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR):
        return True
    for sibling in order.legs.values():
        if sibling is leg or sibling.leg is OrderLeg.PARENT or sibling.ib_order_id is None:
            continue
        key = (order.order_id, sibling.ib_order_id)
        if sibling.status is OrderStatus.FILLED or book.leg_fills(*key) + new_fills.get(key, 0.0) > QTY_EPSILON:
            return True
    return False


def position_findings(
    book: Book, snapshot: IbSnapshot, account: str, missed: list[events.ExecutionDetail], doubtful: set[str]
) -> list[Finding]:
    """IB positions that differ from the net of our recorded (and just recovered) executions."""
    ib_net: dict[str, float] = {}
    for position in snapshot.positions or []:
        if position.account in ("", account):
            ib_net[position.symbol] = ib_net.get(position.symbol, 0.0) + position.quantity
    ours = dict(book.net)
    # Fills of intents in doubt are ours too: their routed order is re-delivered and adopted right after.
    in_doubt_fills = [d for d in snapshot.executions if d.order_ref in doubtful and d.exec_id not in book.exec_ids]
    for detail in [*missed, *{d.exec_id: d for d in in_doubt_fills}.values()]:
        signed = detail.shares if IB_SIDE[detail.side.upper()] is Side.BUY else -detail.shares
        ours[detail.symbol] = ours.get(detail.symbol, 0.0) + signed
    findings: list[Finding] = []
    for symbol in sorted(set(ib_net) | set(ours)):
        theirs, mine = ib_net.get(symbol, 0.0), ours.get(symbol, 0.0)
        if abs(theirs - mine) > QTY_EPSILON:
            findings.append(
                Finding(
                    "position_mismatch",
                    f"IB holds {theirs:g} {symbol}, our recorded executions explain {mine:g}",
                    {"ib_quantity": f"{theirs:g}", "our_quantity": f"{mine:g}", "account": account},
                    symbol=symbol,
                )
            )
    return findings


def reconcile(
    book: Book,
    snapshot: IbSnapshot,
    client_id: int,
    account: str,
    in_doubt: Iterable[str] = (),
) -> Reconciliation:
    """Compare our book with IB's answer (the rules in the module docstring)."""
    result = Reconciliation()
    doubtful = set(in_doubt)
    ours_open: set[int] = set()
    for order in snapshot.open_orders:
        if order.order_ref in book.orders and order.client_id == client_id:
            ours_open.add(order.order_id)
            if book.find(order.order_id) is None:
                leg = leg_of_ib_order(order.parent_id, order.order_type)
                result.adoptions.append((order.order_ref, order.symbol, leg, order))
            open_report = report_open_order(book, order, snapshot)
            if open_report is not None:
                result.reports.append(open_report)
        elif order.order_ref not in doubtful and order.order_ref not in book.orders:
            result.findings.append(unexplained_order(order))
    result.executions, new_fills = missed_executions(book, snapshot)
    for order_state in book.orders.values():
        for closed in [o for o in order_state.open_legs() if o.ib_order_id and o.ib_order_id not in ours_open]:
            report, cancel, finding = reconcile_closed_leg(book, order_state, closed, new_fills)
            result.reports.append(report)
            result.cancels.extend([cancel] if cancel is not None else [])
            result.findings.extend([finding] if finding is not None else [])
    if snapshot.positions is not None:
        result.findings.extend(position_findings(book, snapshot, account, result.executions, doubtful))
    return result


# --- adoption of an order a previous attempt placed ----------------------------------------------------------------


def adopt_open_leg(
    order_id: str, leg: LegState, ib_order: events.OpenOrder, update: events.OrderStatusUpdate | None
) -> StatusReport | None:
    """A leg of a re-delivered order that IB lists open: its status at IB, recovered."""
    ib = ib_order_status(ib_order, update, leg.quantity)
    if ib.status is None:
        return None
    return StatusReport(order_id, leg.leg, ib.status, ib.filled, ib.avg_fill_price or None, ib.broker_status, RECOVERED)


def adopt_closed_leg(order_id: str, leg: LegState, filled: float) -> StatusReport:
    """A leg of a re-delivered order that IB no longer lists but executed: filled, or presumed cancelled."""
    if covered(filled, leg.quantity):
        return StatusReport(order_id, leg.leg, OrderStatus.FILLED, filled, None, None, RECOVERED)
    return StatusReport(
        order_id,
        leg.leg,
        OrderStatus.CANCELLED,
        filled,
        None,
        None,
        RECOVERED,
        "no longer open at IB, partly filled: presumed cancelled",
    )
