"""The HTTP API (``ibstream run api``): reads history from the warehouse, writes operator commands to Kafka.

It never talks to IB. Commands are acknowledged (202 with the command id) only after Kafka acknowledged them.
Roles: ``viewer`` reads, ``trader`` also triggers, approves and rejects runs, ``admin`` also flips the kill switch.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import queries
from api.auth import Principal, Role, TokenVerifier, authorize, check_auth_settings, unauthorized
from api.charts import add_chart_routes
from api.commands import CommandSink, Delivered, KafkaCommandSink, build_command
from api.console.router import add_console
from api.embedded import SinkHandle, start_sink
from api.errors import DEFAULT_CODES, ApiError, ErrorBody, errors
from api.limits import BodySizeLimitMiddleware, RateLimitMiddleware, TokenBuckets
from api.models import (
    ID_PATTERN,
    SYMBOL_PATTERN,
    CommandAccepted,
    DecisionRequest,
    Health,
    KillSwitchRequest,
    OrderDetail,
    OrderPage,
    RunDetail,
    RunPage,
    SignalDetail,
    SignalPage,
    TriggerRunRequest,
)
from api.pipeline import add_pipeline_routes
from api.precheck import add_precheck_routes
from ibstream import telemetry
from ibstream.config import LOG_LEVELS, Settings, get_settings
from ibstream.contracts import ControlCommand
from ibstream.contracts.enums import ControlCommandKind, OrderStatus, RunState, SignalStatus
from ibstream.telemetry import log_context, meter
from ibstream.warehouse import Warehouse, WarehouseError

log = logging.getLogger(__name__)

COMPONENT = "api"
#: Never rate limited: probes must not fail because a client is noisy, and scrapes are the operator's.
UNLIMITED_PATHS = ("/health", "/ready", "/metrics")

_requests = meter("api.http").create_counter(
    "ibstream_api_requests_total", description="HTTP requests by route template, method and status"
)

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT with `sub`, `exp`, `iss`, `aud` and a `role` (viewer, trader, admin) or `roles` claim.",
)

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")]


def _iso_only(value: Any) -> Any:
    # pydantic reads a bare number as a Unix timestamp; the documented format is ISO 8601, so refuse the rest.
    if isinstance(value, str) and not any(c in value for c in "-:T"):
        raise ValueError("expected an ISO 8601 time such as 2026-03-02T14:30:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]
Since = Annotated[IsoTime | None, Query(description="only items at or after this time (ISO 8601; naive = UTC)")]
Until = Annotated[IsoTime | None, Query(description="only items before this time (ISO 8601; naive = UTC)")]
Symbol = Annotated[str | None, Query(pattern=SYMBOL_PATTERN)]
IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]
SignalId = Annotated[str, Path(pattern=ID_PATTERN)]
RunId = Annotated[str, Path(pattern=ID_PATTERN)]
OrderId = Annotated[str, Path(pattern=ID_PATTERN)]


def _utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise unauthorized("unauthorized", "a bearer token is required (Authorization: Bearer <jwt>)")
    verifier: TokenVerifier = request.app.state.verifier
    return verifier.verify(credentials.credentials)


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting callers whose role includes ``role``."""

    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        authorize(principal, role)
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Trader = Annotated[Principal, Depends(require(Role.TRADER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def _reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not declare: a typo (``?symbl=AAPL``) must not silently widen
    a filter to everything."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: set[str] = set()
    pending = [dependant]
    while pending:  # the route's own parameters and those of its dependencies, recursively
        current = pending.pop()
        known.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"} for name in unknown]
        )


def _warehouse(request: Request) -> Warehouse:
    warehouse: Warehouse = request.app.state.warehouse
    return warehouse


def _accepted(command: ControlCommand, delivered: Delivered) -> CommandAccepted:
    return CommandAccepted(
        command_id=command.command_id,
        command=command.command,
        target=command.target,
        actor=command.actor,
        reason=command.reason,
        issued_time=command.issued_time,
        topic=delivered.topic,
        partition=delivered.partition,
        offset=delivered.offset,
    )


def _publish(request: Request, command: ControlCommand) -> CommandAccepted:
    sink: CommandSink = request.app.state.commands
    return _accepted(command, sink.publish(command))


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return _error_response(error)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        code = DEFAULT_CODES.get(error.status_code, "error")
        message = str(error.detail) if error.detail else code.replace("_", " ")
        return _error_response(ApiError(error.status_code, code, message, dict(error.headers or {})))

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        # Only location, message and type: the raw input may be large, binary or secret.
        details = [
            {
                "loc": [str(part) for part in item.get("loc", ())],
                "msg": str(item.get("msg")),
                "type": str(item.get("type")),
            }
            for item in error.errors()
        ]
        body = ErrorBody(code="validation_error", message="the request is not valid", details=details)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=422)

    async def warehouse_error(request: Request, error: Exception) -> Response:
        log.error("warehouse error", extra={"path": request.url.path, "error": str(error)})
        return _error_response(ApiError(503, "warehouse_unavailable", "the warehouse cannot answer right now"))

    async def internal_error(request: Request, error: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path}, exc_info=error)
        return _error_response(ApiError(500, "internal_error", "internal error; it has been logged"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(WarehouseError, warehouse_error)
    app.add_exception_handler(Exception, internal_error)


def create_app(
    settings: Settings,
    warehouse: Warehouse,
    commands: CommandSink,
    *,
    sink: SinkHandle | None = None,
    buckets: TokenBuckets | None = None,
) -> FastAPI:
    """Build the application over an open warehouse and a command sink (both owned by the caller)."""
    check_auth_settings(settings)
    app = FastAPI(
        title="ibstream API",
        version="1.0.0",
        summary="Signals, runs, approvals, orders and the kill switch of the ibstream paper-trading pipeline.",
        description=__doc__,
        dependencies=[Depends(_reject_unknown_query)],
    )
    app.state.settings = settings
    app.state.warehouse = warehouse
    app.state.commands = commands
    app.state.sink = sink
    app.state.verifier = TokenVerifier(settings)
    _install_error_handlers(app)

    app.add_middleware(RequestMetricsMiddleware)
    # Added last = outermost: CORS headers also go on 413/429 answers, so browsers can read them.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        buckets=buckets or TokenBuckets(settings.api.rate_limit_per_minute, settings.api.rate_limit_burst),
        exempt=UNLIMITED_PATHS,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.api.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Retry-After"],
        max_age=600,
    )
    _add_probe_routes(app)
    _add_read_routes(app)
    _add_command_routes(app)
    # The operator console (api/console) and the routes it reads besides the ones above.
    viewer = require(Role.VIEWER)
    add_precheck_routes(app, viewer)
    add_pipeline_routes(app, viewer)
    add_chart_routes(app, viewer)
    add_console(app)
    return app


class RequestMetricsMiddleware:
    """Counts requests by route template, method and status.

    Plain ASGI on purpose: Starlette's ``BaseHTTPMiddleware`` runs the app in a task group, which wraps errors
    raised while reading the body (the 413 of the body limit) in an ExceptionGroup that FastAPI turns into a 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = ["500"]

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router stores the matched route in the (shared) scope; its template keeps label cardinality low.
            template = getattr(scope.get("route"), "path", "unmatched")
            _requests.add(1, {"route": template, "method": scope["method"], "status": status[0]})


def _sink_alive(app: FastAPI) -> bool:
    sink: SinkHandle | None = app.state.sink
    return sink is None or sink.alive


def _add_probe_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["probes"], responses={503: {"model": Health}})
    def health() -> Response:
        """Liveness: the process serves requests (and the embedded sink thread, if any, still runs)."""
        checks = {"sink": _sink_alive(app)}
        ok = all(checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/ready", response_model=Health, tags=["probes"], responses={503: {"model": Health}})
    def ready() -> Response:
        """Readiness: the warehouse answers a query and a Kafka broker answers a metadata request."""
        try:
            app.state.warehouse.query("SELECT 1")
            warehouse_ok = True
        except WarehouseError:
            warehouse_ok = False
        commands: CommandSink = app.state.commands
        checks = {"warehouse": warehouse_ok, "kafka": commands.reachable(), "sink": _sink_alive(app)}
        ok = all(checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["probes"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
    )
    def metrics() -> Response:
        """Prometheus exposition of the process's metrics (requests, commands, embedded sink)."""
        body, content_type = telemetry.prometheus_exposition()
        return Response(body, media_type=content_type)


def _add_read_routes(app: FastAPI) -> None:
    @app.get("/v1/signals", response_model=SignalPage, tags=["signals"], responses=errors())
    def list_signals(
        principal: Viewer,
        request: Request,
        limit: Limit = 100,
        cursor: Cursor = None,
        symbol: Symbol = None,
        strategy: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
        status: SignalStatus | None = None,
        since: Since = None,
        until: Until = None,
    ) -> SignalPage:
        """Signals newest first, filtered by symbol, strategy, current status and creation time."""
        return queries.list_signals(
            _warehouse(request),
            symbol=symbol,
            strategy=strategy,
            status=status,
            since=_utc(since),
            until=_utc(until),
            limit=limit,
            cursor=cursor,
        )

    @app.get("/v1/signals/{signal_id}", response_model=SignalDetail, tags=["signals"], responses=errors(404))
    def get_signal(principal: Viewer, request: Request, signal_id: SignalId) -> SignalDetail:
        """One signal with its lifecycle transitions, runs and outcome."""
        with log_context(signal_id=signal_id):
            return queries.get_signal(_warehouse(request), signal_id)

    @app.get("/v1/runs", response_model=RunPage, tags=["runs"], responses=errors())
    def list_runs(
        principal: Viewer,
        request: Request,
        limit: Limit = 100,
        cursor: Cursor = None,
        signal_id: IdFilter = None,
        symbol: Symbol = None,
        state: RunState | None = None,
        since: Since = None,
        until: Until = None,
    ) -> RunPage:
        """Orchestration runs, most recently started first, each in its latest state."""
        return queries.list_runs(
            _warehouse(request),
            signal_id=signal_id,
            symbol=symbol,
            state=state,
            since=_utc(since),
            until=_utc(until),
            limit=limit,
            cursor=cursor,
        )

    @app.get("/v1/runs/{run_id}", response_model=RunDetail, tags=["runs"], responses=errors(404))
    def get_run(principal: Viewer, request: Request, run_id: RunId) -> RunDetail:
        """One run: state history, latest plan, failures and its orders."""
        with log_context(run_id=run_id):
            return queries.get_run(_warehouse(request), run_id)

    @app.get("/v1/orders", response_model=OrderPage, tags=["orders"], responses=errors())
    def list_orders(
        principal: Viewer,
        request: Request,
        limit: Limit = 100,
        cursor: Cursor = None,
        symbol: Symbol = None,
        run_id: IdFilter = None,
        status: OrderStatus | None = None,
        since: Since = None,
        until: Until = None,
    ) -> OrderPage:
        """Orders newest first with their risk verdict and latest broker status."""
        return queries.list_orders(
            _warehouse(request),
            symbol=symbol,
            run_id=run_id,
            status=status.value if status else None,
            since=_utc(since),
            until=_utc(until),
            limit=limit,
            cursor=cursor,
        )

    @app.get("/v1/orders/{order_id}", response_model=OrderDetail, tags=["orders"], responses=errors(404))
    def get_order(principal: Viewer, request: Request, order_id: OrderId) -> OrderDetail:
        """The order's full trail: intent, risk decision with each check, events, fills, reconciliation, audit."""
        with log_context(order_id=order_id):
            return queries.get_order(_warehouse(request), order_id)


def _decide(request: Request, principal: Principal, run_id: str, kind: ControlCommandKind, reason: str) -> Any:
    with log_context(run_id=run_id):
        state = queries.run_state(_warehouse(request), run_id)
        if state is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} in the warehouse")
        if state in queries.FINAL_RUN_STATES:
            raise ApiError(409, "run_already_decided", f"run {run_id} is {state.value}; it cannot be decided now")
        return _publish(request, build_command(kind, run_id, reason, principal.subject))


