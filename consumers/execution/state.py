"""What the executor knows about its orders, and the pure reconciliation of that knowledge with IB's.

The book is rebuilt at startup from ``orders.events.v1`` and ``executions.v1`` (read committed) and then kept up to
date from IB's callbacks. Nothing here does I/O: the service feeds it events and publishes what it returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.execution.mapping import (
    ERROR_KIND_STATUS,
    IB_SIDE,
    QTY_EPSILON,
    TERMINAL,
    Verdict,
    event_id,
    judge,
    leg_of_ib_order,
    parse_exec_time,
    status_from_ib,
)
from ibstream.contracts import Execution, OrderEvent
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus, Side
from ibstream.ib import events
from ibstream.ib.codes import CodeKind

#: Values of OrderEvent.reconciliation_status (the warehouse's unreconciled-orders audit reads "mismatch").
MATCHED = "matched"  # IB agrees with what we had recorded
RECOVERED = "recovered"  # IB knew something we had missed (a fill during a disconnect, an adopted order)
MISMATCH = "mismatch"  # IB and we disagree in a way we cannot explain


@dataclass
class LegState:
    """One IB order of an intent."""

    leg: OrderLeg
    quantity: float
    ib_order_id: int | None = None
    perm_id: int | None = None
    status: OrderStatus | None = None
    filled: float = 0.0
    avg_fill_price: float | None = None
    broker_status: str | None = None
    #: The id of the last event recorded for this leg: the same fact is never published twice in a row.
    last_event_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status is not None and self.status not in TERMINAL


@dataclass
class OrderState:
    """One intent (our order_id, IB orderRef) and its legs."""

    order_id: str
    symbol: str
    side: Side | None
    legs: dict[OrderLeg, LegState] = field(default_factory=dict)

    def open_legs(self) -> list[LegState]:
        return [leg for leg in self.legs.values() if leg.is_open]


@dataclass(frozen=True)
class Step:
    """The outcome of reporting a status: an event to publish, or an impossible transition to alert on."""

    event: OrderEvent | None = None
    impossible: str | None = None


class Book:
    """Our orders by order id and by IB order id (our client id only), the executions we recorded, and the net
    position those executions imply per symbol."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderState] = {}
        self.exec_ids: set[str] = set()
        self.net: dict[str, float] = {}
        self.max_ib_order_id = 0
        self._by_ib_id: dict[int, tuple[str, OrderLeg]] = {}
        self._fills: dict[tuple[str, int], float] = {}

    # --- rebuild from Kafka ---------------------------------------------------------------------------------------

    def rebuild_event(self, event: OrderEvent) -> None:
        """Apply one recorded event (topics are keyed by order id, so per-order order is preserved)."""
        order = self.orders.setdefault(event.order_id, OrderState(event.order_id, event.symbol, None))
        leg = order.legs.get(event.leg)
        if leg is None:
            leg = order.legs[event.leg] = LegState(event.leg, event.filled_quantity + event.remaining_quantity)
        if event.ib_order_id is not None:
            self._map(event.order_id, event.leg, event.ib_order_id)
            leg.ib_order_id = event.ib_order_id
        leg.perm_id = event.perm_id or leg.perm_id
        leg.status = event.status
        leg.filled = event.filled_quantity
        leg.avg_fill_price = event.avg_fill_price
        leg.broker_status = event.broker_status
        leg.last_event_id = event.event_id
        if event.status is OrderStatus.PENDING_SUBMIT:
            leg.quantity = event.filled_quantity + event.remaining_quantity

    def rebuild_execution(self, execution: Execution) -> None:
        """Apply one recorded fill."""
        self._count_fill(execution)

    # --- live -----------------------------------------------------------------------------------------------------

    def register(self, order_id: str, symbol: str, side: Side, legs: Iterable[tuple[OrderLeg, int, float]]) -> None:
        """Record the IB ids of an intent we are about to place (or re-place with the same ids)."""
        order = self.orders.setdefault(order_id, OrderState(order_id, symbol, side))
        order.side = side
        for leg, ib_id, quantity in legs:
            state = order.legs.setdefault(leg, LegState(leg, quantity))
            state.ib_order_id = ib_id
            self._map(order_id, leg, ib_id)

    def adopt(self, order_id: str, symbol: str, leg: OrderLeg, ib_id: int, quantity: float, perm_id: int) -> bool:
        """Map an IB order carrying our orderRef that we had no IB id for (found after a crash). True if new."""
        if self._by_ib_id.get(ib_id) == (order_id, leg):
            return False
        order = self.orders.setdefault(order_id, OrderState(order_id, symbol, None))
        state = order.legs.setdefault(leg, LegState(leg, quantity))
        state.ib_order_id, state.perm_id = ib_id, perm_id or state.perm_id
        self._map(order_id, leg, ib_id)
        return True

    def find(self, ib_order_id: int) -> tuple[OrderState, LegState] | None:
        """Our order and leg for an IB order id of our client."""
        found = self._by_ib_id.get(ib_order_id)
        if found is None:
            return None
        order = self.orders[found[0]]
        return order, order.legs[found[1]]

    def leg_fills(self, order_id: str, ib_order_id: int) -> float:
        """Shares of one IB order we hold executions for."""
        return self._fills.get((order_id, ib_order_id), 0.0)

    def report(
        self,
        order_id: str,
        leg: OrderLeg,
        status: OrderStatus,
        *,
        now: dt.datetime,
        source: ExecutionSource = ExecutionSource.LIVE,
        filled: float | None = None,
        avg_fill_price: float | None = None,
        perm_id: int | None = None,
        broker_status: str | None = None,
        broker_code: int | None = None,
        broker_message: str | None = None,
        reconciliation: str | None = None,
    ) -> Step:
        """Run the state machine for one reported status; return the event to publish (if it changes anything)."""
        order = self.orders[order_id]
        state = order.legs[leg]
        new_filled = state.filled if filled is None else filled
        verdict = judge(state.status, status, state.filled, new_filled)
        if verdict is Verdict.STALE and reconciliation is not None and status == state.status:
            # A reconciliation that confirms our state is still worth one record: the order's reconciliation status.
            verdict = Verdict.APPLY
        if verdict is Verdict.IMPOSSIBLE:
            return Step(
                impossible=f"{leg.value} {state.status.value if state.status else None}→{status.value} "
                f"(filled {state.filled:g}→{new_filled:g}, IB status {broker_status!r}, code {broker_code})"
            )
        identity = event_id(order_id, leg, status, new_filled, reconciliation)
        if verdict is Verdict.STALE or identity == state.last_event_id:
            return Step()
        previous = state.status
        state.status = status
        state.filled = new_filled
        state.avg_fill_price = avg_fill_price if avg_fill_price else state.avg_fill_price
        state.perm_id = perm_id or state.perm_id
        state.broker_status = broker_status or state.broker_status
        state.last_event_id = identity
        event = OrderEvent(
            event_id=identity,
            order_id=order_id,
            leg=leg,
            symbol=order.symbol,
            ib_order_id=state.ib_order_id,
            perm_id=state.perm_id,
            status=status,
            previous_status=previous,
            filled_quantity=new_filled,
            remaining_quantity=max(state.quantity - new_filled, 0.0),
            avg_fill_price=state.avg_fill_price,
            broker_status=broker_status,
            broker_code=broker_code,
            broker_message=broker_message,
            source=source,
            reconciliation_status=reconciliation,
            event_time=now,
        )
        return Step(event=event)

    def record_execution(self, execution: Execution) -> bool:
        """Count a fill once; False if its exec_id was already recorded."""
        if execution.exec_id in self.exec_ids:
            return False
        self._count_fill(execution)
        return True

    # --- internals ------------------------------------------------------------------------------------------------

    def _map(self, order_id: str, leg: OrderLeg, ib_id: int) -> None:
        self._by_ib_id[ib_id] = (order_id, leg)
        self.max_ib_order_id = max(self.max_ib_order_id, ib_id)

    def _count_fill(self, execution: Execution) -> None:
        if execution.exec_id in self.exec_ids:
            return
        self.exec_ids.add(execution.exec_id)
        signed = execution.quantity if execution.side is Side.BUY else -execution.quantity
        self.net[execution.symbol] = self.net.get(execution.symbol, 0.0) + signed
        if execution.ib_order_id is not None:
            key = (execution.order_id, execution.ib_order_id)
            self._fills[key] = self._fills.get(key, 0.0) + execution.quantity


