"""Planning over real sockets: Agent0 (uvicorn) ok, slow (timeout), 500, and a closed port (refused) → the run
fails with the cause; the breaker opens after N failures and closes again once Agent0 answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Response

from api.agent0 import PlanStore, create_app
from ibstream.config import load_settings
from ibstream.contracts.enums import RunState
from streams import orchestration as orch
from streams.orchestration.agent0_client import Agent0Client
from tests.unit.streams.test_streams_orchestration import SIGNAL

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A uvicorn server in a thread; ``mode`` switches the behaviour of the stub routes at runtime."""

    def __init__(self, tmp_path: Path) -> None:
        self.mode = "ok"
        agent0 = create_app(load_settings(), PlanStore(tmp_path / "a0.sqlite"), lambda intent: None)
        # "ok" forwards to the real Agent0 app; "slow" and "error" simulate its failures on the same socket.
        self.app = FastAPI()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        @self.app.post("/v1/plan")
        async def switch(body: dict) -> Response:  # type: ignore[type-arg]
            if self.mode == "slow":
                await asyncio.sleep(1.0)
            if self.mode == "error":
                return Response("boom", status_code=500)
            from fastapi.testclient import TestClient

            real = TestClient(agent0).post("/v1/plan", json=body)
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


def client(url: str, failures: int = 3, reset: float = 0.5) -> Agent0Client:
    return Agent0Client(
        url, timeout=0.3, max_attempts=2, backoff_seconds=0.01, breaker=orch.CircuitBreaker(failures, reset)
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