def _add_command_routes(app: FastAPI) -> None:
    @app.post("/v1/runs", status_code=202, response_model=CommandAccepted, tags=["runs"], responses=errors(404))
    def trigger_run(principal: Trader, request: Request, body: TriggerRunRequest) -> Any:
        """Ask orchestration to open a run for a signal (``trigger_run`` on control.v1)."""
        with log_context(signal_id=body.signal_id):
            if not queries.signal_exists(_warehouse(request), body.signal_id):
                raise ApiError(404, "signal_not_found", f"no signal {body.signal_id} in the warehouse")
            command = build_command(ControlCommandKind.TRIGGER_RUN, body.signal_id, body.reason, principal.subject)
            return _publish(request, command)

    @app.post(
        "/v1/runs/{run_id}/approve",
        status_code=202,
        response_model=CommandAccepted,
        tags=["runs"],
        responses=errors(404, 409),
    )
    def approve_run(principal: Trader, request: Request, run_id: RunId, body: DecisionRequest) -> Any:
        """Approve a run awaiting approval (``approve_run``); the reason and the caller are recorded."""
        return _decide(request, principal, run_id, ControlCommandKind.APPROVE_RUN, body.reason)

    @app.post(
        "/v1/runs/{run_id}/reject",
        status_code=202,
        response_model=CommandAccepted,
        tags=["runs"],
        responses=errors(404, 409),
    )
    def reject_run(principal: Trader, request: Request, run_id: RunId, body: DecisionRequest) -> Any:
        """Reject a run (``reject_run``); the reason and the caller are recorded."""
        return _decide(request, principal, run_id, ControlCommandKind.REJECT_RUN, body.reason)

    @app.post(
        "/v1/control/kill-switch", status_code=202, response_model=CommandAccepted, tags=["control"], responses=errors()
    )
    def kill_switch(principal: Admin, request: Request, body: KillSwitchRequest) -> Any:
        """Turn the kill switch on or off, globally or for one symbol (read by risk and execution)."""
        kind = ControlCommandKind.KILL_SWITCH_ON if body.state == "on" else ControlCommandKind.KILL_SWITCH_OFF
        with log_context(symbol=None if body.target == "global" else body.target):
            log.warning("kill switch", extra={"state": body.state, "actor": principal.subject, "reason": body.reason})
            return _publish(request, build_command(kind, body.target, body.reason, principal.subject))


