"""An ibapi 9.81 client driven over stdin/stdout, for the tests that check ibsim still serves IB's old client.

The main venv has IB's 10.x client, which owns the same package name (``ibapi``), so 9.81 lives in a side venv
(``.state/venvs/ibapi-9.81``, made by ``ops/dev install``) and this script runs there as a subprocess. It imports
nothing but ibapi 9.81 and the standard library. One JSON command per stdin line, one JSON answer per stdout line:

- ``{"op": "connect", "port": P, "client_id": C}`` -> ``{"server_version": V, "next_valid_id": N}``
- ``{"op": "call", "method": "placeOrder", "args": [...]}`` -> ``{"ok": true}``; an argument
  ``{"Contract": {...}}`` (or Order, TagValue, ExecutionFilter) is built as that ibapi object with those attributes
- ``{"op": "wait", "callback": "openOrder", "count": 1, "timeout": 5, "req_id": null}`` -> ``{"events": [...]}``,
  every recorded call of that callback (first argument ``req_id`` when given), once there are ``count`` of them
- ``{"op": "events"}`` -> ``{"events": [...]}``: everything recorded; ``{"op": "quit"}`` disconnects and exits

A recorded event is ``[callback, *args]`` with ibapi objects as dicts of their attributes. A failed command
answers ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

BUILDABLE = {"Contract": Contract, "Order": Order, "TagValue": TagValue, "ExecutionFilter": ExecutionFilter}

#: The callbacks recorded (9.81's names and signatures).
CALLBACKS = (
    "error",
    "nextValidId",
    "managedAccounts",
    "currentTime",
    "contractDetails",
    "contractDetailsEnd",
    "tickPrice",
    "tickSize",
    "realtimeBar",
    "historicalData",
    "historicalDataEnd",
    "openOrder",
    "openOrderEnd",
    "completedOrder",
    "completedOrdersEnd",
    "orderStatus",
    "execDetails",
    "execDetailsEnd",
    "commissionReport",
    "position",
    "positionEnd",
    "updateAccountValue",
    "updatePortfolio",
    "accountDownloadEnd",
    "pnl",
    "pnlSingle",
)


def plain(value: Any) -> Any:
    """A JSON-able form of a callback argument: ibapi objects as dicts of their attributes."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: plain(v) for k, v in vars(value).items()}
    return str(value)


def build(value: Any) -> Any:
    """The ibapi object a JSON argument names (``{"Order": {...}}``), recursively; anything else as it is."""
    if isinstance(value, list):
        return [build(v) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        [(kind, attributes)] = value.items()
        if kind in BUILDABLE:
            obj = BUILDABLE[kind]()
            for name, attribute in attributes.items():
                setattr(obj, name, build(attribute))
            return obj
    return value


class Client(EWrapper, EClient):  # type: ignore[misc]
    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.events: list[list[Any]] = []
        self.cond = threading.Condition()

    def record(self, name: str, *args: Any) -> None:
        with self.cond:
            self.events.append([name, *(plain(a) for a in args)])
            self.cond.notify_all()

    def matching(self, name: str, req_id: Any) -> list[list[Any]]:
        return [e for e in self.events if e[0] == name and (req_id is None or (len(e) > 1 and e[1] == req_id))]

    def wait(self, name: str, count: int, timeout: float, req_id: Any) -> list[list[Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.matching(name, req_id)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{count} x {name} not within {timeout}s; last: {self.events[-5:]}")
                self.cond.wait(min(left, 0.05))
            return self.matching(name, req_id)


def _recorder(name: str) -> Any:
    def method(self: Client, *args: Any) -> None:
        self.record(name, *args)

    method.__name__ = name
    return method


for _name in CALLBACKS:
    setattr(Client, _name, _recorder(_name))


def handle(client: Client, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "connect":
        client.connect("127.0.0.1", command["port"], command["client_id"])
        threading.Thread(target=client.run, daemon=True).start()
        [[_, next_valid_id]] = client.wait("nextValidId", 1, command.get("timeout", 10), None)[:1]
        return {"server_version": client.serverVersion(), "next_valid_id": next_valid_id}
    if op == "call":
        getattr(client, command["method"])(*build(command.get("args", [])))
        return {"ok": True}
    if op == "wait":
        req_id = command.get("req_id")
        return {"events": client.wait(command["callback"], command.get("count", 1), command.get("timeout", 10), req_id)}
    if op == "events":
        with client.cond:
            return {"events": list(client.events)}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    client = Client()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        try:
            answer = handle(client, command)
        except Exception as error:  # the test reads the reason; the client stays up for the next command
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)
    if client.isConnected():
        client.disconnect()


if __name__ == "__main__":
    main()