def status_of_error(kind: CodeKind) -> OrderStatus | None:
    """The status an IB error about one of our orders ends it in, if any (warnings and info end nothing)."""
    return ERROR_KIND_STATUS.get(kind)


def execution_record(
    detail: events.ExecutionDetail,
    commission: events.CommissionReport | None,
    source: ExecutionSource,
    now: dt.datetime,
) -> Execution:
    """Our executions.v1 record for an IB execution (+ its commission report when it arrived)."""
    return Execution(
        exec_id=detail.exec_id,
        order_id=detail.order_ref,
        symbol=detail.symbol,
        account=detail.account,
        ib_order_id=detail.order_id,
        perm_id=detail.perm_id,
        side=IB_SIDE[detail.side.upper()],
        quantity=detail.shares,
        price=detail.price,
        cumulative_quantity=detail.cum_qty,
        avg_price=detail.avg_price,
        commission=commission.commission if commission is not None else None,
        commission_currency=commission.currency if commission is not None else None,
        realized_pnl=commission.realized_pnl if commission is not None else None,
        source=source,
        exec_time=parse_exec_time(detail.time),
        ingest_time=now,
    )


# --- reconciliation -------------------------------------------------------------------------------------------------


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


def reconcile(
    book: Book,
    snapshot: IbSnapshot,
    client_id: int,
    account: str,
    in_doubt: Iterable[str] = (),
) -> Reconciliation:
    """Compare our book with IB's answer. Rules:

    * an open IB order of our client carrying a known orderRef: adopt its id if we lacked it; its status is
      recorded as ``matched`` (same as ours) or ``recovered`` (IB moved on while we were not listening);
    * an IB execution of a known orderRef whose exec_id we never recorded is a missed fill: record it;
    * a leg we think is working that IB no longer lists is ``filled`` (recovered) when its executions cover its
      quantity, otherwise ``cancelled``: ``recovered`` when the bracket explains it (a sibling filled, or the
      parent ended), else ``mismatch`` with an alert; either way it is also cancelled at IB (``CancelRequest``);
    * an open IB order whose orderRef we do not know (nor hold in doubt from a crash) is unexplained: alert;
    * an IB position that differs from the net of our recorded executions is unexplained: alert.
    """
    result = Reconciliation()
    doubtful = set(in_doubt)
    ours_open: set[int] = set()
    for order in snapshot.open_orders:
        if order.order_ref in book.orders and order.client_id == client_id:
            leg = leg_of_ib_order(order.parent_id, order.order_type)
            ours_open.add(order.order_id)
            if book.find(order.order_id) is None:
                result.adoptions.append((order.order_ref, order.symbol, leg, order))
            status_update = snapshot.status_of(order)
            broker_status = status_update.status if status_update is not None else order.status
            filled = status_update.filled if status_update is not None else 0.0
            remaining = status_update.remaining if status_update is not None else order.quantity
            status = status_from_ib(broker_status, filled, remaining)
            if status is None:
                continue
            current = book.orders[order.order_ref].legs.get(leg)
            same = current is not None and current.status == status and abs(current.filled - filled) < QTY_EPSILON
            result.reports.append(
                StatusReport(
                    order.order_ref, leg, status, filled,
                    status_update.avg_fill_price if status_update is not None else None,
                    broker_status, MATCHED if same else RECOVERED,
                )
            )  # fmt: skip
        elif order.order_ref not in doubtful and order.order_ref not in book.orders:
            result.findings.append(
                Finding(
                    "unexplained_order",
                    f"IB has an open order we did not place: {order.action} {order.quantity:g} {order.symbol} "
                    f"(client {order.client_id}, id {order.order_id}, orderRef {order.order_ref!r})",
                    {"ib_order_id": str(order.order_id), "client_id": str(order.client_id),
                     "perm_id": str(order.perm_id), "order_ref": order.order_ref, "status": order.status},
                    symbol=order.symbol,
                )
            )  # fmt: skip

    new_fills: dict[tuple[str, int], float] = {}
    seen: set[str] = set()
    for detail in snapshot.executions:
        if detail.order_ref not in book.orders or detail.exec_id in book.exec_ids or detail.exec_id in seen:
            continue
        seen.add(detail.exec_id)
        result.executions.append(detail)
        key = (detail.order_ref, detail.order_id)
        new_fills[key] = new_fills.get(key, 0.0) + detail.shares

    for order_state in book.orders.values():
        closed = [o for o in order_state.open_legs() if o.ib_order_id and o.ib_order_id not in ours_open]
        for closed_leg in closed:
            assert closed_leg.ib_order_id is not None
            key = (order_state.order_id, closed_leg.ib_order_id)
            filled = max(closed_leg.filled, book.leg_fills(*key) + new_fills.get(key, 0.0))
            if filled + QTY_EPSILON >= closed_leg.quantity:
                result.reports.append(
                    StatusReport(
                        order_state.order_id, closed_leg.leg, OrderStatus.FILLED, filled, None, None, RECOVERED,
                        "filled while we were not listening (recovered from IB's executions)",
                    )
                )  # fmt: skip
                continue
            explained = _bracket_explains(order_state, closed_leg, book, new_fills)
            message = "no longer open at IB and its executions do not cover it: presumed cancelled" + (
                "" if explained else " (unexplained)"
            )
            result.reports.append(
                StatusReport(order_state.order_id, closed_leg.leg, OrderStatus.CANCELLED, filled, None, None,
                             RECOVERED if explained else MISMATCH, message)
            )  # fmt: skip
            result.cancels.append(CancelRequest(order_state.order_id, closed_leg.leg, closed_leg.ib_order_id))
            if not explained:
                result.findings.append(
                    Finding(
                        "order_missing_at_ib",
                        f"{closed_leg.leg.value} leg (IB id {closed_leg.ib_order_id}) {message}",
                        {"ib_order_id": str(closed_leg.ib_order_id), "filled": f"{filled:g}",
                         "quantity": f"{closed_leg.quantity:g}"},
                        order_id=order_state.order_id, symbol=order_state.symbol,
                    )
                )  # fmt: skip

    if snapshot.positions is not None:
        ib_net: dict[str, float] = {}
        for position in snapshot.positions:
            if position.account in ("", account):
                ib_net[position.symbol] = ib_net.get(position.symbol, 0.0) + position.quantity
        ours = dict(book.net)
        # Fills of intents in doubt are ours too: their routed order is re-delivered and adopted right after.
        in_doubt_fills = [d for d in snapshot.executions if d.order_ref in doubtful and d.exec_id not in book.exec_ids]
        for detail in [*result.executions, *{d.exec_id: d for d in in_doubt_fills}.values()]:
            signed = detail.shares if IB_SIDE[detail.side.upper()] is Side.BUY else -detail.shares
            ours[detail.symbol] = ours.get(detail.symbol, 0.0) + signed
        for symbol in sorted(set(ib_net) | set(ours)):
            theirs, mine = ib_net.get(symbol, 0.0), ours.get(symbol, 0.0)
            if abs(theirs - mine) > QTY_EPSILON:
                result.findings.append(
                    Finding(
                        "position_mismatch",
                        f"IB holds {theirs:g} {symbol}, our recorded executions explain {mine:g}",
                        {"ib_quantity": f"{theirs:g}", "our_quantity": f"{mine:g}", "account": account},
                        symbol=symbol,
                    )
                )
    return result


def _bracket_explains(order: OrderState, leg: LegState, book: Book, new_fills: dict[tuple[str, int], float]) -> bool:
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
