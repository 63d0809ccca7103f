"""Execution consumer, pure parts: status mapping, the state machine, bracket plans, reconciliation, the journal."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.execution.exceptions import ExecutorLockedError
from consumers.execution.journal import InDoubt, Journal
from consumers.execution.mapping import Verdict, event_id, judge, parse_exec_time, status_from_ib
from consumers.execution.reconciliation import (
    MATCHED,
    MISMATCH,
    RECOVERED,
    CancelRequest,
    IbSnapshot,
    reconcile,
)
from consumers.execution.service import Executor
from consumers.execution.state import Book, execution_record
from ibstream.config import load_settings
from ibstream.contracts import Alert, ControlCommand, Execution, OrderEvent, RoutedOrder
from ibstream.contracts.enums import (
    AdaptivePriority,
    ControlCommandKind,
    ExecutionSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    Severity,
    Side,
    TimeInForce,
    TradingState,
)
from ibstream.ib import events
from ibstream.ib.brackets import InvalidOrderError, leg_of_ib_order, plan_legs, validate
from ibstream.ib.codes import classify
from ibstream.ib.connection import may_trade
from tests.fake_ib import FakeIbSession

NOW = dt.datetime(2025, 1, 6, 15, 0, tzinfo=dt.UTC)
S = OrderStatus


def routed(**fields: Any) -> RoutedOrder:
    values: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.MKT,
        "decision_id": "d",
        "routed_time": NOW,
        **fields,
    }
    return RoutedOrder(**values)


# --- mapping -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker", "filled", "remaining", "expected"),
    [
        ("PendingSubmit", 0, 10, S.SUBMITTED),
        ("PreSubmitted", 0, 10, S.SUBMITTED),
        ("ApiPending", 0, 10, S.SUBMITTED),
        ("Submitted", 0, 10, S.ACKNOWLEDGED),
        ("Submitted", 4, 6, S.PARTIALLY_FILLED),
        ("Submitted", 10, 0, S.FILLED),
        ("Filled", 10, 0, S.FILLED),
        ("Cancelled", 4, 6, S.CANCELLED),
        ("ApiCancelled", 0, 10, S.CANCELLED),
        ("Inactive", 0, 10, S.REJECTED),
        ("PendingCancel", 0, 10, None),
        ("SomethingNew", 0, 10, None),
    ],
)
def test_ib_status_mapping(broker: str, filled: float, remaining: float, expected: OrderStatus | None) -> None:
    assert status_from_ib(broker, filled, remaining) is expected


@pytest.mark.parametrize(
    ("current", "new", "filled_before", "filled_after", "verdict"),
    [
        (None, S.PENDING_SUBMIT, 0, 0, Verdict.APPLY),
        (S.PENDING_SUBMIT, S.ACKNOWLEDGED, 0, 0, Verdict.APPLY),
        (S.SUBMITTED, S.FILLED, 0, 10, Verdict.APPLY),
        (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, 4, 8, Verdict.APPLY),
        (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, 4, 4, Verdict.STALE),
        (S.ACKNOWLEDGED, S.SUBMITTED, 0, 0, Verdict.STALE),  # an older status arriving late
        (S.ACKNOWLEDGED, S.ACKNOWLEDGED, 0, 0, Verdict.STALE),
        (S.FILLED, S.FILLED, 10, 10, Verdict.STALE),
        (S.FILLED, S.ACKNOWLEDGED, 10, 10, Verdict.IMPOSSIBLE),
        (S.CANCELLED, S.FILLED, 0, 10, Verdict.IMPOSSIBLE),
        (S.REJECTED, S.ACKNOWLEDGED, 0, 0, Verdict.IMPOSSIBLE),
        (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, 8, 4, Verdict.IMPOSSIBLE),  # fills never shrink
        (S.ERROR, S.FILLED, 0, 10, Verdict.APPLY),  # our doubt (e.g. 103) learns IB's end
        (S.ERROR, S.ACKNOWLEDGED, 0, 0, Verdict.IMPOSSIBLE),
    ],
)
def test_state_machine(
    current: OrderStatus | None, new: OrderStatus, filled_before: float, filled_after: float, verdict: Verdict
) -> None:
    assert judge(current, new, filled_before, filled_after) is verdict


def test_event_ids_are_deterministic_per_step() -> None:
    first = event_id("o1", OrderLeg.PARENT, S.FILLED, 10, None)
    assert first == event_id("o1", OrderLeg.PARENT, S.FILLED, 10.0, None)
    assert first != event_id("o1", OrderLeg.PARENT, S.FILLED, 10, MATCHED)
    assert first != event_id("o1", OrderLeg.STOP_LOSS, S.FILLED, 10, None)
    assert first != event_id("o1", OrderLeg.PARENT, S.PARTIALLY_FILLED, 10, None)


def test_exec_time_is_new_york_unless_named() -> None:
    assert parse_exec_time("20250106  10:00:05") == dt.datetime(2025, 1, 6, 15, 0, 5, tzinfo=dt.UTC)
    assert parse_exec_time("20250106 10:00:05 UTC") == dt.datetime(2025, 1, 6, 10, 0, 5, tzinfo=dt.UTC)


def test_paper_interlock() -> None:
    assert may_trade("DU1234567", None)
    assert not may_trade("U1234567", None)
    assert not may_trade("U1234567", "U7654321")
    assert may_trade("U1234567", "U1234567")


def test_single_order_plan_transmits_and_carries_order_ref() -> None:
    order = routed(order_type=OrderType.LMT, limit_price=101.5)
    (plan,) = plan_legs(order, [42], "DU1")
    ticket = plan.ticket
    assert (plan.leg, plan.ib_order_id) == (OrderLeg.PARENT, 42)
    assert (ticket.order_type, ticket.limit_price, ticket.transmit, ticket.order_ref, ticket.account) == (
        "LMT",
        101.5,
        True,
        order.order_id,
        "DU1",
    )


def test_bracket_plan_holds_all_but_the_last_leg() -> None:
    order = routed(
        side=Side.SELL, order_type=OrderType.STP_LMT, stop_price=99, limit_price=98.5, stop_loss=105, take_profit=90
    )
    parent, stop, target = plan_legs(order, [7, 8, 9], "DU1")
    assert [p.leg for p in (parent, stop, target)] == [OrderLeg.PARENT, OrderLeg.STOP_LOSS, OrderLeg.TAKE_PROFIT]
    assert [p.ticket.transmit for p in (parent, stop, target)] == [False, False, True]
    assert [p.ticket.parent_id for p in (parent, stop, target)] == [0, 7, 7]
    assert (parent.ticket.order_type, parent.ticket.aux_price, parent.ticket.limit_price) == ("STP LMT", 99, 98.5)
    assert (stop.ticket.action, stop.ticket.order_type, stop.ticket.aux_price) == ("BUY", "STP", 105)
    assert (target.ticket.action, target.ticket.order_type, target.ticket.limit_price) == ("BUY", "LMT", 90)
    assert {p.ticket.order_ref for p in (parent, stop, target)} == {order.order_id}


def test_bracket_with_one_child_transmits_the_child() -> None:
    parent, stop = plan_legs(routed(stop_loss=95), [1, 2], "DU1")
    assert (parent.ticket.transmit, stop.ticket.transmit) == (False, True)


@pytest.mark.parametrize(
    "fields",
    [
        {"order_type": OrderType.LMT},
        {"order_type": OrderType.STP},
        {"stop_loss": 110, "take_profit": 90},  # inverted for a buy
    ],
)
def test_invalid_orders_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidOrderError):
        plan_legs(routed(**fields), [1, 2, 3][: 1 + ("stop_loss" in fields) + ("take_profit" in fields)], "DU1")


def test_leg_of_an_ib_order_found_after_a_crash() -> None:
    assert leg_of_ib_order(0, "MKT") is OrderLeg.PARENT
    assert leg_of_ib_order(7, "STP") is OrderLeg.STOP_LOSS
    assert leg_of_ib_order(7, "TRAIL") is OrderLeg.STOP_LOSS
    assert leg_of_ib_order(7, "LMT") is OrderLeg.TAKE_PROFIT


def test_a_bracket_whose_stop_loss_trails_by_an_amount_or_a_percent_from_its_initial_stop() -> None:
    _, stop, _ = plan_legs(routed(stop_loss=95, stop_loss_trail_amount=1.5, take_profit=110), [1, 2, 3], "DU1")
    ticket = stop.ticket
    assert (ticket.action, ticket.order_type, ticket.aux_price, ticket.trail_stop_price) == ("SELL", "TRAIL", 1.5, 95)
    assert ticket.trailing_percent is None and ticket.time_in_force == "GTC" and ticket.parent_id == 1
    ib = ticket.to_ibapi()
    assert (ib.orderType, ib.auxPrice, ib.trailStopPrice) == ("TRAIL", 1.5, 95)
    _, stop = plan_legs(routed(side=Side.SELL, stop_loss=105, stop_loss_trail_percent=2.0), [1, 2], "DU1")
    assert (stop.ticket.order_type, stop.ticket.aux_price, stop.ticket.trailing_percent) == ("TRAIL", None, 2.0)
    assert (stop.ticket.action, stop.ticket.trail_stop_price, stop.ticket.to_ibapi().trailingPercent) == ("BUY", 105, 2)


def test_an_adaptive_entry_carries_the_algo_and_its_priority() -> None:
    order = routed(order_type=OrderType.LMT, limit_price=101.5, adaptive_priority=AdaptivePriority.PATIENT)
    parent, stop = plan_legs(order.model_copy(update={"stop_loss": 95.0}), [1, 2], "DU1")
    assert (parent.ticket.algo_strategy, parent.ticket.algo_params) == ("Adaptive", (("adaptivePriority", "Patient"),))
    assert stop.ticket.algo_strategy == ""  # the protective leg is a plain stop
    ib = parent.ticket.to_ibapi()
    assert ib.algoStrategy == "Adaptive" and [(p.tag, p.value) for p in ib.algoParams] == [
        ("adaptivePriority", "Patient")
    ]
    (plain,) = plan_legs(routed(), [1], "DU1")
    assert plain.ticket.algo_strategy == "" and plain.ticket.to_ibapi().algoStrategy == ""


def test_moc_and_loc_entries_are_ib_moc_and_loc_day_orders() -> None:
    parent, stop = plan_legs(routed(order_type=OrderType.MOC, stop_loss=95), [1, 2], "DU1")
    assert (parent.ticket.order_type, parent.ticket.limit_price, parent.ticket.time_in_force) == ("MOC", None, "DAY")
    assert (stop.ticket.order_type, stop.ticket.parent_id) == ("STP", 1)
    (loc,) = plan_legs(routed(order_type=OrderType.LOC, limit_price=101.5), [1], "DU1")
    assert (loc.ticket.order_type, loc.ticket.limit_price, loc.ticket.to_ibapi().orderType) == ("LOC", 101.5, "LOC")
    with pytest.raises(InvalidOrderError, match="limit"):
        validate(routed(order_type=OrderType.LOC))
    with pytest.raises(InvalidOrderError, match="day order"):
        validate(routed(order_type=OrderType.MOC, time_in_force=TimeInForce.GTC))


def test_an_entry_in_an_oca_group_carries_the_group_with_cancel_on_fill_and_its_bracket_does_not() -> None:
    parent, stop = plan_legs(routed(stop_loss=95, oca_group="breakout-aapl"), [1, 2], "DU1")
    assert (parent.ticket.oca_group, parent.ticket.oca_type) == ("breakout-aapl", 1)
    assert (stop.ticket.oca_group, stop.ticket.oca_type) == ("", 0)  # the children are the bracket's own OCA
    ib = parent.ticket.to_ibapi()
    assert (ib.ocaGroup, ib.ocaType) == ("breakout-aapl", 1)
    (plain,) = plan_legs(routed(), [1], "DU1")
    assert (plain.ticket.oca_group, plain.ticket.to_ibapi().ocaGroup) == ("", "")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"stop_loss_trail_amount": 1.0}, "needs stop_loss"),
        ({"stop_loss": 95, "stop_loss_trail_amount": 1.0, "stop_loss_trail_percent": 1.0}, "not both"),
        ({"stop_loss": 95, "stop_loss_trail_amount": -1.0}, "out of range"),
        ({"stop_loss": 95, "stop_loss_trail_percent": 100.0}, "out of range"),
        ({"order_type": OrderType.STP, "stop_price": 99, "adaptive_priority": AdaptivePriority.URGENT}, "Adaptive"),
    ],
)
def test_trailing_stops_and_adaptive_entries_ib_would_refuse_are_refused(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidOrderError, match=reason):
        validate(routed(**fields))


# --- book ----------------------------------------------------------------------------------------------------------


def book_with(order_id: str = "o1", quantity: float = 10, ib_id: int = 5) -> Book:
    book = Book()
    book.register(order_id, "AAPL", Side.BUY, [(OrderLeg.PARENT, ib_id, quantity)])
    book.report(order_id, OrderLeg.PARENT, S.PENDING_SUBMIT, now=NOW)
    return book


def test_book_reports_events_and_refuses_impossible_transitions() -> None:
    book = book_with()
    step = book.report("o1", OrderLeg.PARENT, S.PARTIALLY_FILLED, now=NOW, filled=4, broker_status="Submitted")
    assert step.event is not None
    assert (step.event.previous_status, step.event.filled_quantity, step.event.remaining_quantity) == (
        S.PENDING_SUBMIT,
        4,
        6,
    )
    assert book.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW, filled=4).event is None
    assert book.report("o1", OrderLeg.PARENT, S.FILLED, now=NOW, filled=10).event is not None
    impossible = book.report("o1", OrderLeg.PARENT, S.CANCELLED, now=NOW, broker_code=202)
    assert impossible.event is None
    assert impossible.impossible is not None and "filled→cancelled" in impossible.impossible
    assert book.orders["o1"].legs[OrderLeg.PARENT].status is S.FILLED


def test_book_rebuilds_from_its_own_events() -> None:
    live = book_with(ib_id=17)
    event = live.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW, perm_id=900).event
    assert event is not None
    rebuilt = Book()
    rebuilt.rebuild_event(event)
    found = rebuilt.find(17)
    assert found is not None and found[1].status is S.ACKNOWLEDGED and found[1].quantity == 10
    assert rebuilt.max_ib_order_id == 17
    # The same fact is not published twice in a row (a repeated reconciliation, a re-delivered status).
    assert rebuilt.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW, reconciliation=MATCHED).event is not None
    assert rebuilt.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW, reconciliation=MATCHED).event is None


def detail(
    exec_id: str,
    order_ref: str,
    ib_id: int,
    shares: float,
    client_id: int = 21,
    req_id: int = 9000,
    symbol: str = "AAPL",
    side: str = "BOT",
) -> events.ExecutionDetail:
    return events.ExecutionDetail(
        req_id,
        exec_id,
        ib_id,
        900 + ib_id,
        symbol,
        265598,
        "DU1",
        side,
        shares,
        190.0,
        shares,
        190.0,
        order_ref,
        "20250106  10:00:05",
        client_id,
    )


def open_order(ib_id: int, order_ref: str, client_id: int = 21, status: str = "Submitted") -> events.OpenOrder:
    return events.OpenOrder(
        ib_id, 900 + ib_id, 0, "AAPL", 265598, "DU1", "BUY", 10, "LMT", 180.0, None, order_ref, True, status, client_id
    )


def status(ib_id: int, broker: str, filled: float, remaining: float, client_id: int = 21) -> events.OrderStatusUpdate:
    return events.OrderStatusUpdate(ib_id, broker, filled, remaining, 190.0, 900 + ib_id, 0, 190.0, client_id, "")


def test_execution_record_maps_side_and_commission() -> None:
    record = execution_record(
        detail("e1", "o1", 5, 4, side="SLD"),
        events.CommissionReport("e1", 1.0, "USD", None),
        ExecutionSource.LIVE,
        NOW,
    )
    assert (record.side, record.order_id, record.ib_order_id, record.commission) == (Side.SELL, "o1", 5, 1.0)
    assert record.exec_time == dt.datetime(2025, 1, 6, 15, 0, 5, tzinfo=dt.UTC)


# --- reconciliation ------------------------------------------------------------------------------------------------


def test_reconcile_recovers_a_fill_missed_during_a_disconnect() -> None:
    book = book_with(ib_id=5)
    book.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW)
    snapshot = IbSnapshot(
        executions=[detail("e1", "o1", 5, 10)], positions=[events.PositionUpdate("DU1", "AAPL", 265598, 10, 190.0)]
    )
    result = reconcile(book, snapshot, 21, "DU1")
    assert [d.exec_id for d in result.executions] == ["e1"]
    (report,) = result.reports
    assert (report.status, report.filled, report.reconciliation) == (S.FILLED, 10, RECOVERED)
    assert result.findings == []  # the position is explained by the recovered fill


def test_reconcile_matches_working_orders_and_adopts_unknown_ids() -> None:
    book = Book()
    book.register("o1", "AAPL", Side.BUY, [(OrderLeg.PARENT, 5, 10)])
    book.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW)
    book.orders["o2"] = book.orders["o1"].__class__("o2", "AAPL", Side.BUY)
    snapshot = IbSnapshot(
        open_orders=[open_order(5, "o1"), open_order(6, "o2")],
        statuses={(21, 5): status(5, "Submitted", 0, 10), (21, 6): status(6, "Submitted", 0, 10)},
        positions=[],
    )
    result = reconcile(book, snapshot, 21, "DU1")
    assert [(a[0], a[3].order_id) for a in result.adoptions] == [("o2", 6)]
    by_order = {r.order_id: r for r in result.reports}
    assert by_order["o1"].reconciliation == MATCHED
    assert by_order["o2"].reconciliation == RECOVERED


def test_reconcile_flags_what_it_cannot_explain() -> None:
    book = book_with(ib_id=5)
    book.report("o1", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW)
    snapshot = IbSnapshot(
        open_orders=[open_order(77, "manual", client_id=0), open_order(78, "crashed", client_id=21)],
        positions=[events.PositionUpdate("DU1", "MSFT", 272093, 3, 400.0)],
    )
    snapshot.executions.append(detail("c1", "crashed", 79, 4))
    snapshot.positions.append(events.PositionUpdate("DU1", "AAPL", 265598, 4, 190.0))  # type: ignore[union-attr]
    result = reconcile(book, snapshot, 21, "DU1", in_doubt={"crashed"})
    kinds = sorted(f.kind for f in result.findings)
    # o1 vanished without fills, an order nobody routed, a position nobody traded; "crashed" is in doubt (the
    # routed order will be re-delivered and adopted), so neither it nor the AAPL its fill bought is flagged.
    assert kinds == ["order_missing_at_ib", "position_mismatch", "unexplained_order"]
    (report,) = result.reports
    assert (report.status, report.reconciliation) == (S.CANCELLED, MISMATCH)


def test_reconcile_explains_a_bracket_child_cancelled_by_oca() -> None:
    book = Book()
    book.register(
        "b", "AAPL", Side.BUY, [(OrderLeg.PARENT, 1, 10), (OrderLeg.STOP_LOSS, 2, 10), (OrderLeg.TAKE_PROFIT, 3, 10)]
    )
    book.report("b", OrderLeg.PARENT, S.FILLED, now=NOW, filled=10)
    book.report("b", OrderLeg.STOP_LOSS, S.ACKNOWLEDGED, now=NOW)
    book.report("b", OrderLeg.TAKE_PROFIT, S.ACKNOWLEDGED, now=NOW)
    book.record_execution(execution_record(detail("p", "b", 1, 10), None, ExecutionSource.LIVE, NOW))
    snapshot = IbSnapshot(executions=[detail("t", "b", 3, 10, side="SLD")], positions=[])
    result = reconcile(book, snapshot, 21, "DU1")
    by_leg = {r.leg: r for r in result.reports}
    assert (by_leg[OrderLeg.TAKE_PROFIT].status, by_leg[OrderLeg.TAKE_PROFIT].reconciliation) == (S.FILLED, RECOVERED)
    assert (by_leg[OrderLeg.STOP_LOSS].status, by_leg[OrderLeg.STOP_LOSS].reconciliation) == (S.CANCELLED, RECOVERED)
    assert result.findings == []


def bracket_book(order_id: str = "b", status: OrderStatus = S.PENDING_SUBMIT) -> Book:
    """A bracket (IB ids 1 parent, 2 stop-loss, 3 take-profit) with every leg in ``status``."""
    book = Book()
    legs = [(OrderLeg.PARENT, 1, 10), (OrderLeg.STOP_LOSS, 2, 10), (OrderLeg.TAKE_PROFIT, 3, 10)]
    book.register(order_id, "AAPL", Side.BUY, legs)
    for leg, _, _ in legs:
        book.report(order_id, leg, status, now=NOW)
    return book


def test_reconcile_cancels_at_ib_every_leg_it_presumes_cancelled() -> None:
    # The bracket's transmitting leg was lost with the connection: IB lists none of its legs (a held, untransmitted
    # order is not listed either), so each is presumed cancelled and must be cancelled at IB as well.
    book = bracket_book()
    book.register("f", "MSFT", Side.BUY, [(OrderLeg.PARENT, 4, 5)])
    book.report("f", OrderLeg.PARENT, S.ACKNOWLEDGED, now=NOW)
    snapshot = IbSnapshot(executions=[detail("x", "f", 4, 5, symbol="MSFT")], positions=None)
    result = reconcile(book, snapshot, 21, "DU1")
    assert {(r.leg, r.status, r.reconciliation) for r in result.reports if r.order_id == "b"} == {
        (OrderLeg.PARENT, S.CANCELLED, MISMATCH),
        (OrderLeg.STOP_LOSS, S.CANCELLED, MISMATCH),
        (OrderLeg.TAKE_PROFIT, S.CANCELLED, MISMATCH),
    }
    assert result.cancels == [
        CancelRequest("b", OrderLeg.PARENT, 1),
        CancelRequest("b", OrderLeg.STOP_LOSS, 2),
        CancelRequest("b", OrderLeg.TAKE_PROFIT, 3),
    ]
    # A leg its executions show filled is not cancelled, nor one IB still lists.
    assert [r.status for r in result.reports if r.order_id == "f"] == [S.FILLED]
    working = bracket_book(status=S.ACKNOWLEDGED)
    listed = IbSnapshot(
        open_orders=[open_order(i, "b") for i in (1, 2, 3)],
        statuses={(21, i): status(i, "Submitted", 0, 10) for i in (1, 2, 3)},
    )
    assert reconcile(working, listed, 21, "DU1").cancels == []


def reconciling_executor(tmp_path: Path, book: Book) -> tuple[Executor, FakeIbSession]:
    """An executor on a fake session whose every reconciliation finds nothing open at IB."""
    session = FakeIbSession(client_id=21)
    executor = Executor(load_settings(state_dir=tmp_path), session, Journal(tmp_path, 21))
    executor.account, executor.generation, executor.book = "DU1", 1, book
    executor._ask_ib = lambda symbol="", with_positions=False: IbSnapshot(positions=[])  # type: ignore[method-assign]
    return executor, session


def ib_error(ib_order_id: int, code: int, message: str = "") -> events.IbError:
    return events.IbError(ib_order_id, code, message, classify(code, message))


def test_reconciliation_cancels_each_leg_once_until_ib_answers(tmp_path: Path) -> None:
    executor, session = reconciling_executor(tmp_path, bracket_book())
    assert executor._reconcile()
    assert session.cancelled == [1, 2, 3]
    recorded = [r for _, r, _ in executor._outbox if isinstance(r, OrderEvent)]
    assert [(e.leg, e.status) for e in recorded] == [
        (OrderLeg.PARENT, S.CANCELLED),
        (OrderLeg.STOP_LOSS, S.CANCELLED),
        (OrderLeg.TAKE_PROFIT, S.CANCELLED),
    ]
    # Another pass on the same connection sends nothing again.
    assert executor._reconcile()
    assert session.cancelled == [1, 2, 3]

    # IB answers: the held parent and its child cancelled (orderStatus + 202), the lost leg unknown (10147).
    before = len(executor._outbox)
    executor._dispatch(status(1, "Cancelled", 0, 10))
    executor._dispatch(ib_error(1, 202, "Order Canceled - reason:"))
    executor._dispatch(ib_error(3, 10147, "OrderId 3 that needs to be cancelled is not found."))
    # Harmless: no event, no alert, the legs stay cancelled.
    assert len(executor._outbox) == before
    assert {leg.status for leg in executor.book.orders["b"].legs.values()} == {S.CANCELLED}

    # The stop-loss's answer was lost with the connection: the next connection asks again, for it alone.
    executor.generation = 2
    assert executor._reconcile()
    assert session.cancelled == [1, 2, 3, 2]
    executor._dispatch(ib_error(2, 10148, "OrderId 2 that needs to be cancelled cannot be cancelled, state: X."))
    executor.generation = 3
    assert executor._reconcile()
    assert session.cancelled == [1, 2, 3, 2]
    alerts = [r for _, r, _ in executor._outbox if isinstance(r, Alert)]
    assert {a.kind for a in alerts} == {"order_missing_at_ib"}


def test_a_cancel_that_could_not_be_sent_goes_out_on_the_next_reconciliation(tmp_path: Path) -> None:
    executor, session = reconciling_executor(tmp_path, bracket_book())
    session.connected = False
    assert executor._reconcile()
    assert session.cancelled == []
    session.connected = True
    assert executor._reconcile()
    assert session.cancelled == [1, 2, 3]


def test_recorded_executions_count_once() -> None:
    book = Book()
    record = execution_record(detail("e1", "o1", 5, 4), None, ExecutionSource.LIVE, NOW)
    assert book.record_execution(record)
    assert not book.record_execution(record)
    book.rebuild_execution(Execution.model_validate({**record.model_dump(), "exec_id": "e2"}))
    assert book.net == {"AAPL": 8}
    assert book.leg_fills("o1", 5) == 8


# --- journal -------------------------------------------------------------------------------------------------------


def test_journal_survives_a_restart_and_ids_only_go_up(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 21).open()
    ids = journal.allocate(3, floor=10)
    assert ids == [11, 12, 13]
    journal.begin(InDoubt("o1", "AAPL", tuple(ids)))
    journal.close()

    reopened = Journal(tmp_path, 21).open()
    assert reopened.hwm == 13 and reopened.in_doubt["o1"].ib_order_ids == (11, 12, 13)
    # A gateway that rolled nextValidId back (floor 4) cannot make ids go backwards.
    assert reopened.allocate(1, floor=4) == [14]
    reopened.settle(["o1"])
    reopened.close()
    assert Journal(tmp_path, 21).open().in_doubt == {}


def test_journal_ignores_a_torn_last_line_and_starts_clean_from_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 21).open()
    journal.begin(InDoubt("o1", "AAPL", (11, 12)))
    journal.close()
    # A crash in the middle of the next append: never acknowledged, so nothing was placed on it.
    with journal.path.open("a") as handle:
        handle.write('{"begin":{"order_id":"o2","sym')
    reopened = Journal(tmp_path, 21).open()
    assert set(reopened.in_doubt) == {"o1"} and reopened.hwm == 12
    reopened.begin(InDoubt("o3", "MSFT", (13,)))  # not joined to the torn line: it was compacted away
    reopened.close()
    again = Journal(tmp_path, 21).open()
    assert set(again.in_doubt) == {"o1", "o3"} and again.hwm == 13
    again.close()


def test_journal_refuses_a_damaged_line_before_the_last(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 21).open()
    journal.begin(InDoubt("o1", "AAPL", (11,)))
    journal.close()
    journal.path.write_text('{"hwm":0,"in_doubt":{}}\nnot json\n{"settle":["o1"],"hwm":11}\n')
    with pytest.raises(ValueError, match="line 2"):
        Journal(tmp_path, 21).open()


def test_journal_compacts_to_one_snapshot_and_keeps_its_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("consumers.execution.journal.COMPACT_AFTER", 5)
    journal = Journal(tmp_path, 21).open()
    for n in range(1, 5):
        journal.begin(InDoubt(f"o{n}", "AAPL", (10 + n,)))
    journal.settle(["o1"])  # the file holds the snapshot and 4 begins: compacted instead of appended
    assert len(journal.path.read_text().splitlines()) == 1
    journal.settle(["o2"])
    journal.raise_hwm(40)
    journal.begin(InDoubt("o5", "MSFT", (41,)))
    journal.close()
    reopened = Journal(tmp_path, 21).open()
    assert set(reopened.in_doubt) == {"o3", "o4", "o5"} and reopened.hwm == 41
    assert reopened.in_doubt["o5"].ib_order_ids == (41,)


def test_journal_reads_the_old_single_snapshot_file_and_replaces_it(tmp_path: Path) -> None:
    legacy = tmp_path / "client-21.json"
    legacy.write_text(json.dumps({"hwm": 30, "in_doubt": {"o1": {"symbol": "AAPL", "ib_order_ids": [29, 30]}}}))
    journal = Journal(tmp_path, 21).open()
    assert journal.hwm == 30 and journal.in_doubt["o1"].ib_order_ids == (29, 30)
    assert not legacy.exists() and journal.path.exists()
    journal.close()
    assert Journal(tmp_path, 21).open().hwm == 30


def test_journal_lock_keeps_a_second_executor_out(tmp_path: Path) -> None:
    first = Journal(tmp_path, 21).open()
    with pytest.raises(ExecutorLockedError):
        Journal(tmp_path, 21).open()
    Journal(tmp_path, 22).open().close()  # another client id is another executor
    first.close()
    Journal(tmp_path, 21).open().close()


def test_kill_switch_cancels_entries_and_keeps_the_protective_legs_of_filled_ones(tmp_path: Path) -> None:
    book = bracket_book("working", S.ACKNOWLEDGED)  # IB ids 1-3: an unfilled entry and its children
    book.register(
        "filled",
        "AAPL",
        Side.BUY,
        [(OrderLeg.PARENT, 4, 10), (OrderLeg.STOP_LOSS, 5, 10), (OrderLeg.TAKE_PROFIT, 6, 10)],
    )
    book.report("filled", OrderLeg.PARENT, S.FILLED, filled=10, now=NOW)
    for leg in (OrderLeg.STOP_LOSS, OrderLeg.TAKE_PROFIT):
        book.report("filled", leg, S.ACKNOWLEDGED, now=NOW)
    book.register("partly", "AAPL", Side.BUY, [(OrderLeg.PARENT, 7, 10), (OrderLeg.STOP_LOSS, 8, 10)])
    book.report("partly", OrderLeg.PARENT, S.PARTIALLY_FILLED, filled=4, now=NOW)
    book.report("partly", OrderLeg.STOP_LOSS, S.ACKNOWLEDGED, now=NOW)
    book.register("stray", "AAPL", Side.BUY, [(OrderLeg.PARENT, 9, 10), (OrderLeg.STOP_LOSS, 10, 10)])
    book.report("stray", OrderLeg.PARENT, S.CANCELLED, now=NOW)  # ended unfilled: its child protects nothing
    book.report("stray", OrderLeg.STOP_LOSS, S.ACKNOWLEDGED, now=NOW)
    executor, session = reconciling_executor(tmp_path, book)

    executor.kill_switch.switches["AAPL"] = ControlCommand(
        command_id="k1",
        command=ControlCommandKind.KILL_SWITCH_ON,
        target="AAPL",
        reason="test",
        actor="pytest",
        parameters={},
        issued_time=NOW,
    )
    executor.kill_switch.cancel_scope("AAPL")

    # Entries go (a parent's cancel takes its children at IB); the filled bracket's stop and target stay.
    assert sorted(session.cancelled) == [1, 7, 10]
    alerts = [r for _, r, _ in executor._outbox if isinstance(r, Alert)]
    assert [(a.kind, a.severity.value) for a in alerts] == [("kill_switch_unprotected", "critical")]
    assert "partly" in alerts[0].message


def control_command(
    kind: ControlCommandKind, target: str, sequence: int, state: TradingState | None = None
) -> ControlCommand:
    return ControlCommand(
        command_id=f"{kind.value}-{target}-{sequence}",
        command=kind,
        target=target,
        reason="test",
        actor="pytest",
        parameters={},
        issued_time=NOW,
        sequence=sequence,
        state=state,
    )


def test_a_stale_kill_switch_off_does_not_release_execution(tmp_path: Path) -> None:
    executor, session = reconciling_executor(tmp_path, bracket_book("working", S.ACKNOWLEDGED))
    executor.kill_switch.on_command(control_command(ControlCommandKind.KILL_SWITCH_ON, "global", 10), trading=True)
    assert sorted(session.cancelled) == [1]  # the working entry (its children go with it at IB)
    executor.kill_switch.on_command(control_command(ControlCommandKind.KILL_SWITCH_OFF, "global", 5), trading=True)
    assert executor.kill_switch.refusal("AAPL") == "kill switch on (account): test"
    executor.kill_switch.on_command(control_command(ControlCommandKind.KILL_SWITCH_OFF, "all", 11), trading=True)
    assert executor.kill_switch.refusal("AAPL") is None


def test_a_halted_trading_state_refuses_orders_but_cancels_nothing(tmp_path: Path) -> None:
    executor, session = reconciling_executor(tmp_path, bracket_book("working", S.ACKNOWLEDGED))
    halted = control_command(ControlCommandKind.TRADING_STATE, "AAPL", 10, TradingState.HALTED)
    executor.kill_switch.on_command(halted, trading=True)
    assert session.cancelled == []
    refusal = executor.kill_switch.refusal("AAPL")
    assert refusal is not None and refusal.startswith("trading state halted for AAPL")
    assert executor.kill_switch.refusal("MSFT") is None
    reducing = control_command(ControlCommandKind.TRADING_STATE, "AAPL", 11, TradingState.REDUCING)
    executor.kill_switch.on_command(reducing, trading=True)
    assert executor.kill_switch.refusal("AAPL") is None  # reducing is risk's to enforce: it knows the positions


def test_an_undecodable_control_record_halts_its_scope_and_alerts(tmp_path: Path) -> None:
    executor, _ = reconciling_executor(tmp_path, Book())
    executor.kill_switch.on_undecodable(b"kill_switch:AAPL", "unknown enum symbol 'flatten'")
    refusal = executor.kill_switch.refusal("AAPL")
    assert refusal is not None and "unreadable control record" in refusal
    assert executor.kill_switch.refusal("MSFT") is None
    executor.kill_switch.on_undecodable(b"\x00junk", "bad magic byte")
    assert executor.kill_switch.refusal("MSFT") is not None
    alerts = [r for _, r, _ in executor._outbox if isinstance(r, Alert)]
    assert [(a.kind, a.alert_id) for a in alerts] == [
        ("control_undecodable", "control_undecodable:AAPL"),
        ("control_undecodable", "control_undecodable:account"),
    ]
    executor.kill_switch.on_command(
        control_command(ControlCommandKind.TRADING_STATE, "account", 1, TradingState.ACTIVE), trading=True
    )
    assert executor.kill_switch.refusal("MSFT") is None
    resolved = [r for _, r, _ in executor._outbox if isinstance(r, Alert) and r.state.value == "resolved"]
    assert [a.alert_id for a in resolved] == ["control_undecodable:account"]


@pytest.mark.parametrize(("offset_minutes", "severity"), [(2, Severity.INFO), (-30, Severity.WARNING)])
def test_a_disconnect_in_the_gateways_daily_restart_is_recorded_not_paged(
    tmp_path: Path, offset_minutes: int, severity: Severity
) -> None:
    # The gateway's configured restart time a few minutes before now (inside the window) or half an hour after.
    restart = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=offset_minutes)).strftime("%H:%M")
    settings = load_settings(state_dir=tmp_path, ib_daily_restart_time=restart, ib_daily_restart_timezone="UTC")
    executor = Executor(settings, FakeIbSession(client_id=21), Journal(tmp_path, 21))
    executor.account, executor.generation = "DU1", 1
    executor._on_disconnected(events.Disconnected(generation=executor.connection.generation, reason="socket closed"))
    raised = [r for _, r, _ in executor._outbox if isinstance(r, Alert) and r.kind == "ib_disconnected"]
    assert [a.severity for a in raised] == [severity]
