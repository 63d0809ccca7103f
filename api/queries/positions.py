"""Position reads: each symbol's newest ``positions.v1`` record, marked by IB (the newest ``account.v1`` record's
reqPnLSingle numbers, when they are for the same position) or else at the newest quote, with the realized P&L of its
executions and the protective orders still working for it.

A protective order is a stop-loss or take-profit leg (``orders.events.v1``) whose latest status is a working one,
of an order whose entry (parent leg) has filled or partly filled; its price is the stop-loss or take-profit of the
order's terms. The SQL gathers the rows; :func:`assemble` (pure) decides what they mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.models import PositionList, PositionView, ProtectiveOrder
from api.queries.common import topic_table
from ibstream.contracts import (
    AccountState,
    Position,
    PositionPnL,
    account_states,
    executions,
    order_events,
    order_intents,
    positions,
    quotes,
)
from ibstream.contracts.enums import OrderLeg, OrderStatus
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import quote_ident

#: Statuses of a child leg that still protects the position.
WORKING = frozenset(
    {OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMITTED, OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED}
)
#: Statuses of an entry whose position exists (its children are live).
ENTERED = frozenset({OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED})
#: How far back a quote may be to mark a position (a weekend and a holiday).
MARK_LOOKBACK = timedelta(days=4)

_LATEST = "(event_time, _kafka_ts, _offset)"


@dataclass(frozen=True)
class Mark:
    price: float
    time: datetime


def ib_marks(states: Sequence[AccountState]) -> dict[tuple[str, str], tuple[PositionPnL, datetime]]:
    """Each account's reqPnLSingle numbers by (account, symbol), with the time IB's values were read."""
    return {(s.account, p.symbol): (p, s.time) for s in states for p in s.positions}


def _view(
    p: Position,
    mark: Mark | None,
    ib: tuple[PositionPnL, datetime] | None,
    realized: float | None,
    guards: list[ProtectiveOrder],
) -> PositionView:
    """One position: IB's numbers when they are for this very position (same quantity), else the quote's mark."""
    base: dict[str, Any] = {
        "account": p.account,
        "symbol": p.symbol,
        "quantity": p.quantity,
        "avg_cost": p.avg_cost,
        "position_time": p.time,
        "realized_pnl": realized,
        "protective_orders": sorted(guards, key=lambda o: (o.order_id, o.leg.value)),
    }
    value: float | None
    if ib is not None and ib[0].position == p.quantity and p.quantity and ib[0].market_value is not None:
        pnl, read_at = ib
        value = ib[0].market_value
        return PositionView(
            **base,
            market_price=value / p.quantity,
            mark_time=read_at,
            mark_source="ib",
            market_value=value,
            unrealized_pnl=pnl.unrealized_pnl,
            daily_pnl=pnl.daily_pnl,
        )
    value = p.quantity * mark.price if mark is not None else None
    return PositionView(
        **base,
        market_price=mark.price if mark else None,
        mark_time=mark.time if mark else None,
        mark_source="quotes" if mark else None,
        market_value=value,
        unrealized_pnl=value - p.quantity * p.avg_cost if value is not None else None,
        daily_pnl=None,
    )


@dataclass(frozen=True)
class LegRow:
    """One order leg's latest state, with its entry's latest status and the order's protective prices."""

    order_id: str
    symbol: str
    leg: OrderLeg
    status: OrderStatus
    ib_order_id: int | None
    remaining_quantity: float | None
    entry_status: OrderStatus | None
    stop_loss: float | None
    take_profit: float | None


def protective(row: LegRow) -> ProtectiveOrder | None:
    """The leg as a protective order, or None if it is an entry, no longer working, or its entry has not filled."""
    if row.leg is OrderLeg.PARENT or row.status not in WORKING or row.entry_status not in ENTERED:
        return None
    price = row.stop_loss if row.leg is OrderLeg.STOP_LOSS else row.take_profit
    return ProtectiveOrder(
        order_id=row.order_id,
        leg=row.leg,
        status=row.status,
        ib_order_id=row.ib_order_id,
        price=price,
        remaining_quantity=row.remaining_quantity,
    )


def assemble(
    held: Sequence[Position],
    marks: Mapping[str, Mark],
    realized: Mapping[tuple[str, str], float],
    legs: Sequence[LegRow],
    include_flat: bool = False,
    ib: Mapping[tuple[str, str], tuple[PositionPnL, datetime]] | None = None,
) -> PositionList:
    """Positions by account and symbol with mark, market value, P&L and protective orders."""
    guards: dict[str, list[ProtectiveOrder]] = {}
    for row in legs:
        order = protective(row)
        if order is not None:
            guards.setdefault(row.symbol, []).append(order)
    items = [
        _view(
            p,
            marks.get(p.symbol),
            (ib or {}).get((p.account, p.symbol)),
            realized.get((p.account, p.symbol)),
            guards.get(p.symbol, []),
        )
        for p in sorted(held, key=lambda p: (p.account, p.symbol))
        if p.quantity != 0 or include_flat
    ]
    return PositionList(items=items)


def newest_account_states(warehouse: Warehouse) -> list[AccountState]:
    """The newest account.v1 record per account."""
    table = warehouse.schema.for_topic(account_states.TOPIC)
    names = ", ".join(quote_ident(column.name) for column in table.columns)
    sql = (
        f"SELECT {names} FROM {topic_table(warehouse, account_states.TOPIC)} "
        "ORDER BY time DESC, _kafka_ts DESC, _offset DESC LIMIT 1 BY account"
    )
    rows = warehouse.query(sql, {}, column_formats=table.column_formats()).rows
    return [table.from_row(row) for row in rows]  # type: ignore[misc]  # from_row builds spec.record


