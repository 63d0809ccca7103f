"""The core matching engine (``ibstream.sim``) as the backtest's IB.

A routed order goes in as the execution consumer's tickets (``ibstream.ib.brackets.plan_legs``: a parent and its
stop-loss and take-profit legs, the last one transmitting the bracket); the engine's events come back as the
records execution would publish from IB's callbacks, as much of them as orchestration and risk read: an
``OrderEvent`` per leg step, an ``Execution`` per fill (commission and realized P&L from the ledger) and the
symbol's ``Position`` after it. IB order ids are numbered from 1 in placement order, so a backtest is repeatable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ibstream.contracts import AccountState, Execution, OrderEvent, Position, RoutedOrder
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus, Side
from ibstream.ib.brackets import legs_of, plan_legs
from ibstream.ib.session import OrderTicket
from ibstream.sim.ledger import CommissionSchedule
from ibstream.sim.market_view import MarketView
from ibstream.sim.matching import (
    Event,
    MatchingEngine,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderSnapshot,
)

#: The backtest's account id (every record it makes carries it).
ACCOUNT = "BACKTEST"
CLIENT_ID = 0
_NAMESPACE = uuid.UUID("0f3b8f52-7d7a-4c59-9a57-5b0a3d1e2c44")
#: The engine's statuses that end an order, as execution reports them (the rest are working: nothing to report).
_ENDED = {"Filled": OrderStatus.FILLED, "Cancelled": OrderStatus.CANCELLED, "ApiCancelled": OrderStatus.CANCELLED}


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def request_of(ticket: OrderTicket, ib_order_id: int, symbol: str, con_id: int) -> OrderRequest:
    """The ``placeOrder`` the engine takes for a ticket (the fields ``OrderTicket.to_ibapi`` sends)."""
    return OrderRequest(
        order_id=ib_order_id,
        client_id=CLIENT_ID,
        con_id=con_id,
        symbol=symbol,
        action=ticket.action,
        quantity=ticket.quantity,
        order_type=ticket.order_type,
        lmt_price=ticket.limit_price,
        aux_price=ticket.aux_price,
        tif=ticket.time_in_force,
        oca_group=ticket.oca_group,
        account=ticket.account,
        order_ref=ticket.order_ref,
        transmit=ticket.transmit,
        parent_id=ticket.parent_id,
        outside_rth=ticket.outside_rth,
        oca_type=ticket.oca_type,
        trail_stop_price=ticket.trail_stop_price,
        trailing_percent=ticket.trailing_percent,
        algo_strategy=ticket.algo_strategy,
        algo_params=ticket.algo_params,
    )


@dataclass(frozen=True)
class Fill:
    """One execution of one leg, with the records it produced."""

    leg: OrderLeg
    execution: Execution
    position: Position


BrokerRecord = OrderEvent | Fill


class SimBroker:
    """Routed orders in, the records of their steps out; ``account_state`` reads the ledger."""

    def __init__(
        self,
        market: MarketView,
        marks: Callable[[str], float],
        initial_cash: float,
        commissions: CommissionSchedule | None = None,
    ) -> None:
        self.engine = MatchingEngine(market, ACCOUNT, con_ids={}, commissions=commissions, initial_cash=initial_cash)
        self._marks = marks
        self._next_id = 1
        self._legs: dict[int, OrderLeg] = {}
        self._con_ids: dict[str, int] = {}

    def place(self, order: RoutedOrder, now: float) -> list[BrokerRecord]:
        """Place the order's legs as execution would (IB order ids in placement order)."""
        ids = list(range(self._next_id, self._next_id + len(legs_of(order))))
        self._next_id += len(ids)
        con_id = self._con_ids.setdefault(order.symbol, len(self._con_ids) + 1)
        records: list[BrokerRecord] = []
        for plan in plan_legs(order, ids, ACCOUNT):
            self._legs[plan.ib_order_id] = plan.leg
            events = self.engine.place(request_of(plan.ticket, plan.ib_order_id, order.symbol, con_id), now)
            records += self._records(events, now)
        return records

    def advance(self, now: float) -> list[BrokerRecord]:
        """Match the working orders up to ``now`` (every second since the previous call)."""
        return self._records(self.engine.advance(now), now)

    def _records(self, events: list[Event], now: float) -> list[BrokerRecord]:
        records: list[BrokerRecord] = []
        for event in events:
            if isinstance(event, OrderFilled):
                records.append(self._fill(event))
                if event.order.status == "Filled":
                    records.append(self._event(event.order, OrderStatus.FILLED, event.execution.time))
            elif isinstance(event, OrderCancelled):
                records.append(self._event(event.order, _ENDED.get(event.order.status, OrderStatus.CANCELLED), now))
            elif isinstance(event, OrderRejected) and event.order is not None:
                records.append(
                    self._event(event.order, OrderStatus.REJECTED, now, code=event.code, message=event.message)
                )
        return records

    def _event(
        self, order: OrderSnapshot, status: OrderStatus, at: float, code: int | None = None, message: str | None = None
    ) -> OrderEvent:
        leg = self._legs.get(order.order_id, OrderLeg.PARENT)
        ref = order.order_ref
        return OrderEvent(
            event_id=str(uuid.uuid5(_NAMESPACE, f"{ref}|{leg.value}|{status.value}|{order.filled:.6f}")),
            order_id=ref,
            leg=leg,
            symbol=order.request.symbol,
            ib_order_id=order.order_id,
            perm_id=order.perm_id,
            status=status,
            filled_quantity=order.filled,
            remaining_quantity=order.remaining,
            avg_fill_price=order.avg_fill_price or None,
            broker_status=order.status,
            broker_code=code,
            broker_message=message,
            source=ExecutionSource.LIVE,
            event_time=_time(at),
        )

    def _fill(self, event: OrderFilled) -> Fill:
        fill = event.execution
        at = _time(fill.time)
        execution = Execution(
            exec_id=fill.exec_id,
            order_id=fill.order_ref,
            symbol=fill.symbol,
            account=ACCOUNT,
            ib_order_id=fill.order_id,
            perm_id=fill.perm_id,
            side=Side.BUY if fill.side == "BOT" else Side.SELL,
            quantity=fill.shares,
            price=fill.price,
            cumulative_quantity=fill.cum_qty,
            avg_price=fill.avg_price,
            commission=fill.commission,
            commission_currency="USD",
            realized_pnl=fill.realized_pnl,
            source=ExecutionSource.LIVE,
            exec_time=at,
            ingest_time=at,
        )
        return Fill(self._legs.get(fill.order_id, OrderLeg.PARENT), execution, self.position(fill.symbol, at))

    def position(self, symbol: str, at: datetime) -> Position:
        """The symbol's net position as IB reports it."""
        held = next((p for p in self.engine.positions() if p.symbol == symbol), None)
        quantity = held.quantity if held is not None else 0.0
        avg_cost = held.avg_cost if held is not None else 0.0
        mark = self._marks(symbol)
        return Position(
            account=ACCOUNT,
            symbol=symbol,
            con_id=self._con_ids.get(symbol, 0),
            quantity=quantity,
            avg_cost=avg_cost,
            market_price=mark,
            unrealized_pnl=quantity * (mark - avg_cost),
            source=ExecutionSource.LIVE,
            time=at,
        )

    def net_liquidation(self) -> float:
        return self.engine.account_values(self._marks)["NetLiquidation"]

    def account_state(self, at: datetime) -> AccountState:
        """The account's values now, as execution publishes them on account.v1."""
        values = self.engine.account_values(self._marks)
        return AccountState(
            account=ACCOUNT,
            base_currency="USD",
            net_liquidation=values["NetLiquidation"],
            buying_power=values["BuyingPower"],
            available_funds=values["AvailableFunds"],
            excess_liquidity=values["ExcessLiquidity"],
            gross_position_value=values["GrossPositionValue"],
            unrealized_pnl=values["UnrealizedPnL"],
            realized_pnl=values["RealizedPnL"],
            time=at,
        )
