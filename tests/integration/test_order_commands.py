"""Operator order commands (issue #20 item 5) on the real broker, with ibsim over real TWS sockets: cancel one order
(also while halted, before it is placed, and as a recorded no-op once it filled), cancel all of a symbol keeping the
protective legs of filled entries, and the whole road over HTTP: API → control.v1 → execution → ibsim Cancelled →
the warehouse's order trail."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.auth import Role
from api.commands import KafkaCommandSink
from api.embedded import start_sink
from api.queries.orders import working_view
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    OrderIntent,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
    order_events,
    order_intents,
    quotes,
    utc_now,
)
from ibstream.contracts.enums import (
    ControlCommandKind,
    MarketDataSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    Side,
    TradingState,
)
from ibstream.contracts.order_terms import OrderTerms, terms_digest
from ibstream.contracts.quotes import Quote
from ibstream.order_modifications import modification_decision_id, terms_parameters
from ibstream.trading_states import micros
from ibstream.warehouse import Warehouse
from tests.integration.api_support import SECRET, bearer, token
from tests.integration.execution_support import Reader, routed, send, sender, wait_for
from tests.integration.streams_support import StreamsWorker
from tests.integration.test_execution import Running, run_executor, statuses

pytestmark = pytest.mark.integration

__all__ = ["run_executor"]  # the fixture, shared with test_execution


def operator(kind: ControlCommandKind, target: str, state: TradingState | None = None) -> ControlCommand:
    """A command as the API writes it."""
    return ControlCommand(
        command_id=str(uuid.uuid4()),
        command=kind,
        target=target,
        reason="integration test",
        actor="trader-tom",
        parameters={},
        issued_time=utc_now(),
        sequence=micros(utc_now()),
        state=state,
    )


def resting(running: Running, symbol: str, **fields: Any) -> RoutedOrder:
    """A buy limit 20% under the market: it rests at ibsim."""
    bid = running.sim.quote(symbol).bid
    return routed(symbol, Side.BUY, 5, order_type=OrderType.LMT, limit_price=round(bid * 0.8, 2), **fields)


def messages(events: list[Any], order_id: str) -> list[str]:
    return [e.broker_message or "" for e in events if e.order_id == order_id]


def test_cancel_order_cancels_a_working_order_while_halted_refuses_an_unplaced_one_and_records_a_filled_ones_noop(
    run_executor: Callable[..., Running],
) -> None:
    running = run_executor()
    working = resting(running, "AAPL")
    filled = routed("AAPL", Side.BUY, 3)
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, working, filled)
    events.wait(
        lambda es: (
            OrderStatus.ACKNOWLEDGED in statuses(es, working.order_id)
            and OrderStatus.FILLED in statuses(es, filled.order_id)
        )
    )

    # Halted: no new intents, but cancels still go.
    send(running.settings, operator(ControlCommandKind.TRADING_STATE, "AAPL", TradingState.HALTED))
    send(running.settings, operator(ControlCommandKind.CANCEL_ORDER, working.order_id))
    wait_for(lambda: [o.status for o in running.ib_orders(working.order_id)] == ["Cancelled"], timeout=5)
    recorded = events.wait(lambda es: OrderStatus.CANCELLED in statuses(es, working.order_id))
    assert next(e for e in recorded if e.status is OrderStatus.CANCELLED).broker_status == "Cancelled"

    # The filled order: nothing sent to IB, the no-op is in its events with why.
    send(running.settings, operator(ControlCommandKind.CANCEL_ORDER, filled.order_id))
    recorded = events.wait(lambda es: any("not applied" in m for m in messages(es, filled.order_id)))
    noop = next(e for e in recorded if "not applied" in (e.broker_message or ""))
    assert (noop.status, noop.previous_status) == (OrderStatus.FILLED, OrderStatus.FILLED)
    assert "order is filled, not working" in (noop.broker_message or "")
    assert [o.status for o in running.ib_orders(filled.order_id)] == ["Filled"]

    # Cancelled before it reached execution: its routed order is refused unplaced (trading active again).
    send(running.settings, operator(ControlCommandKind.TRADING_STATE, "AAPL", TradingState.ACTIVE))
    early = routed("AAPL", Side.BUY, 1)
    send(running.settings, operator(ControlCommandKind.CANCEL_ORDER, early.order_id))
    time.sleep(0.5)  # the executor reads the cancel before the routed order (different topics)
    send(running.settings, early)
    recorded = events.wait(lambda es: OrderStatus.REJECTED in statuses(es, early.order_id))
    assert any("cancelled by trader-tom before placement" in m for m in messages(recorded, early.order_id))
    assert running.ib_orders(early.order_id) == []
    events.close()


def test_cancel_all_for_a_symbol_cancels_its_working_entries_and_keeps_the_protective_legs_of_filled_ones(
    run_executor: Callable[..., Running],
) -> None:
    running = run_executor()
    price = running.sim.quote("MSFT").ask
    held = routed("MSFT", Side.BUY, 5, stop_loss=round(price * 0.90, 2), take_profit=round(price * 1.10, 2))
    first, second = resting(running, "MSFT"), resting(running, "MSFT")
    other = resting(running, "AAPL")
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, held, first, second, other)
    events.wait(
        lambda es: (
            OrderStatus.ACKNOWLEDGED in statuses(es, held.order_id, OrderLeg.STOP_LOSS)
            and all(OrderStatus.ACKNOWLEDGED in statuses(es, o.order_id) for o in (first, second, other))
        )
    )

    send(running.settings, operator(ControlCommandKind.CANCEL_ALL, "MSFT"))
    wait_for(
        lambda: all([o.status for o in running.ib_orders(x.order_id)] == ["Cancelled"] for x in (first, second)),
        timeout=5,
    )
    time.sleep(1.0)  # any cancel of the other symbol or of the held bracket's legs would have reached ibsim by now
    assert [o.status for o in running.ib_orders(other.order_id)] == ["Submitted"]
    legs = sorted(running.ib_orders(held.order_id), key=lambda o: o.order_id)
    assert [o.status for o in legs] == ["Filled", "Submitted", "Submitted"], [(o.order_id, o.status) for o in legs]
    events.close()


def intent_of(order: RoutedOrder) -> OrderIntent:
    return OrderIntent(order_id=order.order_id, **order.terms(), requested_by="pytest", created_time=utc_now())


def readable(
    client: TestClient, headers: dict[str, str], order_id: str, check: Callable[[dict[str, Any]], bool]
) -> Any:
    """The order detail once the embedded sink has written what ``check`` wants (30 s at most)."""
    deadline = time.monotonic() + 30
    body: Any = None
    while time.monotonic() < deadline:
        response = client.get(f"/v1/orders/{order_id}", headers=headers)
        body = response.json() if response.status_code == 200 else None
        if body is not None and check(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"order {order_id} not as expected in the warehouse within 30 s: {body}")


def test_cancel_over_http_reaches_ibsim_and_the_order_trail_and_bad_cancels_are_404_and_409(
    run_executor: Callable[..., Running], settings: Settings, tmp_path: Path
) -> None:
    api_settings = settings.with_overrides(
        warehouse_dir=tmp_path / "wh",
        api_jwt_secret=SecretStr(SECRET),
        warehouse_batch_rows=100,
        warehouse_batch_seconds=0.2,
    )
    running = run_executor()
    working, filled = resting(running, "SPY"), routed("SPY", Side.BUY, 2)
    out = sender(settings)
    for order in (working, filled):
        out.send(order_intents.TOPIC, intent_of(order))
    send(settings, working, filled, sink=out)
    with Warehouse.open(api_settings) as warehouse:
        sink = start_sink(api_settings, warehouse)
        commands = KafkaCommandSink(api_settings)
        try:
            client = TestClient(create_app(api_settings, warehouse, commands, sink=sink))
            trader = bearer(token(api_settings, Role.TRADER, "tom"))
            viewer = bearer(token(api_settings, Role.VIEWER, "vic"))
            readable(client, viewer, working.order_id, lambda b: b["order"]["status"] == "acknowledged")
            readable(client, viewer, filled.order_id, lambda b: b["order"]["status"] == "filled")

            body = {"reason": "changed my mind"}
            assert client.post(f"/v1/orders/{working.order_id}/cancel", json=body, headers=viewer).status_code == 403
            unknown = client.post(f"/v1/orders/{uuid.uuid4()}/cancel", json=body, headers=trader)
            assert (unknown.status_code, unknown.json()["code"]) == (404, "order_not_found"), unknown.text
            done = client.post(f"/v1/orders/{filled.order_id}/cancel", json=body, headers=trader)
            assert (done.status_code, done.json()["code"]) == (409, "order_filled"), done.text
            assert "flatten" in done.json()["message"]

            accepted = client.post(f"/v1/orders/{working.order_id}/cancel", json=body, headers=trader)
            assert accepted.status_code == 202, accepted.text
            assert (accepted.json()["command"], accepted.json()["target"]) == ("cancel_order", working.order_id)
            wait_for(lambda: [o.status for o in running.ib_orders(working.order_id)] == ["Cancelled"], timeout=10)
            detail = readable(client, viewer, working.order_id, lambda b: b["order"]["status"] == "cancelled")
            trail = [(step["stage"], step["status"]) for step in detail["trail"]]
            assert ("command", "cancel_order") in trail and ("order_event", "cancelled") in trail, trail
            command = next(step for step in detail["trail"] if step["stage"] == "command")
            assert command["detail"] == "by tom: changed my mind"

            # Once cancelled, a second cancel is a 409 naming the status.
            again = client.post(f"/v1/orders/{working.order_id}/cancel", json=body, headers=trader)
            assert (again.status_code, again.json()["code"]) == (409, "order_not_working"), again.text

            scoped = client.post("/v1/orders/cancel-all", json={"scope": "SPY", "reason": "flat"}, headers=trader)
            assert scoped.status_code == 202 and scoped.json()["target"] == "SPY", scoped.text
            nowhere = client.post("/v1/orders/cancel-all", json={"scope": "ZZZZ", "reason": "x"}, headers=trader)
            assert nowhere.status_code == 422, nowhere.text
        finally:
            sink.stop()
            commands.close()


def modify_command(order: RoutedOrder, changes: dict[str, float]) -> tuple[ControlCommand, OrderTerms]:
    """A modify_order as the API writes it: the order's complete new terms."""
    terms = OrderTerms(**{**order.terms(), **changes})
    command = operator(ControlCommandKind.MODIFY_ORDER, order.order_id)
    return command.model_copy(update={"parameters": terms_parameters(terms, sorted(changes))}), terms