def newest_positions(warehouse: Warehouse) -> list[Position]:
    """The newest positions.v1 record per account and symbol."""
    table = warehouse.schema.for_topic(positions.TOPIC)
    names = ", ".join(quote_ident(column.name) for column in table.columns)
    sql = (
        f"SELECT {names} FROM {topic_table(warehouse, positions.TOPIC)} "
        "ORDER BY time DESC, _kafka_ts DESC, _offset DESC LIMIT 1 BY account, symbol"
    )
    rows = warehouse.query(sql, {}, column_formats=table.column_formats()).rows
    return [table.from_row(row) for row in rows]  # type: ignore[misc]  # from_row builds spec.record


def quote_marks(warehouse: Warehouse, symbols: Sequence[str], now: datetime) -> dict[str, Mark]:
    """The newest quote's last (mid without one) per symbol, from quotes no older than :data:`MARK_LOOKBACK`."""
    if not symbols:
        return {}
    parameters: dict[str, Any] = {f"s{i}": s for i, s in enumerate(symbols)}
    parameters["since_us"] = int((now - MARK_LOOKBACK).timestamp() * 1_000_000)
    listed = ", ".join(f"{{s{i}:String}}" for i in range(len(symbols)))
    sql = f"""
        SELECT symbol, argMax(coalesce({quote_ident("last")}, (bid + ask) / 2), event_time) AS price,
               max(event_time) AS time
        FROM {topic_table(warehouse, quotes.TOPIC)}
        WHERE symbol IN ({listed}) AND toUnixTimestamp64Micro(event_time) >= {{since_us:Int64}}
          AND ({quote_ident("last")} IS NOT NULL OR (bid IS NOT NULL AND ask IS NOT NULL))
        GROUP BY symbol
    """
    marks: dict[str, Mark] = {}
    for row in warehouse.query(sql, parameters).dicts():
        time = row["time"] if row["time"].tzinfo else row["time"].replace(tzinfo=UTC)
        marks[row["symbol"]] = Mark(float(row["price"]), time)
    return marks


def realized_by_symbol(warehouse: Warehouse) -> dict[tuple[str, str], float]:
    """IB's realized P&L summed per account and symbol over the recorded executions (each execution once)."""
    sql = f"""
        SELECT account, symbol, sum(realized_pnl) AS realized
        FROM (SELECT account, symbol, realized_pnl FROM {topic_table(warehouse, executions.TOPIC)} FINAL
              ORDER BY _kafka_ts, _offset LIMIT 1 BY exec_id)
        WHERE realized_pnl IS NOT NULL
        GROUP BY account, symbol
    """
    return {(row["account"], row["symbol"]): float(row["realized"]) for row in warehouse.query(sql, {}).dicts()}


def order_legs(warehouse: Warehouse) -> list[LegRow]:
    """Every child leg whose latest status is working, with its entry's latest status and the order's prices."""
    events_table = topic_table(warehouse, order_events.TOPIC)
    working = ", ".join(f"'{status.value}'" for status in sorted(WORKING))
    sql = f"""
        SELECT c.order_id AS order_id, c.symbol AS symbol, c.leg AS leg, c.status AS status,
               c.ib_order_id AS ib_order_id, c.remaining AS remaining_quantity, p.status AS entry_status,
               i.stop_loss AS stop_loss, i.take_profit AS take_profit
        FROM (
            SELECT order_id, toString(leg) AS leg, any(symbol) AS symbol,
                   argMax(toString(status), {_LATEST}) AS status, argMax(ib_order_id, {_LATEST}) AS ib_order_id,
                   argMax(remaining_quantity, {_LATEST}) AS remaining
            FROM {events_table} FINAL WHERE leg != 'parent' GROUP BY order_id, leg
        ) AS c
        LEFT JOIN (
            SELECT order_id, argMax(toString(status), {_LATEST}) AS status
            FROM {events_table} FINAL WHERE leg = 'parent' GROUP BY order_id
        ) AS p ON p.order_id = c.order_id
        LEFT JOIN (
            SELECT order_id, any(stop_loss) AS stop_loss, any(take_profit) AS take_profit
            FROM {topic_table(warehouse, order_intents.TOPIC)} FINAL GROUP BY order_id
        ) AS i ON i.order_id = c.order_id
        WHERE c.status IN ({working})
        SETTINGS join_use_nulls = 1
    """
    return [
        LegRow(
            order_id=row["order_id"],
            symbol=row["symbol"],
            leg=OrderLeg(row["leg"]),
            status=OrderStatus(row["status"]),
            ib_order_id=row["ib_order_id"],
            remaining_quantity=row["remaining_quantity"],
            entry_status=OrderStatus(row["entry_status"]) if row["entry_status"] else None,
            stop_loss=row["stop_loss"],
            take_profit=row["take_profit"],
        )
        for row in warehouse.query(sql, {}).dicts()
    ]


def list_positions(warehouse: Warehouse, now: datetime, include_flat: bool = False) -> PositionList:
    held = newest_positions(warehouse)
    symbols = sorted({p.symbol for p in held if p.quantity != 0 or include_flat})
    return assemble(
        held,
        quote_marks(warehouse, symbols, now),
        realized_by_symbol(warehouse),
        order_legs(warehouse),
        include_flat,
        ib_marks(newest_account_states(warehouse)),
    )
