"""The pure parts of ``/v1/positions`` and ``/v1/account``: which legs protect a position, how it is marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.queries.account import account_view
from api.queries.positions import LegRow, Mark, assemble, ib_marks, protective
from ibstream.contracts import AccountState, Position, PositionPnL
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def leg(leg: OrderLeg, status: OrderStatus, entry: OrderStatus | None, symbol: str = "AAPL") -> LegRow:
    return LegRow("o1", symbol, leg, status, 7, 10.0, entry, stop_loss=95.0, take_profit=110.0)


@pytest.mark.parametrize(
    ("row", "price"),
    [
        (leg(OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, OrderStatus.FILLED), 95.0),
        (leg(OrderLeg.TAKE_PROFIT, OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED), 110.0),
        (leg(OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, OrderStatus.SUBMITTED), None),  # entry not filled
        (leg(OrderLeg.STOP_LOSS, OrderStatus.CANCELLED, OrderStatus.FILLED), None),  # no longer working
        (leg(OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, None), None),  # entry unknown
        (leg(OrderLeg.PARENT, OrderStatus.FILLED, OrderStatus.FILLED), None),  # the entry itself
    ],
)
def test_only_working_children_of_filled_entries_protect(row: LegRow, price: float | None) -> None:
    found = protective(row)
    assert (found.price if found else None) == price


def position(symbol: str, quantity: float, avg_cost: float) -> Position:
    return Position(
        account="DU1",
        symbol=symbol,
        con_id=1,
        quantity=quantity,
        avg_cost=avg_cost,
        source=ExecutionSource.LIVE,
        time=T0,
    )


def test_short_positions_mark_to_a_negative_value_and_unmarked_ones_have_no_pnl() -> None:
    listed = assemble(
        [position("TSLA", -10, 200.0), position("AAPL", 5, 100.0), position("MSFT", 0, 0.0)],
        {"TSLA": Mark(190.0, T0)},
        {("DU1", "TSLA"): 3.5},
        [leg(OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, OrderStatus.FILLED, symbol="TSLA")],
    )
    aapl, tsla = listed.items
    assert (tsla.market_value, tsla.unrealized_pnl, tsla.realized_pnl) == (-1900.0, 100.0, 3.5)
    assert [o.leg for o in tsla.protective_orders] == [OrderLeg.STOP_LOSS]
    assert (aapl.market_price, aapl.unrealized_pnl, aapl.realized_pnl, aapl.protective_orders) == (None, None, None, [])
    assert len(assemble([position("MSFT", 0, 0.0)], {}, {}, [], include_flat=True).items) == 1


def test_account_age_counts_from_the_state_time_and_is_never_negative() -> None:
    state = AccountState(
        account="DU1",
        base_currency="USD",
        net_liquidation=1.0,
        buying_power=1.0,
        available_funds=1.0,
        excess_liquidity=1.0,
        gross_position_value=0.0,
        time=T0,
    )
    assert account_view(state, T0 + timedelta(seconds=42)).age_seconds == 42.0
    assert account_view(state, T0 - timedelta(seconds=3)).age_seconds == 0.0


def test_ib_marks_a_position_only_when_its_numbers_are_for_the_same_quantity() -> None:
    state = AccountState(
        account="DU1",
        base_currency="USD",
        net_liquidation=1.0,
        buying_power=1.0,
        available_funds=1.0,
        excess_liquidity=1.0,
        gross_position_value=0.0,
        positions=[
            PositionPnL(symbol="AAPL", con_id=1, position=5, daily_pnl=3.0, unrealized_pnl=4.0, market_value=520.0),
            PositionPnL(symbol="TSLA", con_id=2, position=-3, unrealized_pnl=9.0, market_value=-570.0),
        ],
        time=T0,
    )
    listed = assemble(
        [position("AAPL", 5, 103.2), position("TSLA", -10, 200.0)],
        {"AAPL": Mark(99.0, T0), "TSLA": Mark(190.0, T0)},
        {},
        [],
        ib=ib_marks([state]),
    )
    aapl, tsla = listed.items
    assert (aapl.mark_source, aapl.market_price, aapl.market_value, aapl.unrealized_pnl, aapl.daily_pnl) == (
        "ib",
        104.0,
        520.0,
        4.0,
        3.0,
    )
    assert (tsla.mark_source, tsla.market_value, tsla.unrealized_pnl) == ("quotes", -1900.0, 100.0)
