"""The console's routes over HTTP (in-process ASGI) against chDB holding the console scenario: who may call them,
what they compute (expected values derived from the scenario's records, not from the API), and the static console
itself (served, with its security headers, the vendored chart library included)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role
from ibstream.warehouse import Warehouse
from tests.integration.api_support import RecordingCommands, api_settings, bearer, token
from tests.integration.console_support import BAR_COUNT, ConsoleScenario, load_console_scenario, price_at

pytestmark = pytest.mark.integration


@dataclass
class Api:
    client: TestClient
    scenario: ConsoleScenario
    tokens: dict[str, str]

    def get(self, path: str, role: str | None = "viewer", **kwargs: Any) -> Any:
        headers = bearer(self.tokens[role]) if role else {}
        return self.client.get(path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = api_settings(tmp_path_factory.mktemp("console-http") / "wh", symbols=["AAPL", "MSFT", "SPY", "QQQ"])
    with Warehouse.open(settings) as warehouse:
        scenario = load_console_scenario(warehouse)
        tokens = {role.value: token(settings, role) for role in Role}
        with TestClient(create_app(settings, warehouse, RecordingCommands()), raise_server_exceptions=False) as client:
            yield Api(client, scenario, tokens)


def test_new_routes_need_a_viewer_token(api: Api) -> None:
    paths = [
        f"/v1/runs/{api.scenario.awaiting_run}/precheck",
        "/v1/health/pipeline",
        "/v1/bars?symbol=AAPL",
        "/v1/chart?symbol=AAPL",
        "/v1/strategies",
    ]
    for path in paths:
        response = api.get(path, role=None)
        assert response.status_code == 401 and response.json()["code"] == "unauthorized", path
        assert api.get(path).status_code == 200, (path, api.get(path).text)


def test_precheck_computes_the_plan_against_the_limits(api: Api) -> None:
    body = api.get(f"/v1/runs/{api.scenario.awaiting_run}/precheck").json()
    plan = api.scenario.plan
    assert plan.limit_price is not None
    assert body["entry"] == plan.limit_price and body["notional"] == pytest.approx(plan.quantity * plan.limit_price)
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["max_order_notional"]["value"] == pytest.approx(plan.quantity * plan.limit_price)
    assert checks["risk_per_trade"]["value"] == pytest.approx(plan.quantity * abs(plan.limit_price - plan.stop_loss))
    assert checks["stale_quote"]["passed"] and body["passed"]
    assert body["deferred"] == ["max_gross_exposure", "order_rate", "daily_loss", "account_state", "buying_power"]
    assert not {"account_state", "buying_power"} & set(checks)  # judged by the gate on IB's newest account record
    # Before Agent0 has planned there is nothing to check; an unknown run is a 404.
    no_plan = api.get(f"/v1/runs/{api.scenario.base.ids['awaiting_run']}/precheck")
    assert no_plan.status_code == 409 and no_plan.json()["code"] == "no_plan"
    assert api.get("/v1/runs/nope/precheck").status_code == 404


def test_pipeline_health_assembles_the_scenario(api: Api) -> None:
    body = api.get("/v1/health/pipeline").json()
    assert [(c["component"], c["connection_state"], c["silent"]) for c in body["components"]] == [
        ("producer", "connected", False)
    ]
    assert body["stale_symbols"] == ["SPY", "QQQ"]
    assert [g["symbol"] for g in body["open_gaps"]] == ["QQQ"]
    assert body["dead_letters_total"] == 1 and body["dead_letters"][0]["original_topic"] == "orders.routed.v1"
    assert [a["alert_id"] for a in body["alerts"]] == ["stale_feed:SPY"]
    assert body["agent0_circuit"]["state"] == "closed"  # the newest planning outcome is the awaiting run's plan
    assert body["kill_switch"] == [] and body["kill_switch_engaged"] is False


def test_bars_are_aggregated_from_the_stored_five_second_bars(api: Api) -> None:
    raw = api.get("/v1/bars?symbol=AAPL&limit=5000").json()["bars"]
    assert len(raw) == BAR_COUNT
    assert [b["open"] for b in raw[:3]] == [price_at(0), price_at(1), price_at(2)]
    minute = api.get("/v1/bars?symbol=AAPL&interval=60&limit=5000").json()["bars"]
    assert sum(b["volume"] for b in minute) == sum(b["volume"] for b in raw)
    first = [b for b in raw if b["time"][:16] == minute[1]["time"][:16]]
    assert minute[1]["open"] == first[0]["open"] and minute[1]["close"] == first[-1]["close"]
    assert minute[1]["high"] == max(b["high"] for b in first) and minute[1]["low"] == min(b["low"] for b in first)
    newest = api.get("/v1/bars?symbol=AAPL&limit=10").json()["bars"]
    assert newest == raw[-10:]
    assert api.get("/v1/bars?symbol=AAPL&interval=7").status_code == 422
    assert api.get("/v1/bars?symbol=AAPL&form=x").status_code == 422  # unknown parameter


def test_chart_marks_the_trade_and_its_pnl(api: Api) -> None:
    body = api.get("/v1/chart?symbol=AAPL").json()
    kinds = sorted(m["kind"] for m in body["markers"])
    assert kinds == ["entry", "fill", "fill", "signal", "signal", "stop", "take_profit"]
    expected = (price_at(150) - price_at(60)) * 50 - 2.0  # bought at bar 60, sold at bar 150, two commissions
    assert body["pnl"][-1]["value"] == pytest.approx(expected)
    assert body["realized_pnl"] == pytest.approx((price_at(150) - price_at(60)) * 50)
    assert body["position"] == 0
    empty = api.get("/v1/chart?symbol=IWM").json()
    assert empty["bars"] == [] and empty["markers"] == []


def test_console_is_served_with_its_headers_and_vendored_chart_library(api: Api) -> None:
    redirect = api.client.get("/console", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "/console/"
    page = api.client.get("/console/")
    assert page.status_code == 200 and 'id="login-form"' in page.text
    assert "script-src 'self';" in page.headers["content-security-policy"]
    library = api.client.get("/console/vendor/lightweight-charts.standalone.production.js")
    assert library.status_code == 200 and "Lightweight Charts" in library.text[:400]
    for module in (
        "js/app.js",
        "js/api.js",
        "js/ui.js",
        "js/pages/charts.js",
        "js/pages/strategies.js",
        "css/console.css",
    ):
        assert api.client.get(f"/console/{module}").status_code == 200, module
    assert api.client.get("/console/../api/app.py").status_code == 404
