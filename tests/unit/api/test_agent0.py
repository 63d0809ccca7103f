"""Agent0 over HTTP (FastAPI TestClient, no broker): tokens and roles, deterministic plans sized by the equity
orchestration passes, typed errors that never echo the input, and execute only for a run orchestration approved
with this very plan (the run lookup is a dict of plain ``RunDetail`` values here; the real API is in
tests/integration/test_agent0_one_road.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.agent0 import PlanLimits, PlanResponseV1, PlanStore, SignalIn, api_run_lookup, create_app, make_plan
from api.auth import Role, issue_token
from api.models import RunDetail, RunStateChange
from ibstream import ids
from ibstream.config import Settings, load_settings
from ibstream.contracts import Plan
from ibstream.contracts.enums import ApprovalMode, OrderType, RunState
from ibstream.sizing import SizingError, size_by_risk

SECRET = "agent0-test-secret-" + "s" * 32
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
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
RUN_ID = ids.run_id("sig-1")


class Runs:
    """The run lookup: orchestration's runs by run_id, and the tokens Agent0 asked with."""

    def __init__(self) -> None:
        self.by_id: dict[str, RunDetail] = {}
        self.tokens: list[str] = []
        self.down = False

    def __call__(self, run_id: str, token: str) -> RunDetail | None:
        from api.agent0 import RunLookupError

        self.tokens.append(token)
        if self.down:
            raise RunLookupError("the API is unreachable (ConnectError)")
        return self.by_id.get(run_id)


def run_detail(state: RunState, plan: Plan | None, actor: str = "alice", mode: ApprovalMode | None = None) -> RunDetail:
    history = [
        RunStateChange(
            state=RunState.PLANNED, previous_state=RunState.PLANNING, reason=None, actor="agent0", attempt=1, time=T0
        )
    ]
    if state in (RunState.APPROVED, RunState.SUBMITTED):
        history.append(
            RunStateChange(
                state=RunState.APPROVED,
                previous_state=RunState.AWAITING_APPROVAL,
                reason="ok",
                actor=actor,
                attempt=1,
                time=T0,
            )
        )
    return RunDetail(
        run_id=RUN_ID,
        signal_id="sig-1",
        symbol="AAPL",
        state=state,
        approval_mode=mode,
        attempt=1,
        actor="orchestration",
        started_time=T0,
        updated_time=T0,
        history=history,
        plan=plan,
        failures=[],
        order_ids=[],
    )


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"api_jwt_secret": SECRET, "account_equity": 100_000, "risk_per_trade_pct": 0.5}
    values.update(overrides)
    return load_settings(**values)


def auth(settings: Settings, role: Role, subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, role, subject, timedelta(minutes=5))}"}


@pytest.fixture
def settings() -> Settings:
    return settings_for()


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def client(tmp_path: Path, settings: Settings, runs: Runs) -> TestClient:
    return TestClient(create_app(settings, PlanStore(tmp_path / "agent0.sqlite"), runs))


def plan_as_service(client: TestClient, settings: Settings, body: dict[str, Any] | None = None) -> Any:
    return client.post("/v1/plan", json=body or {"signal": SIGNAL}, headers=auth(settings, Role.SERVICE, "streams"))


def test_sizing_by_account_risk() -> None:
    assert size_by_risk(100.0, 98.0, 100_000, 0.5) == 250  # 500 at risk / 2 per share
    assert size_by_risk(100.0, 98.0, 100_000, 0.5, max_notional=10_000) == 100
    with pytest.raises(SizingError):
        size_by_risk(100.0, 100.0, 100_000, 0.5)
    with pytest.raises(SizingError):
        size_by_risk(100.0, 1.0, 1_000, 0.5)  # 5 of budget, 99 per share


def test_plan_is_sized_bracketed_and_deterministic(client: TestClient, settings: Settings) -> None:
    first = plan_as_service(client, settings)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["plan_id"] == ids.plan_id("sig-1", 100_000, 0.5)
    assert body["run_id"] == RUN_ID
    plan = body["plan"]
    assert (plan["side"], plan["quantity"], plan["order_type"], plan["limit_price"]) == ("BUY", 250.0, "LMT", 100.0)
    assert (plan["stop_loss"], plan["take_profit"]) == (98.0, 104.0)
    assert "0.5% of 100,000" in plan["rationale"]
    assert plan_as_service(client, settings).json() == body


