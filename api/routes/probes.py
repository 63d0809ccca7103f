"""Probes and metrics: ``GET /health`` (liveness), ``GET /ready`` (readiness) and ``GET /metrics``.

/ready is unauthenticated and not rate limited, and each check costs a warehouse query and a Kafka round trip, so
it answers from its last check for ``IBSTREAM_API_READY_CACHE_SECONDS``, and one check runs at a time: a flood of
probes costs one check per period, not one per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.commands import CommandSink
from api.embedded import SinkHandle
from api.models import Health
from ibstream import telemetry
from ibstream.warehouse import WarehouseError

router = APIRouter(tags=["probes"])


@dataclass
class ReadinessCache:
    """The last readiness checks and when they ran (monotonic seconds)."""

    max_age: float
    checked_at: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _sink_alive(app: FastAPI) -> bool:
    sink: SinkHandle | None = app.state.sink
    return sink is None or sink.alive


def _answer(checks: dict[str, bool]) -> Response:
    ok = all(checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request) -> Response:
    """Liveness: the process serves requests (and the embedded sink thread, if any, still runs)."""
    return _answer({"sink": _sink_alive(request.app)})


def _check_dependencies(app: FastAPI) -> dict[str, bool]:
    try:
        app.state.warehouse.query("SELECT 1")
        warehouse_ok = True
    except WarehouseError:
        warehouse_ok = False
    commands: CommandSink = app.state.commands
    return {"warehouse": warehouse_ok, "kafka": commands.reachable()}


@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
def ready(request: Request) -> Response:
    """Readiness: the warehouse answers a query and a Kafka broker answers a metadata request (checked at most once
    per IBSTREAM_API_READY_CACHE_SECONDS); the embedded sink, if any, runs."""
    app = request.app
    cache: ReadinessCache = app.state.readiness
    with cache.lock:  # concurrent probes wait for the one check in flight and share its answer
        now = time.monotonic()
        if cache.checked_at is None or now - cache.checked_at >= cache.max_age:
            cache.checks = _check_dependencies(app)
            cache.checked_at = time.monotonic()
        checks = dict(cache.checks)
    # The sink's liveness is a thread flag, free to read: always current.
    return _answer({**checks, "sink": _sink_alive(app)})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
)
def metrics() -> Response:
    """Prometheus exposition of the process's metrics (requests, commands, embedded sink)."""
    body, content_type = telemetry.prometheus_exposition()
    return Response(body, media_type=content_type)