def verdict(command: ControlCommand, order: RoutedOrder, terms: OrderTerms, approved: bool) -> RiskDecision:
    """Risk's decision on a modification, as streams.risk.modifications writes it."""
    return RiskDecision(
        decision_id=modification_decision_id(command.command_id),
        order_id=order.order_id,
        symbol=order.symbol,
        approved=approved,
        checks=[RiskCheck(name="max_order_notional", passed=approved, reason="test")],
        intent_time=command.issued_time,
        decided_time=utc_now(),
        terms_digest=terms_digest(terms),
    )


def test_modify_is_applied_only_with_risks_matching_approval_and_every_outcome_is_in_the_events(
    run_executor: Callable[..., Running],
) -> None:
    running = run_executor()
    bid = running.sim.quote("MSFT").bid
    entry = round(bid * 0.8, 2)
    bracket = resting(running, "MSFT", stop_loss=round(bid * 0.7, 2), take_profit=round(bid * 0.9, 2))
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, bracket)
    events.wait(lambda es: OrderStatus.ACKNOWLEDGED in statuses(es, bracket.order_id))

    def at_ib() -> dict[str, tuple[float, float | None, float | None]]:
        legs = sorted(running.ib_orders(bracket.order_id), key=lambda o: o.order_id)
        return {
            leg: (o.request.quantity, o.request.lmt_price, o.request.aux_price)
            for leg, o in zip(("parent", "stop_loss", "take_profit"), legs, strict=True)
        }

    before = at_ib()
    # Rejected by risk: nothing changes at IB, the refusal is in the order's events.
    rejected, rejected_terms = modify_command(bracket, {"quantity": 50})
    send(running.settings, rejected, verdict(rejected, bracket, rejected_terms, approved=False))
    events.wait(lambda es: any("risk rejected the modification" in m for m in messages(es, bracket.order_id)))
    # Approved, but for other terms than the command's: refused too.
    forged, forged_terms = modify_command(bracket, {"quantity": 6})
    send(
        running.settings, forged, verdict(forged, bracket, OrderTerms(**{**forged_terms.terms(), "quantity": 60}), True)
    )
    events.wait(lambda es: any("differ from those risk approved" in m for m in messages(es, bracket.order_id)))
    assert at_ib() == before

    # Approved with the command's terms: the entry's limit and quantity, and the stop, change at IB in place. The
    # decision is written before the command here: execution keeps it until the command arrives.
    lower, stop = round(entry - 1, 2), round(bid * 0.65, 2)
    approved, terms = modify_command(bracket, {"quantity": 8, "limit_price": lower, "stop_loss": stop})
    send(running.settings, verdict(approved, bracket, terms, approved=True))
    time.sleep(0.3)
    send(running.settings, approved)
    wait_for(lambda: at_ib()["parent"] == (8, lower, None), timeout=10)
    assert at_ib()["stop_loss"][0::2] == (8, stop) and at_ib()["take_profit"][:2] == (8, before["take_profit"][1])
    recorded = events.wait(
        lambda es: any("applied (limit_price,quantity,stop_loss" in m for m in messages(es, bracket.order_id))
    )
    applied = next(e for e in recorded if "applied (" in (e.broker_message or ""))
    assert (applied.status, applied.remaining_quantity) == (OrderStatus.ACKNOWLEDGED, 8)
    assert {o.status for o in running.ib_orders(bracket.order_id)} <= {"Submitted", "PreSubmitted"}
    assert len(running.ib_orders(bracket.order_id)) == 3  # modified in place, nothing added

    # IB refuses a price off the tick (110): recorded, the order keeps working as it was (status unchanged).
    off_tick, off_tick_terms = modify_command(bracket, {"quantity": 8, "limit_price": lower - 0.005, "stop_loss": stop})
    send(running.settings, off_tick, verdict(off_tick, bracket, off_tick_terms, approved=True))
    events.wait(lambda es: any("refused by IB for the parent leg (110" in m for m in messages(es, bracket.order_id)))
    assert at_ib()["parent"] == (8, lower, None)
    assert running.executor.book.orders[bracket.order_id].legs[OrderLeg.PARENT].status is OrderStatus.ACKNOWLEDGED

    # A market order has nothing to modify once filled: refused, recorded.
    filled = routed("MSFT", Side.BUY, 1)
    send(running.settings, filled)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, filled.order_id))
    late, late_terms = modify_command(filled, {"quantity": 2})
    send(running.settings, late, verdict(late, filled, late_terms, approved=True))
    events.wait(lambda es: any("order is filled, not working" in m for m in messages(es, filled.order_id)))
    events.close()


