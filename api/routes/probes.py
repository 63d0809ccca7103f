"""Probes and metrics: ``GET /health`` (liveness), ``GET /ready`` (readiness) and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.commands import CommandSink
from api.embedded import SinkHandle
from api.models import Health
from ibstream import telemetry
from ibstream.warehouse import WarehouseError

router = APIRouter(tags=["probes"])


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


@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
def ready(request: Request) -> Response:
    """Readiness: the warehouse answers a query and a Kafka broker answers a metadata request."""
    app = request.app
    try:
        app.state.warehouse.query("SELECT 1")
        warehouse_ok = True
    except WarehouseError:
        warehouse_ok = False
    commands: CommandSink = app.state.commands
    return _answer({"warehouse": warehouse_ok, "kafka": commands.reachable(), "sink": _sink_alive(app)})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
)
def metrics() -> Response:
    """Prometheus exposition of the process's metrics (requests, commands, embedded sink)."""
    body, content_type = telemetry.prometheus_exposition()
    return Response(body, media_type=content_type)