def main(argv: list[str]) -> int:
    """``ibstream run api [--with-sink] [--host H] [--port P]``: serve until SIGTERM/SIGINT, then clean up."""
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="ibstream run api",
        description="The HTTP API and the operator console: signals, runs, orders and fills from the warehouse; "
        "approving or rejecting runs and the kill switch. Callers need a token (`ibstream token`).",
    )
    parser.add_argument(
        "--with-sink",
        action="store_true",
        help="also run the warehouse sink in this process (needed with the embedded warehouse)",
    )
    parser.add_argument("--host", default=None, help="bind address (IBSTREAM_API_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (IBSTREAM_API_PORT)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv)
    settings = get_settings()
    # Before opening anything: a missing key is a configuration error naming the setting.
    check_auth_settings(settings)
    telemetry.configure(COMPONENT, args.log_level or settings.log_level)
    if settings.warehouse.clickhouse_url is None and not args.with_sink:
        log.warning(
            "embedded warehouse without --with-sink: this process holds the chDB directory, so no separate sink "
            "can write to it; the API will serve what is already stored"
        )
    warehouse = Warehouse.open(settings)
    sink: SinkHandle | None = None
    commands: KafkaCommandSink | None = None
    try:
        if args.with_sink:
            sink = start_sink(settings, warehouse)
        commands = KafkaCommandSink(settings)
        app = create_app(settings, warehouse, commands, sink=sink)
        config = uvicorn.Config(
            app,
            host=args.host or settings.api.host,
            port=args.port or settings.api.port,
            log_config=None,  # keep the JSON logging telemetry.configure installed
            access_log=False,
            server_header=False,
        )
        server = uvicorn.Server(config)
        log.info("api starting", extra={"port": config.port, "with_sink": args.with_sink})
        server.run()  # uvicorn handles SIGTERM/SIGINT: stops accepting, drains, returns
    finally:
        # Order: stop serving (done), stop the sink (flush + commit), deliver queued commands, release chDB last.
        if sink is not None:
            try:
                sink.stop()
            except Exception:
                log.exception("the embedded sink stopped with an error")
        if commands is not None:
            commands.close()
        warehouse.close()
    return 0
