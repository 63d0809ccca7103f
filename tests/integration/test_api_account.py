"""``GET /v1/account`` and ``GET /v1/positions`` over HTTP (in-process ASGI) against chDB filled through the sink's
insert path. Expected values are computed from the records written here, never copied from the API's answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role
from ibstream.contracts import (
    AccountState,
    Execution,
    OrderEvent,
    OrderIntent,
    Position,
    PositionPnL,
    Quote,
    account_states,
    executions,
    order_events,
    order_intents,
    positions,
    quotes,
)
from ibstream.contracts.enums import ExecutionSource, MarketDataSource, OrderLeg, OrderStatus, OrderType, Side
from ibstream.warehouse import Warehouse
from tests.integration.api_support import Loader, RecordingCommands, Scenario, api_settings, bearer, token

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Api:
    client: TestClient
    load: Loader
    headers: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = api_settings(tmp_path_factory.mktemp("api-account") / "wh")
    with Warehouse.open(settings) as warehouse:
        app = create_app(settings, warehouse, RecordingCommands())
        headers = bearer(token(settings, Role.VIEWER, "vera"))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, Loader(warehouse, Scenario()), headers)


def state(account: str, net_liquidation: float, time: datetime, daily: float | None = None) -> AccountState:
    return AccountState(
        account=account,
        base_currency="USD",
        net_liquidation=net_liquidation,
        buying_power=4 * net_liquidation,
        available_funds=net_liquidation * 0.9,
        excess_liquidity=net_liquidation * 0.9,
        gross_position_value=net_liquidation * 0.1,
        daily_pnl=daily,
        unrealized_pnl=None if daily is None else daily / 2,
        realized_pnl=None if daily is None else daily / 2,
        time=time,
    )


def test_account_is_404_with_a_reason_before_any_record_then_the_newest_state(api: Api) -> None:
    missing = api.get("/v1/account")
    assert missing.status_code == 404
    assert missing.json()["code"] == "account_not_found" and "account.v1" in missing.json()["message"]

    newest = state("DU1", 101_000.0, NOW - timedelta(seconds=5), daily=250.0)
    older = state("DU1", 99_000.0, NOW - timedelta(minutes=5), daily=-10.0)
    other = state("DU2", 5_000.0, NOW - timedelta(minutes=1))
    # The older record arrives last (a late redelivery): the newest by IB's time still wins.
    api.load.add(account_states.TOPIC, newest, other, older)

    before = datetime.now(UTC)
    body = api.get("/v1/account", account="DU1").json()
    after = datetime.now(UTC)
    assert AccountState.model_validate(body["state"]) == newest
    # its age as of the request (NOW is read when the module is collected, maybe long before this test runs)
    assert (
        (before - newest.time).total_seconds() - 1 <= body["age_seconds"] <= (after - newest.time).total_seconds() + 1
    )
    assert AccountState.model_validate(api.get("/v1/account").json()["state"]) == newest  # newest of any account
    assert AccountState.model_validate(api.get("/v1/account", account="DU2").json()["state"]) == other
    assert api.get("/v1/account", account="DU9").status_code == 404
    bad = api.get("/v1/account", account="DU1;drop")
    assert bad.status_code == 422 and "account" in bad.text


def _id() -> str:
    return str(uuid.uuid4())


def event(
    order_id: str, leg: OrderLeg, status: OrderStatus, at: datetime, ib_order_id: int, remaining: float
) -> OrderEvent:
    return OrderEvent(
        event_id=_id(),
        order_id=order_id,
        leg=leg,
        symbol="AAPL",
        ib_order_id=ib_order_id,
        status=status,
        filled_quantity=0.0,
        remaining_quantity=remaining,
        source=ExecutionSource.LIVE,
        event_time=at,
    )


def intent(order_id: str, stop_loss: float, take_profit: float) -> OrderIntent:
    return OrderIntent(
        order_id=order_id,
        symbol="AAPL",
        side=Side.BUY,
        quantity=100,
        order_type=OrderType.MKT,
        stop_loss=stop_loss,
        take_profit=take_profit,
        requested_by="orchestration",
        created_time=NOW - timedelta(hours=1),
    )


def fill(symbol: str, exec_id: str, realized: float | None) -> Execution:
    return Execution(
        exec_id=exec_id,
        order_id=_id(),
        symbol=symbol,
        account="DU1",
        side=Side.SELL,
        quantity=10,
        price=100.0,
        cumulative_quantity=10,
        avg_price=100.0,
        commission=1.0,
        commission_currency="USD",
        realized_pnl=realized,
        source=ExecutionSource.LIVE,
        exec_time=NOW - timedelta(minutes=30),
        ingest_time=NOW - timedelta(minutes=30),
    )


def test_positions_carry_mark_pnl_and_the_working_protective_orders_of_filled_entries(api: Api) -> None:
    t = NOW - timedelta(minutes=20)
    held = Position(
        account="DU1", symbol="AAPL", con_id=1, quantity=100, avg_cost=150.25, source=ExecutionSource.LIVE, time=t
    )
    stale = held.model_copy(update={"quantity": 40.0, "time": t - timedelta(minutes=5)})
    flat = Position(account="DU1", symbol="MSFT", con_id=2, quantity=0, avg_cost=0, source=ExecutionSource.LIVE, time=t)
    spy = held.model_copy(update={"symbol": "SPY", "con_id": 3, "quantity": 10.0, "avg_cost": 500.0})
    api.load.add(positions.TOPIC, held, flat, stale, spy)
    # IB's own numbers for AAPL (same position) and for SPY at a position it no longer has (a stale read).
    ib_aapl = PositionPnL(
        symbol="AAPL",
        con_id=1,
        position=100,
        daily_pnl=80.0,
        unrealized_pnl=460.0,
        realized_pnl=None,
        market_value=15_485.0,
    )
    ib_spy = PositionPnL(symbol="SPY", con_id=3, position=5, unrealized_pnl=1.0, market_value=2_600.0)
    ib_state = state("DU1", 100_000.0, NOW - timedelta(seconds=2)).model_copy(update={"positions": [ib_aapl, ib_spy]})
    api.load.add(account_states.TOPIC, ib_state)
    spy_quote = Quote(
        symbol="SPY",
        con_id=3,
        bid=519.0,
        ask=521.0,
        event_time=NOW - timedelta(minutes=2),
        ingest_time=NOW,
        source=MarketDataSource.LIVE,
    )
    mark = Quote(
        symbol="AAPL",
        con_id=1,
        bid=154.9,
        ask=155.1,
        last=155.0,
        event_time=NOW - timedelta(minutes=1),
        ingest_time=NOW,
        source=MarketDataSource.LIVE,
    )
    earlier = mark.model_copy(update={"last": 151.0, "event_time": NOW - timedelta(minutes=10)})
    spy_earlier = spy_quote.model_copy(update={"bid": 400.0, "ask": 402.0, "event_time": NOW - timedelta(minutes=9)})
    api.load.add(quotes.TOPIC, mark, earlier, spy_quote, spy_earlier)
    sales = [fill("AAPL", "e.1", 12.5), fill("AAPL", "e.2", -2.0), fill("AAPL", "e.3", None), fill("MSFT", "e.4", 7.0)]
    api.load.add(executions.TOPIC, *sales)
    api.load.add(executions.TOPIC, sales[0])  # a redelivered fill counts once

    protected, working_entry, stopped_out = _id(), _id(), _id()
    api.load.add(order_intents.TOPIC, intent(protected, 140.0, 170.0), intent(working_entry, 1.0, 2.0))
    api.load.add(
        order_events.TOPIC,
        event(protected, OrderLeg.PARENT, OrderStatus.SUBMITTED, t - timedelta(seconds=3), 11, 100),
        event(protected, OrderLeg.PARENT, OrderStatus.FILLED, t - timedelta(seconds=2), 11, 0),
        event(protected, OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, t - timedelta(seconds=1), 12, 100),
        event(protected, OrderLeg.TAKE_PROFIT, OrderStatus.ACKNOWLEDGED, t - timedelta(seconds=1), 13, 100),
        # An entry still working: its children wait and protect nothing yet.
        event(working_entry, OrderLeg.PARENT, OrderStatus.SUBMITTED, t, 21, 100),
        event(working_entry, OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, t, 22, 100),
        # A filled entry whose stop already fired: nothing left working.
        event(stopped_out, OrderLeg.PARENT, OrderStatus.FILLED, t, 31, 0),
        event(stopped_out, OrderLeg.STOP_LOSS, OrderStatus.SUBMITTED, t, 32, 100),
        event(stopped_out, OrderLeg.STOP_LOSS, OrderStatus.FILLED, t + timedelta(seconds=1), 32, 0),
    )

    body = api.get("/v1/positions").json()
    aapl, spy_view = body["items"]
    assert (aapl["account"], aapl["symbol"], aapl["quantity"], aapl["avg_cost"]) == ("DU1", "AAPL", 100, 150.25)
    # Marked by IB: its market value, unrealized and daily P&L for this very position.
    assert aapl["mark_source"] == "ib" and aapl["market_price"] == pytest.approx(ib_aapl.market_value / 100)
    assert (aapl["market_value"], aapl["unrealized_pnl"], aapl["daily_pnl"]) == (15_485.0, 460.0, 80.0)
    # IB's SPY numbers are for another quantity: marked at the newest quote's mid (it has no last) instead.
    assert (spy_view["symbol"], spy_view["mark_source"], spy_view["daily_pnl"]) == ("SPY", "quotes", None)
    assert spy_view["market_price"] == pytest.approx(520.0)
    assert spy_view["unrealized_pnl"] == pytest.approx(10 * (520.0 - 500.0))
    assert spy_view["protective_orders"] == []
    assert aapl["realized_pnl"] == pytest.approx(12.5 - 2.0)
    guards = {(o["order_id"], o["leg"]): (o["status"], o["price"], o["ib_order_id"]) for o in aapl["protective_orders"]}
    assert guards == {
        (protected, "stop_loss"): ("submitted", 140.0, 12),
        (protected, "take_profit"): ("acknowledged", 170.0, 13),
    }

    with_flat = api.get("/v1/positions", include_flat="true").json()["items"]
    msft = next(p for p in with_flat if p["symbol"] == "MSFT")
    assert msft["quantity"] == 0 and msft["realized_pnl"] == 7.0 and msft["protective_orders"] == []
    assert api.get("/v1/positions", include_flat="sometimes").status_code == 422
