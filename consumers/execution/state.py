"""What the executor knows about its orders: the book and its order state machine (``reconciliation`` compares it
with IB's view).

The book is rebuilt at startup from ``orders.events.v1`` and ``executions.v1`` (read committed) and then kept up to
date from IB's callbacks. Nothing here does I/O: the service feeds it events and publishes what it returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.execution.mapping import ERROR_KIND_STATUS, IB_SIDE, TERMINAL, Verdict, event_id, judge, parse_exec_time
from ibstream.contracts import Execution, OrderEvent
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus, Side
from ibstream.ib import events
from ibstream.ib.codes import CodeKind


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
    #: The time of that event: a leg's events never go back in time (an IB answer stamped on arrival by the reader
    #: thread can precede, by microseconds, the time our loop stamped on the placeOrder that caused it).
    last_event_time: dt.datetime | None = None

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
        leg.last_event_time = event.event_time
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
        if state.last_event_time is not None and now < state.last_event_time:
            now = state.last_event_time
        state.last_event_time = now
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