def test_a_net_liquidation_change_changes_the_planned_size(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # 0.5 % of the equity at risk, 2 per share: the size follows the NetLiquidation the request carries.
    sizes = {}
    for equity in (100_000.0, 60_000.0):
        response = plan_as_service(client, settings, {"signal": SIGNAL, "equity": equity})
        assert response.status_code == 200, response.text
        sizes[equity] = response.json()["plan"]["quantity"]
    assert sizes == {100_000.0: equity_size(100_000), 60_000.0: equity_size(60_000)}
    assert sizes[100_000.0] != sizes[60_000.0]
    with caplog.at_level(logging.WARNING, logger="api.agent0.routes"):
        fallback = plan_as_service(client, settings)
    assert fallback.json()["plan"]["quantity"] == equity_size(settings.risk.account_equity)
    assert any("configured equity" in record.getMessage() for record in caplog.records)


def equity_size(equity: float) -> float:
    return float(int(equity * 0.5 / 100 / 2.0))


@pytest.mark.parametrize(
    "payload",
    [
        {"signal": {**SIGNAL, "confidence": 1.5}},
        {"signal": {**SIGNAL, "side": "HOLD"}},
        {"signal": {**SIGNAL, "symbol": "aapl; DROP TABLE"}},
        {"signal": {**SIGNAL, "symbol": "A" * 40}},
        {"signal": {**SIGNAL, "signal_id": "<script>alert(1)</script>"}},
        {"signal": SIGNAL, "entry_type": "FOK"},
        {"signal": SIGNAL, "equity": -5},
        {"nothing": True},
    ],
)
def test_bad_plan_input_is_422_naming_the_field_without_echoing_it(
    client: TestClient, settings: Settings, payload: dict[str, Any]
) -> None:
    response = plan_as_service(client, settings, payload)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert "DROP TABLE" not in response.text and "<script>" not in response.text and "A" * 40 not in response.text


def test_a_stop_on_the_wrong_side_is_unplannable(client: TestClient, settings: Settings) -> None:
    response = plan_as_service(client, settings, {"signal": {**SIGNAL, "stop": 101.0}})
    assert response.status_code == 422 and response.json()["code"] == "unplannable"


@pytest.mark.parametrize("path", ["/v1/plan", "/v1/execute"])
def test_no_token_is_401(client: TestClient, settings: Settings, path: str) -> None:
    body = {"signal": SIGNAL} if path == "/v1/plan" else {"plan_id": "p"}
    missing = client.post(path, json=body)
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    other = settings_for(api_jwt_secret="another-secret-" + "x" * 32)
    forged = client.post(path, json=body, headers=auth(other, Role.ADMIN))
    assert forged.status_code == 401 and forged.json()["code"] == "token_invalid"


def test_wrong_role_is_403(client: TestClient, settings: Settings, runs: Runs) -> None:
    viewer_plans = client.post("/v1/plan", json={"signal": SIGNAL}, headers=auth(settings, Role.VIEWER))
    assert viewer_plans.status_code == 403 and viewer_plans.json()["code"] == "forbidden"
    assert client.post("/v1/plan", json={"signal": SIGNAL}, headers=auth(settings, Role.TRADER)).status_code == 200
    plan_id = plan_as_service(client, settings).json()["plan_id"]
    for role in (Role.SERVICE, Role.VIEWER):
        refused = client.post("/v1/execute", json={"plan_id": plan_id}, headers=auth(settings, role))
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden", role
    assert runs.tokens == []  # refused before orchestration's runs were asked


def test_the_service_role_reads_nothing_of_the_api() -> None:
    from api.auth import Principal, authorize
    from api.errors import ApiError

    with pytest.raises(ApiError):
        authorize(Principal("streams", Role.SERVICE), Role.VIEWER)


def test_an_oversize_body_is_413(tmp_path: Path, runs: Runs) -> None:
    settings = settings_for(agent0_max_body_bytes=2048)
    client = TestClient(create_app(settings, PlanStore(tmp_path / "a.sqlite"), runs))
    big = {"signal": {**SIGNAL, "padding": "x" * 4096}}
    response = client.post("/v1/plan", json=big, headers=auth(settings, Role.SERVICE))
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"


def execute(client: TestClient, settings: Settings, plan_id: str) -> Any:
    return client.post("/v1/execute", json={"plan_id": plan_id}, headers=auth(settings, Role.TRADER, "alice"))


def stored_plan(client: TestClient, settings: Settings) -> PlanResponseV1:
    return PlanResponseV1.model_validate(plan_as_service(client, settings).json())


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (RunState.AWAITING_APPROVAL, "not_approved"),
        (RunState.PLANNED, "not_approved"),
        (RunState.REJECTED, "not_approved"),
        (RunState.EXPIRED, "not_approved"),
        (None, "run_unknown"),
    ],
)
def test_execute_of_a_run_not_approved_in_orchestration_is_409(
    client: TestClient, settings: Settings, runs: Runs, state: RunState | None, code: str
) -> None:
    planned = stored_plan(client, settings)
    if state is not None:
        runs.by_id[RUN_ID] = run_detail(state, planned.plan)
    response = execute(client, settings, planned.plan_id)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == code
    assert RUN_ID in response.json()["message"]


