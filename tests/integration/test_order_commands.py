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
from ibstream.config import Settings
from ibstream.contracts import ControlCommand, OrderIntent, RoutedOrder, order_events, order_intents, utc_now
from ibstream.contracts.enums import ControlCommandKind, OrderLeg, OrderStatus, OrderType, Side, TradingState
from ibstream.trading_states import micros
from ibstream.warehouse import Warehouse
from tests.integration.api_support import SECRET, bearer, token
from tests.integration.execution_support import Reader, routed, send, sender, wait_for
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
