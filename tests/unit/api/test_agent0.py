"""Agent0 over HTTP (FastAPI TestClient, no broker): deterministic plans, sizing, typed errors, execute once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.agent0 import PlanStore, create_app
from ibstream import ids
from ibstream.config import load_settings
from ibstream.contracts import OrderIntent
from ibstream.sizing import SizingError, size_by_risk

SIGNAL: dict[str, Any] = {
    "signal_id": "sig-1",
    "symbol": "AAPL",
    "strategy": "donchian_breakout",
    "side": "BUY",
    "confidence": 0.8,
    "entry": 100.0,
    "stop": 98.0,
    "take_profit": 104.0,
}


class Publisher:
    def __init__(self) -> None:
        self.sent: list[OrderIntent] = []
        self.down = False

    def __call__(self, intent: OrderIntent) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append(intent)


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def client(tmp_path: Path, publisher: Publisher) -> TestClient:
    settings = load_settings(account_equity=100_000, risk_per_trade_pct=0.5)
    return TestClient(create_app(settings, PlanStore(tmp_path / "agent0.sqlite"), publisher))


def test_sizing_by_account_risk() -> None:
    assert size_by_risk(100.0, 98.0, 100_000, 0.5) == 250  # 500 at risk / 2 per share
    assert size_by_risk(100.0, 98.0, 100_000, 0.5, max_notional=10_000) == 100
    with pytest.raises(SizingError):
        size_by_risk(100.0, 100.0, 100_000, 0.5)
    with pytest.raises(SizingError):
        size_by_risk(100.0, 1.0, 1_000, 0.5)  # 5 of budget, 99 per share


def test_plan_is_sized_bracketed_and_deterministic(client: TestClient) -> None:
    first = client.post("/v1/plan", json={"signal": SIGNAL})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["plan_id"] == ids.plan_id("sig-1", 100_000, 0.5)
    assert body["run_id"] == ids.run_id("sig-1")
    plan = body["plan"]
    assert (plan["side"], plan["quantity"], plan["order_type"], plan["limit_price"]) == ("BUY", 250.0, "LMT", 100.0)
    assert (plan["stop_loss"], plan["take_profit"]) == (98.0, 104.0)
    assert "0.5% of 100,000" in plan["rationale"]
    assert client.post("/v1/plan", json={"signal": SIGNAL}).json() == body


@pytest.mark.parametrize(
    "payload",
    [
        {"signal": {**SIGNAL, "stop": 101.0}},  # stop above a buy's entry
        {"signal": {**SIGNAL, "confidence": 1.5}},
        {"signal": {**SIGNAL, "side": "HOLD"}},
        {"signal": SIGNAL, "entry_type": "FOK"},
        {"nothing": True},
    ],
)
def test_bad_plan_input_is_400(client: TestClient, payload: dict[str, Any]) -> None:
    response = client.post("/v1/plan", json=payload)
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_execute_publishes_once_with_order_id_from_run_id(client: TestClient, publisher: Publisher) -> None:
    plan_id = client.post("/v1/plan", json={"signal": SIGNAL}).json()["plan_id"]
    approval = {"plan_id": plan_id, "approved": True, "approved_by": "alice"}
    done = client.post("/v1/execute", json=approval)
    assert done.status_code == 200, done.text
    assert done.json()["order_id"] == ids.order_id(ids.run_id("sig-1"))
    assert [i.order_id for i in publisher.sent] == [done.json()["order_id"]]
    assert publisher.sent[0].quantity == 250 and publisher.sent[0].stop_loss == 98.0

    again = client.post("/v1/execute", json=approval)
    assert again.status_code == 409 and again.json()["code"] == "already_executed"
    assert len(publisher.sent) == 1


def test_execute_errors_404_400_503_then_retry_works(client: TestClient, publisher: Publisher) -> None:
    unknown = client.post("/v1/execute", json={"plan_id": "nope", "approved": True, "approved_by": "a"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_plan"
    plan_id = client.post("/v1/plan", json={"signal": SIGNAL}).json()["plan_id"]
    refused = client.post("/v1/execute", json={"plan_id": plan_id, "approved": False, "approved_by": "a"})
    assert refused.status_code == 400 and refused.json()["code"] == "not_approved"
    publisher.down = True
    down = client.post("/v1/execute", json={"plan_id": plan_id, "approved": True, "approved_by": "a"})
    assert down.status_code == 503 and down.json()["code"] == "dependency_down"
    publisher.down = False
    assert (
        client.post("/v1/execute", json={"plan_id": plan_id, "approved": True, "approved_by": "a"}).status_code == 200
    )


def test_executions_survive_a_restart(tmp_path: Path, publisher: Publisher) -> None:
    settings = load_settings()
    path = tmp_path / "agent0.sqlite"
    first = TestClient(create_app(settings, PlanStore(path), publisher))
    plan_id = first.post("/v1/plan", json={"signal": SIGNAL}).json()["plan_id"]
    approval = {"plan_id": plan_id, "approved": True, "approved_by": "a"}
    assert first.post("/v1/execute", json=approval).status_code == 200
    second = TestClient(create_app(settings, PlanStore(path), publisher))
    assert second.post("/v1/execute", json=approval).status_code == 409


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_plan_respects_hard_limits(side: str) -> None:
    from api.agent0 import PlanLimits, SignalIn, make_plan

    sign = 1 if side == "BUY" else -1
    # A 5-second-bar stop 0.02 % away: sized by risk alone it would be 25,000 shares ($2.5M).
    tight = SignalIn(
        signal_id="s",
        symbol="AAPL",
        strategy="ma_crossover",
        side=side,
        confidence=0.7,
        entry=100.0,
        stop=100.0 - sign * 0.02,
        take_profit=100.0 + sign * 0.06,
    )
    unlimited = make_plan(tight, "MKT", 100_000, 0.5)
    assert unlimited.plan.quantity == 25_000
    plan = make_plan(
        tight, "MKT", 100_000, 0.5, PlanLimits(min_stop_pct=0.1, max_order_notional=25_000, max_position=1_000)
    ).plan
    distance = abs(100.0 - plan.stop_loss)
    assert distance / 100.0 * 100 >= 0.1  # widened to at least the minimum stop distance
    assert abs(plan.take_profit - 100.0) == pytest.approx(3 * distance, abs=0.011)  # reward/risk kept (3:1)
    assert plan.quantity * 100.0 <= 25_000 and plan.quantity <= 1_000
    assert plan.quantity * distance <= 100_000 * 0.5 / 100 + 1e-9