@pytest.mark.parametrize(
    ("state", "mode"), [(RunState.SUBMITTED, ApprovalMode.MANUAL), (RunState.APPROVED, ApprovalMode.POLICY)]
)
def test_execute_of_an_approved_run_hands_it_to_orchestration(
    client: TestClient, settings: Settings, runs: Runs, state: RunState, mode: ApprovalMode
) -> None:
    planned = stored_plan(client, settings)
    runs.by_id[RUN_ID] = run_detail(state, planned.plan, actor="bob", mode=mode)
    response = execute(client, settings, planned.plan_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order_id"] == ids.order_id(RUN_ID)
    assert (body["run_state"], body["approval_mode"], body["approved_by"]) == (state.value, mode.value, "bob")


def test_execute_asks_with_the_callers_token(client: TestClient, settings: Settings, runs: Runs) -> None:
    planned = stored_plan(client, settings)
    headers = auth(settings, Role.TRADER, "carol")
    client.post("/v1/execute", json={"plan_id": planned.plan_id}, headers=headers)
    assert runs.tokens == [headers["Authorization"].removeprefix("Bearer ")]


def test_execute_of_a_plan_that_differs_from_the_runs_is_409(
    client: TestClient, settings: Settings, runs: Runs
) -> None:
    planned = stored_plan(client, settings)
    bigger = planned.plan.model_copy(update={"quantity": planned.plan.quantity * 4})
    runs.by_id[RUN_ID] = run_detail(RunState.SUBMITTED, bigger)
    response = execute(client, settings, planned.plan_id)
    assert response.status_code == 409 and response.json()["code"] == "plan_mismatch"
    assert "quantity" in response.json()["message"]
    other = planned.plan.model_copy(update={"plan_id": ids.plan_id("sig-1", 50_000, 0.5)})
    runs.by_id[RUN_ID] = run_detail(RunState.SUBMITTED, other)
    assert execute(client, settings, planned.plan_id).json()["code"] == "plan_mismatch"


def test_execute_of_an_unknown_plan_is_404_and_an_unreachable_api_503(
    client: TestClient, settings: Settings, runs: Runs
) -> None:
    unknown = execute(client, settings, "no-such-plan")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_plan"
    assert "no-such-plan" not in unknown.text
    planned = stored_plan(client, settings)
    runs.down = True
    down = execute(client, settings, planned.plan_id)
    assert down.status_code == 503 and down.json()["code"] == "runs_unavailable"


def test_plans_survive_a_restart(tmp_path: Path, settings: Settings, runs: Runs) -> None:
    path = tmp_path / "agent0.sqlite"
    first = TestClient(create_app(settings, PlanStore(path), runs))
    planned = stored_plan(first, settings)
    runs.by_id[RUN_ID] = run_detail(RunState.SUBMITTED, planned.plan)
    second = TestClient(create_app(settings, PlanStore(path), runs))
    assert execute(second, settings, planned.plan_id).status_code == 200


def test_a_later_plan_cannot_swap_the_terms_stored_under_a_plan_id(
    client: TestClient, settings: Settings, runs: Runs
) -> None:
    planned = stored_plan(client, settings)
    # Same signal_id and sizing policy (so the same plan_id), other prices: the first stored plan stays.
    swapped = plan_as_service(client, settings, {"signal": {**SIGNAL, "stop": 90.0, "take_profit": 150.0}})
    assert swapped.json()["plan_id"] == planned.plan_id
    runs.by_id[RUN_ID] = run_detail(RunState.SUBMITTED, PlanResponseV1.model_validate(swapped.json()).plan)
    response = execute(client, settings, planned.plan_id)
    assert response.status_code == 409 and response.json()["code"] == "plan_mismatch"


def test_the_api_run_lookup_reads_runs_and_says_when_it_cannot() -> None:
    detail = run_detail(RunState.SUBMITTED, None)

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        if request.url.path.endswith(RUN_ID):
            return httpx.Response(200, content=detail.model_dump_json())
        if request.url.path.endswith("gone"):
            return httpx.Response(404, json={"code": "run_not_found", "message": "no"})
        return httpx.Response(500, json={"code": "internal_error", "message": "boom"})

    from api.agent0 import RunLookupError

    lookup = api_run_lookup(settings_for(), transport=httpx.MockTransport(answer))
    assert lookup(RUN_ID, "tok") == detail
    assert lookup("gone", "tok") is None
    with pytest.raises(RunLookupError, match="500"):
        lookup("broken", "tok")


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_plan_respects_hard_limits(side: str) -> None:
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


@pytest.mark.parametrize(
    ("entry_type", "order_type", "limit_price"),
    [
        ("LMT", OrderType.LMT, 100.0),
        ("MKT", OrderType.MKT, None),
        ("MOC", OrderType.MOC, None),
        ("LOC", OrderType.LOC, 100.0),
    ],
)
def test_a_plan_asks_for_the_entry_type_its_request_names(
    entry_type: str, order_type: OrderType, limit_price: float | None
) -> None:
    plan = make_plan(SignalIn(**SIGNAL), entry_type, 100_000, 0.5).plan
    assert (plan.order_type, plan.limit_price) == (order_type, limit_price)


def test_ibstream_token_issues_every_role_the_verifier_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    from ibstream import cli

    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "_load_main", lambda module: lambda argv: seen.append(argv) or 0)
    for role in Role:
        assert cli.main(["token", "--role", role.value, "--subject", "streams"]) == 0, role
    assert [argv[1] for argv in seen] == [role.value for role in Role]
