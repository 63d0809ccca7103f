"""Execution places only what risk approved: the terms digest, the decision check, and the executor's use of it."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.execution.decisions import DLQ_KIND, Approval, Verdict, approval_of, check_order
from consumers.execution.exceptions import UnapprovedOrderError
from consumers.execution.journal import InDoubt, Journal
from consumers.execution.reconciliation import IbSnapshot
from consumers.execution.service import Executor
from ibstream.config import load_settings
from ibstream.contracts import Alert, OrderEvent, OrderIntent, RiskDecision, RoutedOrder, risk_decisions, routed_orders
from ibstream.contracts.enums import AdaptivePriority, OrderType, Side, TimeInForce
from ibstream.contracts.order_terms import TERM_FIELDS, TERMS_DIGEST_PREFIX, canonical_terms, terms_digest
from ibstream.risk import route
from streams.risk.decisions import stamp_terms
from tests.fake_ib import FakeIbSession

NOW = dt.datetime(2025, 1, 6, 15, 0, tzinfo=dt.UTC)

TERMS: dict[str, Any] = {
    "run_id": "run-1",
    "signal_id": "sig-1",
    "symbol": "AAPL",
    "side": Side.BUY,
    "quantity": 10,
    "order_type": OrderType.LMT,
    "limit_price": 101.5,
    "stop_price": None,
    "stop_loss": 95.0,
    "take_profit": 110.0,
    "time_in_force": TimeInForce.DAY,
}

#: One different value per term.
CHANGED: dict[str, Any] = {
    "run_id": "run-2",
    "signal_id": None,
    "symbol": "MSFT",
    "side": Side.SELL,
    "quantity": 11,
    "order_type": OrderType.STP_LMT,
    "limit_price": 101.51,
    "stop_price": 100.0,
    "stop_loss": 94.99,
    "take_profit": None,
    "time_in_force": TimeInForce.GTC,
    "flatten_id": "flatten-command-1",
    "stop_loss_trail_amount": 1.25,
    "stop_loss_trail_percent": 1.5,
    "adaptive_priority": AdaptivePriority.PATIENT,
    "oca_group": "breakout-either-way",
}


def routed(**fields: Any) -> RoutedOrder:
    values: dict[str, Any] = {
        "order_id": "o-1",
        **TERMS,
        "decision_id": "d-1",
        "routed_time": NOW,
        **fields,
    }
    return RoutedOrder(**values)


def intent(**fields: Any) -> OrderIntent:
    return OrderIntent(order_id="o-1", **{**TERMS, **fields}, requested_by="orchestration", created_time=NOW)


def decision(order: RoutedOrder, approved: bool = True, digest: str | None = "own") -> RiskDecision:
    return RiskDecision(
        decision_id=order.decision_id,
        order_id=order.order_id,
        symbol=order.symbol,
        approved=approved,
        checks=[],
        intent_time=NOW,
        decided_time=NOW,
        terms_digest=terms_digest(order) if digest == "own" else digest,
    )


# --- the digest ------------------------------------------------------------------------------------------------------


def test_the_digest_is_over_the_terms_alone_whatever_record_carries_them() -> None:
    order = routed()
    assert terms_digest(order) == terms_digest(intent()) == terms_digest(TERMS)
    assert terms_digest(order).startswith(TERMS_DIGEST_PREFIX)
    # The order id, decision id and routing time are not terms.
    assert terms_digest(routed(order_id="o-2", decision_id="d-2", routed_time=NOW + dt.timedelta(1))) == (
        terms_digest(order)
    )
    # Ten shares are ten shares, as an int or a float; an enum is its value.
    assert terms_digest({**TERMS, "quantity": 10.0, "side": "BUY"}) == terms_digest(TERMS)


@pytest.mark.parametrize("name", TERM_FIELDS)
def test_every_term_changes_the_digest(name: str) -> None:
    assert set(CHANGED) == set(TERM_FIELDS)  # a new term needs a changed value here
    assert terms_digest(routed(**{name: CHANGED[name]})) != terms_digest(routed())


def test_canonical_terms_name_every_term_with_a_value_in_schema_order() -> None:
    text = canonical_terms(
        {"take_profit": None, "symbol": "AAPL", "quantity": 5, "side": Side.SELL, "order_type": "MKT", "x": "ignored"}
    )
    assert text == '[["symbol","AAPL"],["side","SELL"],["quantity",5.0],["order_type","MKT"]]'
    # A null term is no term: a term added later with a null default leaves existing digests as they were.
    assert terms_digest({**TERMS, "stop_price": None}) == terms_digest(
        {k: v for k, v in TERMS.items() if v is not None}
    )


def test_risk_stamps_its_decision_with_the_digest_of_the_order_it_routes() -> None:
    judged = intent()
    unstamped = RiskDecision(
        decision_id="d-1",
        order_id="o-1",
        symbol="AAPL",
        approved=True,
        checks=[],
        intent_time=NOW,
        decided_time=NOW,
    )
    assert unstamped.terms_digest is None
    stamped = stamp_terms(unstamped, judged)
    routed_order = route(judged, stamped)
    assert routed_order is not None
    assert stamped.terms_digest == terms_digest(routed_order)
    assert stamped.model_dump(exclude={"terms_digest"}) == unstamped.model_dump(exclude={"terms_digest"})


# --- the check (pure) ------------------------------------------------------------------------------------------------


def test_an_order_with_its_approved_decision_and_the_same_terms_is_placed() -> None:
    order = routed()
    approval = approval_of(decision(order))
    assert check_order(order, approval, waited_seconds=0, wait_seconds=5).verdict is Verdict.PLACE


def test_an_order_without_a_decision_waits_then_is_refused() -> None:
    order = routed()
    assert check_order(order, None, waited_seconds=4.9, wait_seconds=5).verdict is Verdict.WAIT
    refused = check_order(order, None, waited_seconds=5, wait_seconds=5)
    assert (refused.verdict, refused.reason) == (Verdict.REFUSE, "no_decision")
    assert "o-1" in refused.detail and "5s" in refused.detail


def test_a_rejected_decision_approves_nothing() -> None:
    assert approval_of(decision(routed(), approved=False)) is None


@pytest.mark.parametrize(
    ("approval", "reason"),
    [
        (Approval("d-1", terms_digest(routed(quantity=1000))), "terms_mismatch"),
        (Approval("d-other", terms_digest(routed())), "decision_mismatch"),
        (Approval("d-1", None), "no_terms_digest"),
    ],
)
def test_an_order_the_decision_does_not_cover_is_refused_at_once(approval: Approval, reason: str) -> None:
    refused = check_order(routed(), approval, waited_seconds=0, wait_seconds=5)
    assert (refused.verdict, refused.reason) == (Verdict.REFUSE, reason)


# --- the executor ----------------------------------------------------------------------------------------------------


class Message:
    """A consumed Kafka message, as much of one as execution reads."""

    def __init__(self, topic: str, value: bytes, offset: int = 0) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def error(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ready_executor(tmp_path: Path) -> tuple[Executor, FakeIbSession, Clock]:
    clock = Clock()
    session = FakeIbSession(client_id=21)
    settings = load_settings(state_dir=tmp_path, execution_decision_wait_seconds=2.0)
    executor = Executor(settings, session, Journal(tmp_path, 21).open(), wall=clock)
    executor.account, executor.generation = "DU1", 1
    executor._ask_ib = lambda symbol="", with_positions=False: IbSnapshot(positions=[])  # type: ignore[method-assign]
    return executor, session, clock


def message(executor: Executor, record: RoutedOrder | RiskDecision, offset: int = 7) -> Any:
    spec: Any = routed_orders.TOPIC if isinstance(record, RoutedOrder) else risk_decisions.TOPIC
    return Message(spec.name, executor.intake.codec.encode(spec.name, record), offset)


def test_a_routed_order_waits_for_its_decision_and_is_placed_once_it_arrives(tmp_path: Path) -> None:
    executor, session, clock = ready_executor(tmp_path)
    order = routed(order_id=str(uuid.uuid4()))
    executor._handle_routed(message(executor, order))
    assert session.placed == [] and list(executor.intake.held) != []
    executor._update_snapshot()
    assert executor.readiness()[1]["awaiting_risk_decision"] == 1
    clock.now += 1.5
    executor.decisions.on_message(message(executor, decision(order)))
    executor._handle_routed(executor.intake.held.popleft())
    assert [ticket.order_ref for _, ticket in session.placed] == [order.order_id] * 3  # parent, stop, target
    assert executor.outbox.offsets == {(routed_orders.TOPIC.name, 0): 8}
    assert executor.outbox.dead == [] and order.order_id not in executor.decisions.approvals


def test_a_routed_order_without_a_decision_is_dead_lettered_alerted_and_never_placed(tmp_path: Path) -> None:
    executor, session, clock = ready_executor(tmp_path)
    order = routed(order_id=str(uuid.uuid4()))
    executor._handle_routed(message(executor, order))
    clock.now += 2.0
    executor._handle_routed(executor.intake.held.popleft())
    assert session.placed == [] and list(executor.intake.held) == []
    [(dead, error, kind)] = executor.outbox.dead
    assert isinstance(error, UnapprovedOrderError) and kind == DLQ_KIND and dead.offset() == 7
    assert "no approved risk decision" in str(error)
    assert executor.outbox.offsets == {(routed_orders.TOPIC.name, 0): 8}
    alerts = [r for _, r, _ in executor._outbox if isinstance(r, Alert)]
    assert [(a.kind, a.severity.value, a.order_id) for a in alerts] == [
        ("unapproved_order", "critical", order.order_id)
    ]
    assert not [r for _, r, _ in executor._outbox if isinstance(r, OrderEvent)]
    assert order.order_id not in executor.book.orders


def test_a_routed_order_whose_terms_differ_from_the_approved_ones_is_refused_at_once(tmp_path: Path) -> None:
    executor, session, _ = ready_executor(tmp_path)
    approved = routed(order_id=str(uuid.uuid4()), quantity=10)
    executor.decisions.on_message(message(executor, decision(approved)))
    executor._handle_routed(message(executor, approved.model_copy(update={"quantity": 1000.0})))
    assert session.placed == []
    [(_, error, _)] = executor.outbox.dead
    assert "differ from those risk approved" in str(error)


def test_decisions_read_back_for_orders_already_handled_are_not_kept(tmp_path: Path) -> None:
    executor, _, _ = ready_executor(tmp_path)
    placed, in_doubt, pending = (routed(order_id=name) for name in ("placed", "in-doubt", "pending"))
    executor.book.register("placed", "AAPL", Side.BUY, [])
    executor.book.register("in-doubt", "AAPL", Side.BUY, [])
    executor.journal.begin(InDoubt("in-doubt", "AAPL", (1,)))
    for order in (placed, in_doubt, pending):
        executor.decisions.on_message(message(executor, decision(order)))
    assert sorted(executor.decisions.approvals) == ["in-doubt", "pending"]
    # Decisions come in the rebuild's pass, before the book is complete: an order the rest of the rebuild puts in
    # the book loses its approval once the book is complete.
    executor.book.register("pending", "AAPL", Side.BUY, [])
    executor.decisions.forget_handled()
    assert sorted(executor.decisions.approvals) == ["in-doubt"]
    # A re-delivered order the book holds passes the check: placement skips it as a duplicate.
    assert executor.decisions.screen(routed(order_id="placed", quantity=1), message(executor, placed)) is Verdict.PLACE