def sim_quote(running: Running, symbol: str) -> Quote:
    """ibsim's quote now, as the producer would publish it (risk judges prices against it)."""
    q = running.sim.quote(symbol)
    now = utc_now()
    return Quote(
        symbol=symbol,
        con_id=1,
        bid=q.bid,
        ask=q.ask,
        last=q.last,
        event_time=now,
        ingest_time=now,
        source=MarketDataSource.SIM,
    )


def test_modify_over_http_is_judged_by_a_real_risk_worker_and_applied_at_ibsim_or_left_as_it_was(
    run_executor: Callable[..., Running], settings: Settings, tmp_path: Path
) -> None:
    api_settings = settings.with_overrides(
        warehouse_dir=tmp_path / "wh",
        api_jwt_secret=SecretStr(SECRET),
        warehouse_batch_rows=100,
        warehouse_batch_seconds=0.2,
    )
    running = run_executor()
    out = sender(settings)
    out.send(quotes.TOPIC, sim_quote(running, "SPY"))
    assert out.flush(10) == 0
    worker = StreamsWorker(settings, tmp_path, "risk", risk_quote_max_age_seconds=600).start()
    bid = running.sim.quote("SPY").bid
    entry = round(bid * 0.97, 2)
    resting_intent = OrderIntent(
        order_id=str(uuid.uuid4()),
        symbol="SPY",
        side=Side.BUY,
        quantity=5,
        order_type=OrderType.LMT,
        limit_price=entry,
        stop_loss=round(entry * 0.98, 2),
        take_profit=round(entry * 1.03, 2),
        requested_by="pytest",
        created_time=utc_now(),
    )
    order_id = resting_intent.order_id
    with Warehouse.open(api_settings) as warehouse:
        sink = start_sink(api_settings, warehouse)
        commands = KafkaCommandSink(api_settings)
        try:
            client = TestClient(create_app(api_settings, warehouse, commands, sink=sink))
            trader = bearer(token(api_settings, Role.TRADER, "tom"))
            # The one road: risk judges the intent and routes it, execution places it at ibsim.
            out.send(order_intents.TOPIC, resting_intent)
            assert out.flush(10) == 0
            try:
                readable(client, trader, order_id, lambda b: b["order"]["status"] == "acknowledged")
            except AssertionError:
                raise AssertionError(worker.log()[-4000:]) from None

            unknown = client.post(
                f"/v1/orders/{uuid.uuid4()}/modify", json={"reason": "x", "quantity": 1}, headers=trader
            )
            assert unknown.status_code == 404, unknown.text
            nothing = client.post(
                f"/v1/orders/{order_id}/modify", json={"reason": "x", "stop_price": 1}, headers=trader
            )
            assert (nothing.status_code, nothing.json()["code"]) == (422, "invalid_modification"), nothing.text

            # Approved by risk: the entry's limit and quantity change at ibsim, in place.
            lower = round(entry - 0.5, 2)
            body = {"reason": "closer to support", "limit_price": lower, "quantity": 6}
            accepted = client.post(f"/v1/orders/{order_id}/modify", json=body, headers=trader)
            assert accepted.status_code == 202 and accepted.json()["command"] == "modify_order", accepted.text
            parent = lambda: next(o for o in running.ib_orders(order_id) if not o.request.parent_id)  # noqa: E731
            try:
                wait_for(lambda: (parent().request.quantity, parent().request.lmt_price) == (6, lower), timeout=20)
            except AssertionError:
                raise AssertionError(worker.log()[-4000:]) from None
            assert {o.request.quantity for o in running.ib_orders(order_id)} == {6}

            # Refused by risk (far over the order notional limit): ibsim keeps the order as it was; the trail says so.
            huge = client.post(
                f"/v1/orders/{order_id}/modify", json={"reason": "all in", "quantity": 5000}, headers=trader
            )
            assert huge.status_code == 202, huge.text
            detail = readable(
                client,
                trader,
                order_id,
                lambda b: any("risk rejected the modification" in (e["broker_message"] or "") for e in b["events"]),
            )
            assert (parent().request.quantity, parent().request.lmt_price) == (6, lower)
            assert detail["order"]["risk"] == "approved"  # the order's own verdict: a modification's is not it
            # The next modification starts from the terms risk last approved, not the intent's nor the rejected ones.
            current = working_view(warehouse, order_id).terms
            assert (current.quantity, current.limit_price, current.stop_loss) == (6, lower, resting_intent.stop_loss)
            trail = [(s["stage"], s["status"]) for s in detail["trail"]]
            assert trail.count(("command", "modify_order")) == 2 and ("risk_decision", "rejected") in trail, trail

            # Cancel all for the symbol: the modified order goes.
            gone = client.post("/v1/orders/cancel-all", json={"scope": "SPY", "reason": "done"}, headers=trader)
            assert gone.status_code == 202, gone.text
            wait_for(lambda: {o.status for o in running.ib_orders(order_id)} == {"Cancelled"}, timeout=10)
        finally:
            sink.stop()
            commands.close()
            worker.stop()
