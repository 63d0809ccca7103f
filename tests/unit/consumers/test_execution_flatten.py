"""Execution and flatten orders (``flatten_id`` set): placed while the scope is halted, left working by the kill switch,
and once filled, the symbol's protective legs are cancelled."""

from __future__ import annotations

from pathlib import Path

from consumers.execution.flatten import flatten_outcome, protective_legs
from consumers.execution.state import Book
from ibstream.contracts.enums import ControlCommandKind, OrderLeg, OrderStatus, Side, TradingState
from tests.unit.consumers.test_execution import NOW, control_command, reconciling_executor, routed

S = OrderStatus


def filled_bracket(book: Book, order_id: str, symbol: str, first_ib_id: int) -> None:
    """An entry filled, its stop loss and take profit working (IB ids first, +1, +2)."""
    legs = [(OrderLeg.PARENT, first_ib_id, 10), (OrderLeg.STOP_LOSS, first_ib_id + 1, 10)]
    legs.append((OrderLeg.TAKE_PROFIT, first_ib_id + 2, 10))
    book.register(order_id, symbol, Side.BUY, legs)
    book.report(order_id, OrderLeg.PARENT, S.FILLED, filled=10, now=NOW)
    for leg in (OrderLeg.STOP_LOSS, OrderLeg.TAKE_PROFIT):
        book.report(order_id, leg, S.ACKNOWLEDGED, now=NOW)


def test_a_flatten_is_placed_while_halted_and_the_kill_switch_leaves_it_working(tmp_path: Path) -> None:
    executor, session = reconciling_executor(tmp_path, Book())
    executor.kill_switch.on_command(control_command(ControlCommandKind.KILL_SWITCH_ON, "global", 10), trading=True)
    executor.kill_switch.on_command(
        control_command(ControlCommandKind.TRADING_STATE, "AAPL", 11, TradingState.HALTED), trading=True
    )
    entry = routed(quantity=10)
    flatten = routed(side=Side.SELL, quantity=10, flatten_id="cmd-1")

    assert executor.placement.place(entry) and executor.placement.place(flatten)

    assert [(ticket.action, ticket.order_type, ticket.quantity) for _, ticket in session.placed] == [
        ("SELL", "MKT", 10)
    ]
    assert executor.book.orders[entry.order_id].legs[OrderLeg.PARENT].status is S.REJECTED
    assert executor.ctx.flatten_orders == {flatten.order_id: "AAPL"}
    flatten_ib_id = session.placed[0][0]
    executor.book.report(flatten.order_id, OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW)
    executor.kill_switch.cancel_all()  # as after every reconciliation
    assert flatten_ib_id not in session.cancelled


def test_a_filled_flatten_cancels_the_protective_legs_of_its_symbol_only(tmp_path: Path) -> None:
    book = Book()
    filled_bracket(book, "aapl-entry", "AAPL", 1)
    filled_bracket(book, "msft-entry", "MSFT", 4)
    # A working AAPL entry, nothing filled: its children protect nothing yet and stay with it.
    book.register("aapl-working", "AAPL", Side.BUY, [(OrderLeg.PARENT, 10, 10), (OrderLeg.STOP_LOSS, 11, 10)])
    for leg in (OrderLeg.PARENT, OrderLeg.STOP_LOSS):
        book.report("aapl-working", leg, S.ACKNOWLEDGED, now=NOW)
    book.register("flat", "AAPL", Side.SELL, [(OrderLeg.PARENT, 7, 10)])
    book.report("flat", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW)
    executor, session = reconciling_executor(tmp_path, book)
    executor.ctx.flatten_orders["flat"] = "AAPL"

    assert executor.flattens.sweep() == 0  # still working: the stop still protects the position
    assert session.cancelled == []
    book.report("flat", OrderLeg.PARENT, S.FILLED, filled=10, now=NOW)
    assert flatten_outcome(book, "flat") is S.FILLED

    assert executor.flattens.sweep() == 2
    assert sorted(session.cancelled) == [2, 3]
    assert executor.ctx.flatten_orders == {}
    assert executor.flattens.sweep() == 0  # done once


def test_a_flatten_that_ended_unfilled_keeps_the_protective_legs(tmp_path: Path) -> None:
    book = Book()
    filled_bracket(book, "aapl-entry", "AAPL", 1)
    book.register("flat", "AAPL", Side.SELL, [(OrderLeg.PARENT, 7, 10)])
    book.report("flat", OrderLeg.PARENT, S.REJECTED, now=NOW)
    executor, session = reconciling_executor(tmp_path, book)
    executor.ctx.flatten_orders["flat"] = "AAPL"
    assert executor.flattens.sweep() == 0
    assert session.cancelled == [] and executor.ctx.flatten_orders == {}
    assert [(o, leg.leg) for o, leg in protective_legs(book, "AAPL", "flat")] == [
        ("aapl-entry", OrderLeg.STOP_LOSS),
        ("aapl-entry", OrderLeg.TAKE_PROFIT),
    ]
