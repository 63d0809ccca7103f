# ruff: noqa: F811  (the run_executor fixture imported from test_execution is redefined as an argument)
"""Planning over real sockets: Agent0 (uvicorn) ok, slow (timeout), 500, and a closed port (refused) → the run
fails with the cause; the breaker opens after N failures and closes again once Agent0 answers; without the
service token Agent0 refuses (401/403) and the run fails saying so; the NetLiquidation of the newest account.v1
record (real broker) sizes the plan."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr

from api.agent0 import PlanStore, create_app
from api.auth import Role, issue_token
from ibstream.config import Settings
from ibstream.contracts import AccountState, account_states
from ibstream.contracts.enums import RunState
from streams import orchestration as orch
from streams.orchestration.account import AccountFeed, NewestAccount
from streams.orchestration.agent0_client import Agent0Client
from tests.unit.streams.test_streams_orchestration import SIGNAL, T0

from .streams_support import CODEC, agent0_settings, producer, service_token
from .test_execution import Running, run_executor  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A uvicorn server in a thread; ``mode`` switches the behaviour of the stub routes at runtime."""

    def __init__(self, tmp_path: Path) -> None:
        self.mode = "ok"
        agent0 = create_app(agent0_settings(), PlanStore(tmp_path / "a0.sqlite"), lambda run_id, token: None)
        # "ok" forwards to the real Agent0 app; "slow" and "error" simulate its failures on the same socket.
        self.app = FastAPI()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        @self.app.post("/v1/plan")
        async def switch(body: dict, request: Request) -> Response:  # type: ignore[type-arg]
            if self.mode == "slow":
                await asyncio.sleep(1.0)
            if self.mode == "error":
                return Response("boom", status_code=500)
            from fastapi.testclient import TestClient

            forwarded = {name: value for name, value in request.headers.items() if name == "authorization"}
            real = TestClient(agent0).post("/v1/plan", json=body, headers=forwarded)
            return Response(real.content, status_code=real.status_code, media_type="application/json")

        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as running:
        yield running


def client(
    url: str,
    failures: int = 3,
    reset: float = 0.5,
    token: str | None = "service",
    equity: NewestAccount | None = None,
) -> Agent0Client:
    return Agent0Client(
        url,
        timeout=0.3,
        max_attempts=2,
        backoff_seconds=0.01,
        breaker=orch.CircuitBreaker(failures, reset),
        token=None if token is None else SecretStr(service_token() if token == "service" else token),
        equity=(lambda: None) if equity is None else equity.net_liquidation,
    )


@pytest.mark.asyncio
async def test_plan_ok_then_timeout_500_refused_fail_with_cause(server: Server) -> None:
    agent0 = client(server.url, failures=100)
    records = await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0)
    assert [r.state for r in records] == [RunState.PLANNING, RunState.PLANNED]
    assert records[-1].plan is not None and records[-1].plan.quantity == 250

    server.mode = "slow"
    failed = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
    assert failed.state is RunState.FAILED and "timeout" in (failed.reason or "")
    server.mode = "error"
    failed = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
    assert failed.state is RunState.FAILED and "HTTP 500" in (failed.reason or "") and "2 attempts" in failed.reason
    await agent0.close()

    refused = client(f"http://127.0.0.1:{free_port()}", failures=100)
    failed = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, refused))[-1]
    assert failed.state is RunState.FAILED and "unreachable" in (failed.reason or "")
    await refused.close()


@pytest.mark.asyncio
async def test_breaker_opens_after_n_failures_and_closes_when_agent0_recovers(server: Server) -> None:
    agent0 = client(server.url, failures=3, reset=0.5)
    server.mode = "error"
    await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0)  # 2 failed attempts
    await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0)  # third failure opens it
    assert agent0.breaker.state == "open"
    server.mode = "ok"
    fast = await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0)
    assert fast[-1].state is RunState.FAILED and "circuit open" in (fast[-1].reason or "")
    await asyncio.sleep(0.6)
    healed = await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0)
    assert healed[-1].state is RunState.PLANNED
    assert agent0.breaker.state == "closed"
    await agent0.close()


@pytest.mark.asyncio
async def test_without_the_service_token_agent0_refuses_and_the_run_fails_saying_so(server: Server) -> None:
    anonymous = client(server.url, token=None)
    failed = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, anonymous))[-1]
    assert failed.state is RunState.FAILED and "HTTP 401" in (failed.reason or "")
    await anonymous.close()
    viewer = issue_token(agent0_settings(), Role.VIEWER, "someone", timedelta(minutes=5))
    looking = client(server.url, token=viewer)
    failed = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, looking))[-1]
    assert failed.state is RunState.FAILED and "HTTP 403" in (failed.reason or "")
    assert looking.breaker.state == "closed"  # Agent0 is up: a refusal is not an outage
    await looking.close()


