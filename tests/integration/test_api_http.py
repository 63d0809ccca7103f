"""The API over HTTP (in-process ASGI) against chDB filled with a scripted scenario: the authorization matrix,
reads (including the order trail against the order-trail audit), pagination, error bodies, limits, CORS, OpenAPI.

Commands go to a recording sink here; the real broker is exercised in test_api_kafka.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, issue_token
from api.limits import TokenBuckets
from api.models import Fill
from api.queries.signals import signal_outcome
from ibstream.contracts import control, executions, order_events, risk_decisions, runs, signal_transitions, signals
from ibstream.contracts.enums import ControlCommandKind, OrderLeg, RunState, Side, TradingState
from ibstream.warehouse import Warehouse
from ibstream.warehouse.audits import run_audit
from tests.integration.api_support import (
    Loader,
    RecordingCommands,
    Scenario,
    api_settings,
    bearer,
    expired_token,
    forged_token,
    load_scenario,
    token,
)

pytestmark = pytest.mark.integration


@dataclass
class Api:
    client: TestClient
    warehouse: Warehouse
    scenario: Scenario
    commands: RecordingCommands
    tokens: dict[str, str]

    def get(self, path: str, role: str = "viewer", headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self.client.get(path, headers={**bearer(self.tokens[role]), **(headers or {})}, **kwargs)

    def post(self, path: str, body: Any, role: str = "admin", **kwargs: Any) -> Any:
        return self.client.post(path, json=body, headers=bearer(self.tokens[role]), **kwargs)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = api_settings(tmp_path_factory.mktemp("api") / "wh", api_cors_origins="https://ops.example.com")
    with Warehouse.open(settings) as warehouse:
        scenario = load_scenario(warehouse)
        commands = RecordingCommands()
        app = create_app(settings, warehouse, commands)
        tokens = {
            "viewer": token(settings, Role.VIEWER, "vera"),
            "trader": token(settings, Role.TRADER, "tom"),
            "admin": token(settings, Role.ADMIN, "alice"),
            "expired": expired_token(settings),
            "forged": forged_token(settings),
        }
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, warehouse, scenario, commands, tokens)


# --- authorization matrix -------------------------------------------------------------------------------------------

ROLE_RANK = {"viewer": 1, "trader": 2, "admin": 3}


def _routes(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any] | None, str | None, int]]:
    """(method, path, body, least role, status on success); None role = public."""
    return [
        ("GET", "/health", None, None, 200),
        ("GET", "/ready", None, None, 200),
        ("GET", "/metrics", None, None, 200),
        ("GET", "/openapi.json", None, None, 200),
        ("GET", "/v1/signals", None, "viewer", 200),
        ("GET", f"/v1/signals/{ids['signal']}", None, "viewer", 200),
        ("GET", "/v1/runs", None, "viewer", 200),
        ("GET", f"/v1/runs/{ids['run']}", None, "viewer", 200),
        ("GET", "/v1/orders", None, "viewer", 200),
        ("GET", f"/v1/orders/{ids['order']}", None, "viewer", 200),
        ("GET", "/v1/positions", None, "viewer", 200),
        ("GET", "/v1/account", None, "viewer", 200),
        ("POST", "/v1/runs", {"signal_id": ids["awaiting_signal"], "reason": "again"}, "trader", 202),
        ("POST", f"/v1/runs/{ids['awaiting_run']}/approve", {"reason": "ok"}, "trader", 202),
        ("POST", f"/v1/runs/{ids['awaiting_run']}/reject", {"reason": "no"}, "trader", 202),
        ("POST", "/v1/control/kill-switch", {"state": "on", "reason": "drill"}, "admin", 202),
    ]


@pytest.mark.parametrize("credential", ["none", "expired", "forged", "viewer", "trader", "admin"])
def test_authorization_matrix(api: Api, credential: str) -> None:
    for method, path, body, least, success in _routes(api.scenario.ids):
        headers = {} if credential == "none" else bearer(api.tokens[credential])
        response = api.client.request(method, path, json=body, headers=headers)
        if least is None:
            expected, code = success, None
        elif credential == "none":
            expected, code = 401, "unauthorized"
        elif credential == "expired":
            expected, code = 401, "token_expired"
        elif credential == "forged":
            expected, code = 401, "token_invalid"
        elif ROLE_RANK[credential] < ROLE_RANK[least]:
            expected, code = 403, "forbidden"
        else:
            expected, code = success, None
        assert response.status_code == expected, (credential, method, path, response.text)
        if code is not None:
            assert response.json()["code"] == code
            if expected == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")


def test_commands_record_the_actor_and_reason(api: Api) -> None:
    before = len(api.commands.sent)
    ids = api.scenario.ids
    assert api.post(f"/v1/runs/{ids['awaiting_run']}/approve", {"reason": "fits plan"}, "trader").status_code == 202
    assert api.post(f"/v1/runs/{ids['awaiting_run']}/reject", {"reason": "too late"}, "admin").status_code == 202
    response = api.post("/v1/runs", {"signal_id": ids["awaiting_signal"]}, "trader")
    assert response.status_code == 202
    body = response.json()
    off = api.post("/v1/control/kill-switch", {"state": "off", "reason": "drill over", "target": "AAPL"})
    sent = api.commands.sent[before:]
    assert [(c.command, c.target, c.actor, c.reason) for c in sent] == [
        (ControlCommandKind.APPROVE_RUN, ids["awaiting_run"], "tom", "fits plan"),
        (ControlCommandKind.REJECT_RUN, ids["awaiting_run"], "alice", "too late"),
        (ControlCommandKind.TRIGGER_RUN, ids["awaiting_signal"], "tom", "manual trigger"),
        (ControlCommandKind.KILL_SWITCH_OFF, "AAPL", "alice", "drill over"),
    ]
    assert body["command_id"] == sent[2].command_id and body["actor"] == "tom"
    assert off.json()["offset"] == len(api.commands.sent) - 1


def test_decisions_on_unknown_or_decided_runs_are_refused(api: Api) -> None:
    before = len(api.commands.sent)
    assert api.post("/v1/runs/no-such-run/approve", {"reason": "x"}).json()["code"] == "run_not_found"
    decided = api.post(f"/v1/runs/{api.scenario.ids['run']}/approve", {"reason": "x"})
    assert decided.status_code == 409 and decided.json()["code"] == "run_already_decided"
    assert api.post("/v1/runs", {"signal_id": "no-such-signal"}).json()["code"] == "signal_not_found"
    missing_reason = api.post(f"/v1/runs/{api.scenario.ids['awaiting_run']}/reject", {})
    assert missing_reason.status_code == 422 and missing_reason.json()["details"][0]["loc"] == ["body", "reason"]
    assert len(api.commands.sent) == before


# --- reads ----------------------------------------------------------------------------------------------------------


def _latest_status(scenario: Scenario, signal_id: str) -> str:
    moves = [t for t in scenario.of(signal_transitions.TOPIC) if t.signal_id == signal_id]
    return str(max(moves, key=lambda t: t.time).to_status) if moves else "new"


def test_signals_list_filters_and_status(api: Api) -> None:
    all_signals = api.scenario.of(signals.TOPIC)
    items = api.get("/v1/signals").json()["items"]
    expected = sorted(all_signals, key=lambda s: (s.created_time, s.signal_id), reverse=True)
    assert [item["signal_id"] for item in items] == [s.signal_id for s in expected]  # the redelivery shows once
    assert {item["signal_id"]: item["status"] for item in items} == {
        s.signal_id: _latest_status(api.scenario, s.signal_id) for s in all_signals
    }
    aapl_breakout = api.get("/v1/signals", params={"symbol": "AAPL", "strategy": "breakout"}).json()["items"]
    assert {i["signal_id"] for i in aapl_breakout} == {
        s.signal_id for s in all_signals if s.symbol == "AAPL" and s.strategy == "breakout"
    }
    expired = api.get("/v1/signals", params={"status": "expired"}).json()["items"]
    assert [i["signal_id"] for i in expired] == [api.scenario.ids["expired_signal"]]
    window_start, window_end = all_signals[1].created_time, all_signals[3].created_time
    window = api.get("/v1/signals", params={"since": window_start.isoformat(), "until": window_end.isoformat()}).json()[
        "items"
    ]
    assert {i["signal_id"] for i in window} == {
        s.signal_id for s in all_signals if window_start <= s.created_time < window_end
    }


def test_cursor_pagination_is_complete_and_stable(api: Api) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "symbol": "AAPL"}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/signals", params=params).json()
        seen += [item["signal_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    aapl = sorted(
        (s for s in api.scenario.of(signals.TOPIC) if s.symbol == "AAPL"),
        key=lambda s: (s.created_time, s.signal_id),
        reverse=True,
    )
    assert seen == [s.signal_id for s in aapl] and pages == 2
    first = api.get("/v1/signals", params={"limit": 2, "symbol": "AAPL"}).json()
    other_filters = api.get("/v1/signals", params={"limit": 2, "cursor": first["next_cursor"]})
    assert other_filters.status_code == 400 and other_filters.json()["code"] == "bad_cursor"
    runs_page = api.get("/v1/runs", params={"limit": 3}).json()
    rest = api.get("/v1/runs", params={"limit": 3, "cursor": runs_page["next_cursor"]}).json()
    run_ids = [r["run_id"] for r in runs_page["items"] + rest["items"]]
    assert sorted(run_ids) == sorted({r.run_id for r in api.scenario.of(runs.TOPIC)}) and rest["next_cursor"] is None


def test_signal_detail_has_transitions_runs_and_outcome(api: Api) -> None:
    ids = api.scenario.ids
    detail = api.get(f"/v1/signals/{ids['signal']}").json()
    moves = sorted(
        (t for t in api.scenario.of(signal_transitions.TOPIC) if t.signal_id == ids["signal"]), key=lambda t: t.time
    )
    assert [t["to_status"] for t in detail["transitions"]] == [str(t.to_status) for t in moves]
    assert detail["status"] == "filled" and detail["run_ids"] == [ids["run"]]
    fills = [e for e in api.scenario.of(executions.TOPIC) if e.order_id == ids["order"]]
    buys = [f for f in fills if f.side == "BUY"]
    entry = sum(f.quantity * f.price for f in buys) / sum(f.quantity for f in buys)
    sell = next(f for f in fills if f.side == "SELL")
    commissions = sum(f.commission for f in fills)
    outcome = detail["outcome"]
    assert outcome["traded"] and outcome["closed"] and outcome["order_ids"] == [ids["order"]]
    assert outcome["entry_price"] == pytest.approx(entry)
    assert outcome["pnl"] == pytest.approx((sell.price - entry) * 10 - commissions)
    assert outcome["r"] == pytest.approx((sell.price - entry) / abs(entry - 98.0))
    untraded = api.get(f"/v1/signals/{ids['expired_signal']}").json()["outcome"]
    assert untraded == signal_outcome(Side.SELL, 302.0, [], []).model_dump(mode="json")
    assert api.get("/v1/signals/unknown").json()["code"] == "signal_not_found"


def test_run_detail_history_plan_and_failures(api: Api) -> None:
    ids = api.scenario.ids
    records = sorted((r for r in api.scenario.of(runs.TOPIC) if r.run_id == ids["run"]), key=lambda r: r.time)
    detail = api.get(f"/v1/runs/{ids['run']}").json()
    assert [h["state"] for h in detail["history"]] == [str(r.state) for r in records]
    assert detail["state"] == "submitted" and detail["approval_mode"] == "manual"
    assert detail["plan"] == next(r.plan for r in records if r.plan).model_dump(mode="json")
    assert detail["order_ids"] == [ids["order"]] and detail["failures"] == []
    failed = api.get(f"/v1/runs/{ids['failed_run']}").json()
    assert [(f["attempt"], f["reason"]) for f in failed["failures"]] == [
        (1, "agent0 timed out"),
        (2, "agent0 circuit open"),
    ]
    listed = {r["run_id"]: r for r in api.get("/v1/runs").json()["items"]}
    for run_id in (ids["run"], ids["failed_run"], ids["awaiting_run"]):
        single = api.get(f"/v1/runs/{run_id}").json()
        assert {k: single[k] for k in listed[run_id]} == listed[run_id]  # list row and detail agree
    awaiting = api.get("/v1/runs", params={"state": "awaiting_approval"}).json()["items"]
    assert [r["run_id"] for r in awaiting] == [ids["awaiting_run"]]
    assert RunState(detail["state"]) is RunState.SUBMITTED


def test_order_detail_matches_the_order_trail_audit(api: Api) -> None:
    ids = api.scenario.ids
    detail = api.get(f"/v1/orders/{ids['order']}").json()
    audit = run_audit(api.warehouse, "order-trail", order_id=ids["order"]).dicts()
    assert len(detail["trail"]) == len(audit) > 0
    for step, row in zip(detail["trail"], audit, strict=True):
        assert (step["stage"], step["id"], step["status"], step["detail"]) == (
            row["stage"],
            row["id"],
            row["status"],
            row["detail"],
        )
    stages = [step["stage"] for step in detail["trail"]]
    assert stages.count("fill") == 3 and stages.count("order_event") == 5 and stages[0] == "signal"
    decision = next(d for d in api.scenario.of(risk_decisions.TOPIC) if d.order_id == ids["order"])
    assert [c["name"] for c in detail["risk_decision"]["checks"]] == [c.name for c in decision.checks]
    assert detail["risk_decision"]["approved"] is True
    assert len(detail["fills"]) == 3  # the duplicated fill shows once
    events = [e for e in api.scenario.of(order_events.TOPIC) if e.order_id == ids["order"]]
    parent = [e for e in events if e.leg == OrderLeg.PARENT]
    assert [e["event_id"] for e in detail["events"]] == [e.event_id for e in sorted(events, key=lambda e: e.event_time)]
    assert detail["order"]["status"] == str(parent[-1].status)
    assert detail["order"]["filled_quantity"] == parent[-1].filled_quantity
    assert detail["reconciliation"] == {"status": "matched", "issues": []}
    assert detail["routed"]["decision_id"] == decision.decision_id
    rejected = api.get(f"/v1/orders/{ids['rejected_order']}").json()
    assert rejected["order"]["risk"] == "rejected" and rejected["routed"] is None and rejected["events"] == []
    failed = [c["name"] for c in rejected["risk_decision"]["checks"] if not c["passed"]]
    assert failed == ["max_order_notional"]
    listed = {o["order_id"]: o for o in api.get("/v1/orders").json()["items"]}
    assert listed[ids["order"]] == detail["order"] and listed[ids["rejected_order"]] == rejected["order"]
    assert [o["order_id"] for o in api.get("/v1/orders", params={"status": "filled"}).json()["items"]] == [ids["order"]]


# --- errors, limits, CORS, OpenAPI ----------------------------------------------------------------------------------


def test_errors_are_json_with_a_stable_code(api: Api) -> None:
    cases = [
        (api.client.get("/nowhere"), 404, "not_found"),
        (api.client.delete("/v1/signals", headers=bearer(api.tokens["admin"])), 405, "method_not_allowed"),
        (api.get("/v1/signals", params={"limit": 0}), 422, "validation_error"),
        (api.get("/v1/signals/bad id!"), 422, "validation_error"),
        (api.get("/v1/signals", params={"symbl": "AAPL"}), 422, "validation_error"),  # a typo must not widen
        (
            api.client.post(
                "/v1/runs",
                content=b"{not json",
                headers={**bearer(api.tokens["admin"]), "content-type": "application/json"},
            ),
            422,
            "validation_error",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["code"] == code and response.json()["message"]
        assert "Traceback" not in response.text


def test_internal_errors_hide_the_stack(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at line 42")

    monkeypatch.setattr("api.queries.runs.list_runs", boom)
    response = api.get("/v1/runs")
    assert response.status_code == 500
    assert response.json() == {"code": "internal_error", "message": "internal error; it has been logged"}


def test_warehouse_failure_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from ibstream.warehouse import WarehouseError

    def down(*args: Any, **kwargs: Any) -> Any:
        raise WarehouseError("connection refused")

    monkeypatch.setattr("api.queries.orders.list_orders", down)
    response = api.get("/v1/orders")
    assert response.status_code == 503 and response.json()["code"] == "warehouse_unavailable"


def test_rate_limit_gives_429_with_retry_after(api: Api) -> None:
    settings = api.client.app.state.settings  # type: ignore[attr-defined]
    clock = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=3, clock=lambda: clock[0])
    # A second app over the same warehouse (chDB: one directory per process), with a tiny bucket and a fake clock.
    client = TestClient(create_app(settings, api.warehouse, RecordingCommands(), buckets=buckets))
    headers = bearer(api.tokens["viewer"])
    assert [client.get("/v1/runs", headers=headers).status_code for _ in range(3)] == [200] * 3
    limited = client.get("/v1/runs", headers=headers)
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "1"
    assert client.get("/health").status_code == 200  # probes are never limited
    clock[0] += 1.0
    assert client.get("/v1/runs", headers=headers).status_code == 200


def test_body_size_limit_gives_413(api: Api) -> None:
    limit = api.client.app.state.settings.api.max_body_bytes  # type: ignore[attr-defined]
    huge = {"state": "on", "reason": "x" * (limit + 10)}
    declared = api.post("/v1/control/kill-switch", huge)
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        yield b'{"state": "on", "reason": "'
        for _ in range(limit // 1000 + 2):
            yield b"y" * 1000
        yield b'"}'

    streamed = api.client.post(
        "/v1/control/kill-switch",
        content=chunks(),
        headers={**bearer(api.tokens["admin"]), "content-type": "application/json"},
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "body_too_large", streamed.text


def test_cors_allows_only_configured_origins(api: Api) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = api.client.options("/v1/runs", headers={"Origin": "https://ops.example.com", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example.com"
    denied = api.client.options("/v1/runs", headers={"Origin": "https://evil.example.com", **preflight})
    assert "access-control-allow-origin" not in denied.headers
    simple = api.get("/v1/runs", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in simple.headers


def test_openapi_declares_models_errors_and_security(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = next(status for status in responses if status.startswith("2"))
            assert "content" in responses[success], (method, path)
            if path.startswith("/v1/"):
                assert operation["security"] == [{"HTTPBearer": []}], (method, path)
                for status in ("401", "403", "422", "429", "500", "503"):
                    ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # our 422 body replaces FastAPI's


def test_outcome_of_an_untraded_signal_is_empty() -> None:
    from ibstream.contracts.enums import Side

    outcome = signal_outcome(
        Side.BUY, 98.0, [], [Fill(order_id="o", side=Side.SELL, quantity=1, price=1, commission=None)]
    )
    assert not outcome.traded and outcome.pnl is None and outcome.exit_quantity == 1


def test_token_lifetime_is_enforced_with_leeway(api: Api) -> None:
    settings = api.client.app.state.settings  # type: ignore[attr-defined]

    just_expired = issue_token(
        settings, Role.VIEWER, "v", timedelta(seconds=60), now=datetime.now(UTC) - timedelta(seconds=65)
    )
    assert api.client.get("/v1/runs", headers=bearer(just_expired)).status_code == 200  # within the 10 s leeway


# --- trading states ------------------------------------------------------------------------------------------------


def test_a_trading_state_command_carries_its_state_actor_and_an_increasing_sequence(api: Api) -> None:
    before = len(api.commands.sent)
    reducing = api.post("/v1/control/trading-state", {"scope": "AAPL", "state": "reducing", "reason": "earnings"})
    halted = api.post("/v1/control/trading-state", {"scope": "account", "state": "halted", "reason": "drill"})
    assert reducing.status_code == 202 and halted.status_code == 202, (reducing.text, halted.text)
    sent = api.commands.sent[before:]
    assert [(c.command, c.target, c.state, c.actor, c.reason) for c in sent] == [
        (ControlCommandKind.TRADING_STATE, "AAPL", TradingState.REDUCING, "alice", "earnings"),
        (ControlCommandKind.TRADING_STATE, "account", TradingState.HALTED, "alice", "drill"),
    ]
    assert 0 < sent[0].sequence < sent[1].sequence
    assert halted.json()["command"] == "trading_state"


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/v1/control/trading-state", {"scope": "NOTINUNIVERSE", "state": "halted", "reason": "x"}, "unknown scope"),
        ("/v1/control/trading-state", {"scope": "ZZZ", "state": "halted", "reason": "x"}, "unknown scope"),
        ("/v1/control/trading-state", {"scope": "AAPL", "state": "paused", "reason": "x"}, "unknown state"),
        ("/v1/control/trading-state", {"scope": " AAPL", "state": "halted", "reason": "x"}, "surrounding space"),
        ("/v1/control/trading-state", {"scope": "AAPL ", "state": "halted", "reason": "x"}, "surrounding space"),
        ("/v1/control/trading-state", {"scope": "AAPL", "state": "halted", "reason": ""}, "no reason"),
        ("/v1/control/trading-state", {"scope": "global", "state": "halted", "reason": "x"}, "account is 'account'"),
        ("/v1/control/kill-switch", {"state": "on", "reason": "x", "target": " AAPL"}, "surrounding space"),
        ("/v1/control/kill-switch", {"state": "on", "reason": "x", "target": "AAPL "}, "surrounding space"),
    ],
)
def test_bad_trading_controls_are_refused_with_422(api: Api, path: str, body: dict[str, Any], reason: str) -> None:
    before = len(api.commands.sent)
    response = api.post(path, body)
    assert response.status_code == 422, (reason, response.text)
    assert response.json()["message"], reason
    assert len(api.commands.sent) == before  # nothing published


def test_a_flatten_command_names_its_scope_actor_and_reason(api: Api) -> None:
    before = len(api.commands.sent)
    account = api.post("/v1/control/flatten", {"scope": "account", "reason": "end of day"})
    symbol = api.post("/v1/control/flatten", {"scope": "AAPL", "reason": "news"})
    assert account.status_code == 202 and symbol.status_code == 202, (account.text, symbol.text)
    sent = api.commands.sent[before:]
    assert [(c.command, c.target, c.actor, c.reason, c.state) for c in sent] == [
        (ControlCommandKind.FLATTEN, "account", "alice", "end of day", None),
        (ControlCommandKind.FLATTEN, "AAPL", "alice", "news", None),
    ]
    assert sent[0].command_id != sent[1].command_id and symbol.json()["command"] == "flatten"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"scope": "NOTINUNIVERSE", "reason": "x"}, "unknown scope"),
        ({"scope": "global", "reason": "x"}, "the account is 'account'"),
        ({"scope": " AAPL", "reason": "x"}, "surrounding space"),
        ({"scope": "AAPL", "reason": ""}, "no reason"),
        ({"scope": "AAPL"}, "reason missing"),
        ({"scope": "AAPL", "reason": "x", "quantity": 5}, "unknown field"),
    ],
)
def test_a_bad_flatten_is_refused_with_422(api: Api, body: dict[str, Any], reason: str) -> None:
    before = len(api.commands.sent)
    response = api.post("/v1/control/flatten", body)
    assert response.status_code == 422, (reason, response.text)
    assert len(api.commands.sent) == before


def test_only_an_admin_flattens(api: Api) -> None:
    response = api.post("/v1/control/flatten", {"scope": "AAPL", "reason": "x"}, "trader")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_only_an_admin_sets_a_trading_state(api: Api) -> None:
    response = api.post("/v1/control/trading-state", {"scope": "AAPL", "state": "halted", "reason": "x"}, "trader")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_trading_state_changes_are_audited_and_shown_in_pipeline_health(api: Api) -> None:
    before = len(api.commands.sent)
    for body in (
        {"scope": "MSFT", "state": "halted", "reason": "halt msft"},
        {"scope": "MSFT", "state": "reducing", "reason": "wind down msft"},
    ):
        assert api.post("/v1/control/trading-state", body).status_code == 202
    newer = api.commands.sent[before:]
    # A stale command (an old sequence, as a replay would write) is recorded but changes nothing.
    stale = newer[0].model_copy(update={"command_id": "stale-1", "sequence": newer[0].sequence - 1})
    # The warehouse gets them as the sink would: in topic order, the stale one last.
    Loader(api.warehouse, api.scenario).add(control.TOPIC, *newer, stale, remember=False)

    audit = api.get("/v1/control/trading-states").json()
    msft = [s for s in audit["states"] if s["scope"] == "MSFT"]
    assert [(s["state"], s["actor"], s["reason"]) for s in msft] == [("reducing", "alice", "wind down msft")]
    trail = [(c["command_id"], c["state"], c["actor"], c["reason"]) for c in audit["changes"] if c["scope"] == "MSFT"]
    assert ("stale-1", "halted", "alice", "halt msft") in trail and len(trail) == 3
    health = api.get("/v1/health/pipeline").json()
    assert health["trading_restricted"] is True
    assert [s["state"] for s in health["trading_states"] if s["scope"] == "MSFT"] == ["reducing"]


def test_a_new_command_is_sequenced_after_one_another_replica_recorded_with_a_clock_ahead(api: Api) -> None:
    before = len(api.commands.sent)
    assert api.post("/v1/control/trading-state", {"scope": "SPY", "state": "active", "reason": "r1"}).status_code == 202
    ahead = api.commands.sent[before].model_copy(
        update={"command_id": "other-replica", "sequence": api.commands.sent[before].sequence + 3_600_000_000}
    )
    Loader(api.warehouse, api.scenario).add(control.TOPIC, ahead, remember=False)
    assert api.post("/v1/control/kill-switch", {"state": "off", "reason": "r2", "target": "SPY"}).status_code == 202
    assert api.commands.sent[-1].sequence > ahead.sequence
