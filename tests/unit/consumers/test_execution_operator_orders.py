"""Operator cancels judged from the book (consumers/execution/operator_orders.py), with plain values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from consumers.execution.journal import Journal
from consumers.execution.operator_orders import (
    CancelRequest,
    fresh,
    noop_event,
    plan_cancel_all,
    plan_cancel_order,
    plan_modify,
)
from consumers.execution.service import Executor, State
from consumers.execution.state import Book, LegState, OrderState
from ibstream.config import load_settings
from ibstream.contracts import ControlCommand, RiskCheck, RiskDecision
from ibstream.contracts.enums import ControlCommandKind, OrderLeg, OrderStatus, OrderType, Side
from ibstream.contracts.order_terms import OrderTerms, terms_digest
from ibstream.order_modifications import modification_decision_id, terms_parameters
from tests.fake_ib import FakeIbSession

NOW = dt.datetime(2025, 1, 6, 15, 0, tzinfo=dt.UTC)


def order(order_id: str, symbol: str, *legs: tuple[OrderLeg, int, OrderStatus, float]) -> OrderState:
    state = OrderState(order_id, symbol, Side.BUY)
    for leg, ib_id, status, filled in legs:
        state.legs[leg] = LegState(leg, 10, ib_order_id=ib_id, status=status, filled=filled)
    return state


def command(kind: ControlCommandKind, target: str, issued: dt.datetime = NOW) -> ControlCommand:
    return ControlCommand(
        command_id="c1", command=kind, target=target, reason="why", actor="tom", parameters={}, issued_time=issued
    )


WORKING = (OrderLeg.PARENT, 5, OrderStatus.ACKNOWLEDGED, 0.0)


def test_a_working_entry_is_cancelled_by_its_parent_and_children_go_with_it() -> None:
    bracket = order(
        "o1",
        "AAPL",
        WORKING,
        (OrderLeg.STOP_LOSS, 6, OrderStatus.SUBMITTED, 0.0),
        (OrderLeg.TAKE_PROFIT, 7, OrderStatus.SUBMITTED, 0.0),
    )
    plan = plan_cancel_order(bracket)
    assert plan.requests == (CancelRequest("o1", OrderLeg.PARENT, 5),) and plan.noop is None
    assert not plan.unprotected


def test_a_partly_filled_bracket_entry_is_cancelled_but_flagged_unprotected() -> None:
    partly = order(
        "o1",
        "AAPL",
        (OrderLeg.PARENT, 5, OrderStatus.PARTIALLY_FILLED, 4.0),
        (OrderLeg.STOP_LOSS, 6, OrderStatus.SUBMITTED, 0.0),
    )
    plan = plan_cancel_order(partly)
    assert plan.requests == (CancelRequest("o1", OrderLeg.PARENT, 5),) and plan.unprotected


def test_a_filled_entry_is_a_noop_that_keeps_its_protective_legs() -> None:
    filled = order(
        "o1",
        "AAPL",
        (OrderLeg.PARENT, 5, OrderStatus.FILLED, 10.0),
        (OrderLeg.STOP_LOSS, 6, OrderStatus.SUBMITTED, 0.0),
    )
    plan = plan_cancel_order(filled)
    assert plan.requests == ()
    assert plan.noop == "order is filled, not working; its protective legs stay (flatten closes the position)"


def test_an_order_the_book_does_not_hold_is_unknown() -> None:
    assert plan_cancel_order(None).unknown


def test_cancel_all_takes_working_entries_and_stray_children_of_its_scope_only() -> None:
    book = Book()
    book.orders = {
        "entry": order("entry", "MSFT", WORKING),
        "held": order(
            "held",
            "MSFT",
            (OrderLeg.PARENT, 8, OrderStatus.FILLED, 10.0),
            (OrderLeg.STOP_LOSS, 9, OrderStatus.SUBMITTED, 0),
        ),
        "stray": order(
            "stray",
            "MSFT",
            (OrderLeg.PARENT, 10, OrderStatus.CANCELLED, 0.0),
            (OrderLeg.STOP_LOSS, 11, OrderStatus.SUBMITTED, 0.0),
        ),
        "other": order("other", "AAPL", (OrderLeg.PARENT, 12, OrderStatus.SUBMITTED, 0.0)),
    }
    assert plan_cancel_all(book, "MSFT", "DU1") == [
        CancelRequest("entry", OrderLeg.PARENT, 5),
        CancelRequest("stray", OrderLeg.STOP_LOSS, 11),
    ]
    assert {r.order_id for r in plan_cancel_all(book, "account", "DU1")} == {"entry", "stray", "other"}
    assert {r.order_id for r in plan_cancel_all(book, "DU1", "DU1")} == {"entry", "stray", "other"}


def test_a_replayed_cancel_all_is_fresh_only_within_the_max_age() -> None:
    recent = command(ControlCommandKind.CANCEL_ALL, "MSFT", NOW - dt.timedelta(seconds=299))
    old = command(ControlCommandKind.CANCEL_ALL, "MSFT", NOW - dt.timedelta(seconds=301))
    assert fresh(recent, NOW, 300) and not fresh(old, NOW, 300)


def test_the_noop_record_keeps_the_status_and_says_why() -> None:
    filled = order("o1", "AAPL", (OrderLeg.PARENT, 5, OrderStatus.FILLED, 10.0))
    event = noop_event(filled, command(ControlCommandKind.CANCEL_ORDER, "o1"), "order is filled, not working", NOW)
    assert event is not None
    assert (event.status, event.previous_status, event.filled_quantity, event.remaining_quantity) == (
        OrderStatus.FILLED,
        OrderStatus.FILLED,
        10.0,
        0.0,
    )
    assert event.broker_message == "cancel_order by tom not applied: order is filled, not working"
    again = noop_event(filled, command(ControlCommandKind.CANCEL_ORDER, "o1"), "order is filled, not working", NOW)
    assert again is not None and again.event_id == event.event_id  # a re-emit after a crash is the same record


def modification(
    state: OrderState, approved: bool = True, digest_of: dict[str, object] | None = None, **changes: object
) -> tuple[ControlCommand, RiskDecision]:
    base = {
        "symbol": state.symbol,
        "side": Side.BUY,
        "quantity": 10.0,
        "order_type": OrderType.LMT,
        "limit_price": 100.0,
        "stop_loss": 98.0,
    }
    terms = OrderTerms(**{**base, **changes})
    modify = command(ControlCommandKind.MODIFY_ORDER, state.order_id).model_copy(
        update={"parameters": terms_parameters(terms, sorted(changes))}
    )
    decision = RiskDecision(
        decision_id=modification_decision_id(modify.command_id),
        order_id=state.order_id,
        symbol=state.symbol,
        approved=approved,
        checks=[RiskCheck(name="price_band", passed=approved, reason="r")],
        intent_time=NOW,
        decided_time=NOW,
        terms_digest=terms_digest(OrderTerms(**{**base, **changes, **(digest_of or {})})),
    )
    return modify, decision


def bracket_order(parent_status: OrderStatus = OrderStatus.ACKNOWLEDGED, filled: float = 0.0) -> OrderState:
    return order(
        "o1", "AAPL", (OrderLeg.PARENT, 5, parent_status, filled), (OrderLeg.STOP_LOSS, 6, OrderStatus.SUBMITTED, 0.0)
    )


def test_an_approved_modification_resends_every_leg_with_its_ib_id_and_the_new_terms() -> None:
    state = bracket_order()
    plan = plan_modify(state, *modification(state, quantity=8.0, limit_price=99.5, stop_loss=97.0), "DU1")
    assert plan.refusal is None
    assert [(leg.leg, leg.ib_order_id) for leg in plan.legs] == [(OrderLeg.PARENT, 5), (OrderLeg.STOP_LOSS, 6)]
    parent, stop = (leg.ticket for leg in plan.legs)
    assert (parent.quantity, parent.limit_price, stop.quantity, stop.aux_price) == (8.0, 99.5, 8.0, 97.0)


@pytest.mark.parametrize(
    ("state", "kwargs", "why"),
    [
        (bracket_order(), {"approved": False, "quantity": 8.0}, "risk rejected the modification (price_band)"),
        (bracket_order(), {"digest_of": {"quantity": 80.0}, "quantity": 8.0}, "differ from those risk approved"),
        (bracket_order(OrderStatus.FILLED, 10.0), {"quantity": 8.0}, "order is filled, not working"),
        (bracket_order(OrderStatus.PARTIALLY_FILLED, 6.0), {"quantity": 6.0}, "not above the 6 filled"),
        (bracket_order(), {"side": Side.SELL, "stop_loss": 102.0}, "cannot change the symbol or side"),
        (bracket_order(), {"stop_loss": None}, "cannot add or remove a stop loss or take profit"),
    ],
)
def test_a_modification_is_refused_with_why(state: OrderState, kwargs: dict[str, object], why: str) -> None:
    plan = plan_modify(state, *modification(state, **kwargs), "DU1")  # type: ignore[arg-type]
    assert plan.legs == () and plan.refusal is not None and why in plan.refusal, plan.refusal


def test_commands_wait_while_ib_cannot_be_asked_and_go_after_the_reconciliation(tmp_path: Path) -> None:
    """With the fake IB: a cancel read at startup and a modification approved while not READY are sent only once
    the executor has reconciled; a modification decision read back before that (the rebuild) is never acted on."""
    book = Book()
    book.orders = {"o1": bracket_order(), "o2": order("o2", "MSFT", WORKING)}
    book.orders["o2"].legs[OrderLeg.PARENT].ib_order_id = 8
    executor = Executor(
        load_settings(state_dir=tmp_path), session := FakeIbSession(client_id=21), Journal(tmp_path, 21)
    )
    executor.account, executor.generation, executor.book = "DU1", 1, book
    executor.outbox.enqueue = lambda spec, record: None  # type: ignore[method-assign]  # no Kafka here
    orders = executor.operator_orders
    replayed_modify, old_decision = modification(book.orders["o1"], quantity=9.0)
    orders.on_decision(old_decision)  # read back while rebuilding: not live yet
    orders.on_command(replayed_modify, trading=False, replayed=True)  # read back at startup: not applied again
    assert orders.early_decisions == {} and orders.modifications == {}

    orders.on_command(command(ControlCommandKind.CANCEL_ORDER, "o2"), trading=False, replayed=True)
    executor.state = State.READY
    orders.resume()  # the first reconciliation
    assert session.cancelled == [8]

    modify, decision = modification(book.orders["o1"], quantity=8.0)
    executor.state = State.IB_LOST
    orders.on_command(modify, trading=False)
    orders.on_decision(decision)
    assert session.placed == []
    executor.state = State.READY
    orders.resume()
    assert [(ib_id, ticket.quantity) for ib_id, ticket in session.placed] == [(5, 8.0), (6, 8.0)]
    assert book.orders["o1"].legs[OrderLeg.PARENT].quantity == 8.0
