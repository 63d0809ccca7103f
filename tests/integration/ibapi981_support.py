"""ibapi 9.81 against ibsim from the 10.x test process: the old client runs in its side venv as a subprocess
(``tests/integration/ibapi981_client.py``), and :class:`Ibapi981` reads it like the in-process ``Recorder``.

The side venv is ``.state/venvs/ibapi-9.81`` (``ops/dev install`` makes it); ``IBSTREAM_TEST_IBAPI981_PYTHON`` names
another interpreter that has ibapi 9.81. Without one the tests skip, and fail under CI (tests/tools.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ibsim import Simulator
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SCRIPT = Path(__file__).with_name("ibapi981_client.py")


def ibapi981_python() -> Path:
    """The interpreter of ibapi 9.81's side venv."""
    override = os.environ.get("IBSTREAM_TEST_IBAPI981_PYTHON")
    return Path(override) if override else ROOT / ".state" / "venvs" / "ibapi-9.81" / "bin" / "python"


def contract(symbol: str) -> dict[str, Any]:
    return {"Contract": {"symbol": symbol, "secType": "STK", "exchange": "SMART", "currency": "USD"}}


def order(action: str, quantity: float, order_type: str, **fields: Any) -> dict[str, Any]:
    """An Order argument; 9.81 sends eTradeOnly/firmQuoteOnly set unless told otherwise (current gateways refuse)."""
    attributes = {"action": action, "totalQuantity": quantity, "orderType": order_type}
    return {"Order": {**attributes, "eTradeOnly": False, "firmQuoteOnly": False, **fields}}


class Ibapi981:
    """One ibapi 9.81 client in a subprocess: commands as JSON lines (see ibapi981_client.py)."""

    def __init__(self, python: Path) -> None:
        self.process = subprocess.Popen(
            [str(python), str(CLIENT_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        self.server_version = 0
        self.next_valid_id = 0

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the ibapi 9.81 client exited (code {self.process.poll()})"
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def connect(self, port: int, client_id: int) -> Ibapi981:
        answer = self.ask("connect", port=port, client_id=client_id)
        self.server_version, self.next_valid_id = answer["server_version"], answer["next_valid_id"]
        return self

    def call(self, method: str, *args: Any) -> None:
        self.ask("call", method=method, args=list(args))

    def wait_event(self, callback: str, req_id: Any = None, count: int = 1, timeout: float = 10.0) -> list[list[Any]]:
        events: list[list[Any]] = self.ask("wait", callback=callback, req_id=req_id, count=count, timeout=timeout)[
            "events"
        ]
        return events

    def wait_for(
        self, callback: str, predicate: Callable[[list[Any]], bool], req_id: Any = None, timeout: float = 10.0
    ) -> list[list[Any]]:
        """The events of ``callback`` that satisfy ``predicate``, waiting for more until one does."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.of(callback, req_id)
            hits = [e for e in seen if predicate(e)]
            if hits:
                return hits
            left = deadline - time.monotonic()
            assert left > 0, f"no {callback} as wanted within {timeout}s; last: {seen[-3:]}"
            self.wait_event(callback, req_id, count=len(seen) + 1, timeout=left)

    def of(self, callback: str, req_id: Any = None) -> list[list[Any]]:
        return [e for e in self.ask("events")["events"] if e[0] == callback and (req_id is None or e[1] == req_id)]

    def errors(self, code: int | None = None) -> list[list[Any]]:
        """error events as ``["error", reqId, code, text]`` (9.81's signature)."""
        return [e for e in self.of("error") if code is None or e[2] == code]

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def ibapi981_factory() -> Iterator[Callable[[Simulator, int], Ibapi981]]:
    """Connected ibapi 9.81 clients in subprocesses (ready: nextValidId received); stopped at teardown."""
    python = ibapi981_python()
    require_tool(None if python.exists() else f"no ibapi 9.81 side venv at {python} (run ops/dev install)")
    clients: list[Ibapi981] = []

    def make(sim: Simulator, client_id: int) -> Ibapi981:
        client = Ibapi981(python)
        clients.append(client)
        return client.connect(sim.port, client_id)

    yield make
    for client in clients:
        client.stop()