def account(net_liquidation: float, at: datetime) -> AccountState:
    return AccountState(
        account="DU123",
        base_currency="USD",
        net_liquidation=net_liquidation,
        buying_power=net_liquidation * 4,
        available_funds=net_liquidation,
        excess_liquidity=net_liquidation,
        gross_position_value=0.0,
        time=at,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.asyncio
async def test_the_newest_net_liquidation_on_account_v1_sizes_the_plan(server: Server, settings: Settings) -> None:
    # 0.5 % of the equity at risk at 2 per share (SIGNAL: entry 100, stop 98); Agent0's fallback equity is 100,000.
    newest = NewestAccount()
    feed = AccountFeed(settings, CODEC, newest)
    feed.start()
    agent0 = client(server.url, failures=100, equity=newest)
    try:
        before = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
        assert before.plan is not None and before.plan.quantity == 250  # no record yet: the configured equity
        out = producer(settings)
        out.send(account_states.TOPIC, account(60_000.0, T0))
        out.flush()
        assert wait_for(lambda: newest.net_liquidation() == 60_000.0), "the feed never saw the account record"
        smaller = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
        assert smaller.plan is not None and smaller.plan.quantity == 150
        out.send(account_states.TOPIC, account(80_000.0, T0 + timedelta(minutes=1)))
        out.flush()
        assert wait_for(lambda: newest.net_liquidation() == 80_000.0)
        larger = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
        assert larger.plan is not None and larger.plan.quantity == 200
        assert len({before.plan.plan_id, smaller.plan.plan_id, larger.plan.plan_id}) == 3
    finally:
        await agent0.close()
        feed.stop()


@pytest.mark.asyncio
async def test_a_withdrawal_at_ibsim_shrinks_the_size_agent0_plans(
    server: Server, run_executor: Callable[..., Running]
) -> None:
    # ibsim → execution (reqAccountUpdates) → account.v1 on the broker → orchestration's feed → Agent0's sizing.
    running = run_executor(execution_account_heartbeat_seconds=2.0)
    initial = running.sim.config.initial_cash
    newest = NewestAccount(running.sim.account)
    feed = AccountFeed(running.settings, CODEC, newest)
    feed.start()
    agent0 = client(server.url, failures=100, equity=newest)
    try:
        assert wait_for(lambda: newest.net_liquidation() == initial), "the feed never saw ibsim's account"
        before = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
        running.sim.adjust_cash(-(initial - 60_000.0))  # a withdrawal at the broker leaves 60,000
        assert wait_for(lambda: newest.net_liquidation() == 60_000.0), "the withdrawal never reached the feed"
        after = (await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0))[-1]
    finally:
        await agent0.close()
        feed.stop()
    # 0.5 % of 60,000 at risk at 2 per share (entry 100, stop 98): 150; on the million before, more (or the caps).
    assert after.plan is not None and after.plan.quantity == 150
    assert before.plan is not None and before.plan.quantity > after.plan.quantity


def test_a_plan_over_http_asks_for_a_limit_on_close_entry_and_its_intent_carries_it(server: Server) -> None:
    """POST /v1/plan over a real socket with entry_type LOC: the plan's entry is a LOC limited at the signal's
    entry, and orchestration's intent for the planned run carries it (what execution places as IB's LOC)."""
    import httpx

    from ibstream.contracts import Plan
    from ibstream.contracts.enums import OrderType

    body = {"signal": SIGNAL.model_dump(mode="json"), "entry_type": "LOC"}
    headers = {"authorization": f"Bearer {service_token()}"}
    answer = httpx.post(f"{server.url}/v1/plan", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    plan = Plan.model_validate(answer.json()["plan"])
    assert (plan.order_type, plan.limit_price) == (OrderType.LOC, SIGNAL.entry)
    planning = orch.advance(orch.trigger(SIGNAL), RunState.PLANNING, actor="t")
    intent = orch.intent_for(orch.advance(planning, RunState.PLANNED, actor="t", plan=plan), plan)
    assert (intent.order_type, intent.limit_price, intent.stop_loss) == (OrderType.LOC, SIGNAL.entry, plan.stop_loss)
