"""Agent0 on the one road, every part real: a streams worker (orchestration, manual approval) plans through Agent0
on a socket, the API (uvicorn, embedded warehouse sink) records the run, Agent0 asks the API whether the run is
approved, and the broker is read back to see who wrote ``orders.intents.v1``.

An execute of an unapproved run is a 409 that puts nothing on ``orders.intents.v1``; once an operator approves
through the API, orchestration writes the run's one intent and execute answers 200 with that intent's order_id,
adding nothing of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from api.agent0 import api_run_lookup
from api.app import create_app
from api.auth import Role, issue_token
from api.commands import KafkaCommandSink
from api.embedded import start_sink
from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import order_intents, signals
from ibstream.warehouse import Warehouse

from .streams_support import AGENT0_SECRET, Agent0Server, StreamsWorker, TopicReader, free_port, producer
from .test_streams_orchestration import signal

pytestmark = pytest.mark.integration


class ApiServer:
    """The real API with its embedded sink and Kafka command sink, on uvicorn in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.warehouse = Warehouse.open(settings)
        self.sink = start_sink(settings, self.warehouse)
        self.commands = KafkaCommandSink(settings)
        app = create_app(settings, self.warehouse, self.commands)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self._server.started, "the API did not start within 20 s"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self.sink.stop()
        self.commands.close()
        self.warehouse.close()


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(
        warehouse_dir=tmp_path / "wh",
        api_jwt_secret=SecretStr(AGENT0_SECRET),
        warehouse_batch_rows=100,
        warehouse_batch_seconds=0.2,
    )


@pytest.fixture
def api(api_settings: Settings) -> Iterator[ApiServer]:
    server = ApiServer(api_settings).start()
    yield server
    server.stop()


def bearer(settings: Settings, role: Role, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, role, subject, timedelta(minutes=10))}"}


def run_state(api: ApiServer, run_id: str, headers: dict[str, str]) -> dict[str, Any] | None:
    response = httpx.get(f"{api.url}/v1/runs/{run_id}", headers=headers, timeout=5)
    return response.json() if response.status_code == 200 else None


def wait_for_state(api: ApiServer, run_id: str, state: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = run_state(api, run_id, headers)
        if run is not None and run["state"] == state:
            return run
        time.sleep(0.2)
    raise AssertionError(
        f"run {run_id} never reached {state} in the warehouse (last: {run_state(api, run_id, headers)})"
    )


def test_execute_of_an_unapproved_run_is_409_and_nothing_reaches_orders_intents(
    settings: Settings, api_settings: Settings, api: ApiServer, tmp_path: Path
) -> None:
    agent0 = Agent0Server(tmp_path, runs=api_run_lookup(api_settings.with_overrides(agent0_api_url=api.url))).start()
    worker = StreamsWorker(settings, tmp_path, "orchestration", agent0_url=agent0.url, approval_mode="manual").start()
    intents = TopicReader(settings, order_intents.TOPIC)
    trader = bearer(api_settings, Role.TRADER, "tom")
    try:
        hot = signal("hot", 0.9)
        run_id = ids.run_id(hot.signal_id)
        out = producer(settings)
        out.send(signals.TOPIC, hot)
        out.flush()
        awaiting = wait_for_state(api, run_id, "awaiting_approval", trader, 120)
        plan_id = awaiting["plan"]["plan_id"]

        refused = httpx.post(f"{agent0.url}/v1/execute", json={"plan_id": plan_id}, headers=trader, timeout=10)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "not_approved" and "awaiting_approval" in refused.json()["message"]
        # Checked on the broker: nothing on orders.intents.v1 (given time to arrive, were anything sent).
        intents.poll_until(lambda records: len(records) > 0, 5)
        assert intents.records == [], worker.log()[-3000:]

        approved = httpx.post(
            f"{api.url}/v1/runs/{run_id}/approve", json={"reason": "fits the plan"}, headers=trader, timeout=10
        )
        assert approved.status_code == 202, approved.text
        intents.poll_until(lambda records: len(records) >= 1, 60)
        assert [(i.order_id, i.requested_by) for i in intents.records] == [(ids.order_id(run_id), "orchestration:tom")]
        wait_for_state(api, run_id, "submitted", trader, 60)
        handed = httpx.post(f"{agent0.url}/v1/execute", json={"plan_id": plan_id}, headers=trader, timeout=10)
        assert handed.status_code == 200, handed.text
        assert (handed.json()["order_id"], handed.json()["approved_by"]) == (ids.order_id(run_id), "tom")
        intents.poll_until(lambda records: len(records) > 1, 5)
        assert len(intents.records) == 1  # Agent0 added nothing: orchestration wrote the one intent
    finally:
        worker.stop()
        agent0.stop()
        intents.close()
