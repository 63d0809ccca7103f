"""Placement without a round trip: a fresh order goes to placeOrder right after its write-ahead journal entry; IB is
asked only about orders in doubt (journaled by a crashed attempt, or listed by IB under an orderRef the book lacks);
an empty journal while the events record IB orders is a lost journal."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from consumers.execution.journal import InDoubt, Journal, journal_lost
from consumers.execution.journal import on_disk as journal_on_disk
from consumers.execution.placement import unknown_order_refs
from consumers.execution.reconciliation import IbSnapshot
from consumers.execution.service import Executor
from ibstream.config import load_settings
from ibstream.contracts import Alert, OrderEvent
from ibstream.contracts.enums import OrderLeg, OrderStatus, Side
from ibstream.ib.session import OrderTicket
from tests.fake_ib import FakeIbSession
from tests.unit.consumers.test_execution import detail, open_order, status
from tests.unit.consumers.test_execution_decisions import decision, message, routed


class AskCounter:
    """Stands in for ``Executor._ask_ib``: counts the questions and answers with ``snapshot``."""

    def __init__(self, snapshot: IbSnapshot | None = None) -> None:
        self.snapshot = snapshot or IbSnapshot(positions=[])
        self.symbols: list[str] = []

    def __call__(self, symbol: str = "", with_positions: bool = False) -> IbSnapshot:
        self.symbols.append(symbol)
        return self.snapshot


def executor_on(tmp_path: Path, ask: AskCounter) -> tuple[Executor, FakeIbSession]:
    session = FakeIbSession(client_id=21)
    executor = Executor(load_settings(state_dir=tmp_path), session, Journal(tmp_path, 21).open())
    executor.account, executor.generation = "DU1", 1
    executor._ask_ib = ask  # type: ignore[method-assign]
    return executor, session


def handle(executor: Executor, **fields: Any) -> str:
    order = routed(order_id=str(uuid.uuid4()), **fields)
    executor.decisions.on_message(message(executor, decision(order)))
    executor._handle_routed(message(executor, order))
    return order.order_id


def test_a_fresh_order_is_placed_after_its_journal_entry_without_asking_ib(tmp_path: Path) -> None:
    ask = AskCounter()
    executor, session = executor_on(tmp_path, ask)
    journaled_at_place: list[dict[str, Any]] = []
    place = session.place_order

    def place_and_look(order_id: int, contract: Any, ticket: OrderTicket) -> bool:
        # The write-ahead rule: the ids are on disk before IB hears of them.
        journaled_at_place.append(journal_on_disk(executor.journal.path)["in_doubt"])
        return place(order_id, contract, ticket)

    session.place_order = place_and_look  # type: ignore[method-assign]
    order_id = handle(executor)
    assert ask.symbols == []
    assert [name for name, _ in session.requests if name in ("reqAllOpenOrders", "reqExecutions")] == []
    assert [ticket.order_ref for _, ticket in session.placed] == [order_id] * 3
    placed_ids = [ib_id for ib_id, _ in session.placed]
    assert all(entry[order_id]["ib_order_ids"] == placed_ids for entry in journaled_at_place)
    assert len(journaled_at_place) == 3


def test_an_order_in_doubt_in_the_journal_is_asked_about_and_re_sent_with_its_journaled_ids(tmp_path: Path) -> None:
    ask = AskCounter()
    executor, session = executor_on(tmp_path, ask)
    order = routed(order_id=str(uuid.uuid4()))
    executor.journal.begin(InDoubt(order.order_id, order.symbol, (41, 42, 43)))
    executor.decisions.on_message(message(executor, decision(order)))
    executor._handle_routed(message(executor, order))
    assert ask.symbols == [order.symbol]
    assert [ib_id for ib_id, _ in session.placed] == [41, 42, 43]


def test_an_order_in_doubt_that_ib_holds_is_adopted_not_placed(tmp_path: Path) -> None:
    order = routed(order_id=str(uuid.uuid4()))
    ask = AskCounter(IbSnapshot(executions=[detail("x1", order.order_id, 41, 10)], positions=[]))
    executor, session = executor_on(tmp_path, ask)
    executor.journal.begin(InDoubt(order.order_id, order.symbol, (41, 42, 43)))
    executor.decisions.on_message(message(executor, decision(order)))
    executor._handle_routed(message(executor, order))
    assert len(ask.symbols) == 1
    # IB has the parent filled: it is adopted; only the journaled legs IB lacks are re-sent with their ids.
    assert [ib_id for ib_id, _ in session.placed] == [42, 43]
    assert executor.book.orders[order.order_id].legs[OrderLeg.PARENT].status is OrderStatus.FILLED


def test_an_order_ib_listed_unknown_at_reconciliation_is_asked_about_before_placing(tmp_path: Path) -> None:
    stranger = str(uuid.uuid4())
    snapshot = IbSnapshot(open_orders=[open_order(77, stranger)], positions=[])
    ask = AskCounter(snapshot)
    executor, session = executor_on(tmp_path, ask)
    assert executor._reconcile()
    assert executor.placement.unknown_at_ib == {stranger}
    order = routed(order_id=stranger, order_type="LMT", limit_price=180.0, stop_loss=None, take_profit=None)
    order = order.model_copy(update={"quantity": 10.0})
    executor.decisions.on_message(message(executor, decision(order)))
    executor._handle_routed(message(executor, order))
    assert ask.symbols == ["", order.symbol]  # the reconciliation, then the in-doubt order
    assert session.placed == []  # IB holds it: adopted
    assert executor.book.orders[stranger].legs[OrderLeg.PARENT].ib_order_id == 77
    assert executor.placement.unknown_at_ib == set()
    handle(executor)  # anything else is fresh again: no question
    assert ask.symbols == ["", order.symbol]


def test_unknown_order_refs_are_the_refs_at_ib_the_book_lacks() -> None:
    snapshot = IbSnapshot(
        open_orders=[open_order(1, "known"), open_order(2, "open-unknown"), open_order(3, "")],
        executions=[detail("e", "filled-unknown", 4, 1), detail("f", "known", 1, 1)],
    )
    assert unknown_order_refs(snapshot, ["known"]) == {"open-unknown", "filled-unknown"}
    assert unknown_order_refs(IbSnapshot(), ["known"]) == set()


def test_a_journal_is_lost_when_empty_while_the_events_record_ib_orders(tmp_path: Path) -> None:
    assert journal_lost(True, 12)
    assert not journal_lost(True, 0)  # a first start: nothing placed anywhere yet
    assert not journal_lost(False, 12)
    journal = Journal(tmp_path, 21).open()
    assert journal.empty
    journal.begin(InDoubt("o", "AAPL", (5,)))
    journal.settle(["o"])
    journal.close()
    assert not Journal(tmp_path, 21).open().empty  # settled, yet its high-water mark says it was used


def test_a_lost_journal_alerts_and_ids_continue_above_the_books(tmp_path: Path) -> None:
    executor, _ = executor_on(tmp_path, AskCounter())
    executor.book.register("earlier", "AAPL", Side.BUY, [(OrderLeg.PARENT, 120, 10)])
    executor._check_journal()
    alerts = [r for _, r, _ in executor._outbox if isinstance(r, Alert)]
    assert [(a.kind, a.severity.value) for a in alerts] == [("execution_journal_lost", "critical")]
    assert executor.journal.hwm == 120
    assert executor.journal.allocate(1, floor=0) == [121]
    # An intact journal raises nothing.
    executor.outbox.records.clear()
    executor._check_journal()
    assert not [r for _, r, _ in executor._outbox if isinstance(r, Alert)]


def test_an_ib_answer_is_recorded_at_its_arrival_and_never_before_the_event_it_answers(tmp_path: Path) -> None:
    executor, session = executor_on(tmp_path, AskCounter())
    order_id = handle(executor)
    parent_id = session.placed[0][0]

    def recorded(status: OrderStatus) -> list[OrderEvent]:
        return [
            record
            for _, record, _ in executor._outbox
            if isinstance(record, OrderEvent)
            and (record.order_id, record.leg, record.status) == (order_id, OrderLeg.PARENT, status)
        ]

    (pending,) = recorded(OrderStatus.PENDING_SUBMIT)
    # The executor's loop handles the answer later than it arrived: the event keeps the arrival time.
    arrived = pending.event_time + dt.timedelta(milliseconds=2)
    executor.order_events.handle(replace(status(parent_id, "Submitted", 0, 10), received_time=arrived))
    (acknowledged,) = recorded(OrderStatus.ACKNOWLEDGED)
    assert acknowledged.event_time == arrived
    # An answer stamped (by the reader thread) before the loop stamped the placeOrder it answers keeps the leg's
    # events in order: it takes the time of the event before it.
    executor.order_events.handle(
        replace(status(parent_id, "Filled", 10, 0), received_time=pending.event_time - dt.timedelta(milliseconds=1))
    )
    (filled,) = recorded(OrderStatus.FILLED)
    assert filled.event_time == arrived
