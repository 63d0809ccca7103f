"""HTTP/JSON control endpoint (loopback by default) for fault injection and inspection.

A deliberately tiny HTTP/1.1 server on the simulator's own event loop: one request per
connection, JSON in and out. It shares the loop so that every route sees a consistent state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ibsim.config import SimConfig
from ibsim.faults import Faults
from ibsim.market import Bar
from ibstream.exceptions import IbstreamError
from ibstream.sim.ledger import Position
from ibstream.sim.order_values import Execution, OrderSnapshot

log = logging.getLogger("ibsim.control")

Handler = Callable[[dict[str, Any], dict[str, list[str]]], Any]


class HttpError(IbstreamError):
    """Maps to an HTTP error status with a JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _order_json(o: Any) -> dict[str, Any]:
    d: dict[str, Any] = _jsonable(o)
    d["order_id"], d["client_id"], d["order_ref"] = o.order_id, o.client_id, o.order_ref
    return d


def _num(body: dict[str, Any], key: str, default: float | None = None) -> float:
    v = body.get(key, default)
    if v is None:
        raise HttpError(400, f"missing field {key!r}")
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise HttpError(400, f"field {key!r} must be a number") from exc


def _str(body: dict[str, Any], key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise HttpError(400, f"missing string field {key!r}")
    return v


class Inspector(Protocol):
    """What the GET routes read (the :class:`ibsim.simulator.Simulator`'s queries)."""

    config: SimConfig

    def state(self) -> dict[str, Any]: ...

    def orders(self) -> list[OrderSnapshot]: ...

    def executions(self) -> list[Execution]: ...

    def positions(self) -> list[Position]: ...

    def account_values(self) -> dict[str, float]: ...

    def ground_truth_bars(self, symbol: str, start: float | None = None, end: float | None = None) -> list[Bar]: ...


class ControlServer:
    """Routes: see ``ibsim/README.md``. GET routes read ``sim``; POST routes act through ``faults``."""

    def __init__(self, sim: Inspector, faults: Faults) -> None:
        self.sim = sim
        self._server: asyncio.Server | None = None
        s, f = sim, faults
        self.get_routes: dict[str, Handler] = {
            "/health": lambda b, q: {"ok": True},
            "/state": lambda b, q: s.state(),
            "/orders": lambda b, q: [_order_json(o) for o in s.orders()],
            "/executions": lambda b, q: _jsonable(s.executions()),
            "/positions": lambda b, q: _jsonable(s.positions()),
            "/account": lambda b, q: s.account_values(),
        }
        self.post_routes: dict[str, Handler] = {
            "/faults/drop_connections": lambda b, q: {"dropped": f.drop_connections()},
            "/faults/refuse_connections": lambda b, q: f.refuse_connections(
                _num(b, "seconds"), bool(b.get("drop_existing", False))
            ),
            "/faults/connectivity": lambda b, q: f.connectivity_loss(
                _num(b, "outage_seconds", 1.0),
                int(_num(b, "restored_code", 1102)),
                bool(b.get("keep_subscriptions", True)),
            ),
            "/faults/market_data_farm": lambda b, q: f.market_data_farm(
                bool(b.get("ok", False)), bool(b.get("drop_subscriptions", False))
            ),
            "/faults/hmds_farm": lambda b, q: f.hmds_farm(bool(b.get("ok", False))),
            "/faults/competing_session": lambda b, q: f.competing_session(bool(b.get("active", True))),
            "/faults/stall": lambda b, q: f.stall(_str(b, "symbol")),
            "/faults/resume": lambda b, q: f.resume(_str(b, "symbol")),
            "/faults/reject_next_order": lambda b, q: f.reject_next_order(
                int(_num(b, "code", 201)), str(b.get("message", "Order rejected - reason:Simulated rejection"))
            ),
            "/faults/delay": lambda b, q: f.set_delays(_num(b, "ack_seconds", 0.0), _num(b, "fill_seconds", 0.0)),
            "/faults/pacing": lambda b, q: f.set_pacing(bool(b.get("enabled", True))),
            "/faults/restart": lambda b, q: f.restart_gateway(
                _num(b, "downtime_seconds", 1.0), int(_num(b, "rollback", 0))
            ),
            "/faults/lose_next_transmit": lambda b, q: f.lose_next_transmit(_num(b, "restart_seconds", 0.0)),
            "/faults/clear": lambda b, q: f.clear(),
            "/market/entitlement": lambda b, q: f.set_live_data_entitled(bool(b.get("live", True))),
            "/clock/advance": lambda b, q: f.advance_clock(_num(b, "seconds")),
            "/market/halt": lambda b, q: f.halt_trading(bool(b.get("halted", True))),
            "/clock/release": lambda b, q: f.release_clock(),
            "/account/cash": lambda b, q: f.adjust_cash(_num(b, "amount"), bool(b.get("as_pnl", False))),
        }

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def route(self, method: str, target: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Dispatch one request (also usable without HTTP, e.g. from tests)."""
        url = urlsplit(target)
        path, query = url.path.rstrip("/") or "/", parse_qs(url.query)
        try:
            if method == "GET" and path.startswith("/bars/"):
                return 200, self._bars(path.removeprefix("/bars/"), query)
            table = self.get_routes if method == "GET" else self.post_routes if method == "POST" else None
            if table is None:
                raise HttpError(405, f"method {method} not allowed")
            handler = table.get(path)
            if handler is None:
                raise HttpError(404, f"no route {method} {path}")
            result = handler(body, query)
            return 200, {"ok": True} if result is None else result
        except HttpError as exc:
            return exc.status, {"error": str(exc)}
        except (KeyError, ValueError) as exc:
            return 400, {"error": str(exc)}

    def _bars(self, symbol: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        start = float(query["start"][0]) if "start" in query else None
        end = float(query["end"][0]) if "end" in query else None
        if self.sim.config.instrument(symbol) is None:
            raise HttpError(404, f"unknown symbol {symbol}")
        return [dataclasses.asdict(b) for b in self.sim.ground_truth_bars(symbol, start, end)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            length = int(headers.get("content-length", "0") or 0)
            if length > 1 << 20:
                raise HttpError(413, "body too large")
            raw = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise HttpError(400, f"invalid JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise HttpError(400, "body must be a JSON object")
            status, payload = self.route(method.upper(), target, body)
        except HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, payload = 400, {"error": "malformed request"}
        except Exception as exc:
            log.exception("control request failed")
            status, payload = 500, {"error": type(exc).__name__}
        data = json.dumps(payload).encode()
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            413: "Payload Too Large",
            500: "Internal Server Error",
        }.get(status, "Error")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()
