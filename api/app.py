"""The HTTP API (``ibstream run api``): reads history from the warehouse, writes operator commands to Kafka.

It never talks to IB. Commands are acknowledged (202 with the command id) only after Kafka acknowledged them.
Roles: ``viewer`` reads, ``trader`` also triggers, approves and rejects runs, ``admin`` also flips the kill switch.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.auth import TokenVerifier, check_auth_settings
from api.commands import CommandSink, KafkaCommandSink
from api.console.router import add_console
from api.embedded import SinkHandle, start_sink
from api.handlers import install_error_handlers
from api.limits import (
    BodySizeLimitMiddleware,
    ClientKeys,
    KnownMethodsMiddleware,
    RateLimitMiddleware,
    TokenBuckets,
)
from api.metrics import RequestMetricsMiddleware, instrument
from api.routes import (
    account,
    audits,
    charts,
    control,
    flatten,
    order_commands,
    orders,
    pipeline,
    positions,
    precheck,
    probes,
    runs,
    signals,
    strategies,
    strategy_performance,
)
from api.routes.deps import reject_unknown_query
from ibstream import telemetry
from ibstream.config import LOG_LEVELS, Settings, get_settings
from ibstream.strategies import discover
from ibstream.strategies.instances import load_instances
from ibstream.trading_states import ACCOUNT
from ibstream.warehouse import Warehouse

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

COMPONENT = "api"
#: Never rate limited: probes must not fail because a client is noisy, and scrapes are the operator's.
UNLIMITED_PATHS = ("/health", "/ready", "/metrics")

#: The resources' routers in the order their paths appear in OpenAPI; the console (api/console) reads the last ones.
ROUTERS: tuple[APIRouter, ...] = (
    probes.router,
    signals.router,
    strategy_performance.router,
    runs.router,
    orders.router,
    order_commands.router,
    positions.router,
    account.router,
    control.router,
    flatten.router,
    precheck.router,
    pipeline.router,
    charts.router,
    audits.router,
    strategies.router,
)


def _add_middleware(app: FastAPI, settings: Settings, buckets: TokenBuckets | None) -> None:
    # Inside the metrics: a refused invented method is still counted, under the label "other".
    app.add_middleware(KnownMethodsMiddleware)
    app.add_middleware(RequestMetricsMiddleware)
    # Added last = outermost: CORS headers also go on 413/429 answers, so browsers can read them.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        buckets=buckets or TokenBuckets(settings.api.rate_limit_per_minute, settings.api.rate_limit_burst),
        exempt=UNLIMITED_PATHS,
        key=ClientKeys(app.state.verifier.verify, settings.api.trusted_proxies),
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.api.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Retry-After"],
        max_age=600,
    )


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
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.settings = settings
    app.state.warehouse = warehouse
    app.state.commands = commands
    app.state.sink = sink
    app.state.verifier = TokenVerifier(settings)
    app.state.readiness = probes.ReadinessCache(settings.api.ready_cache_seconds)
    # The strategy instances the signals workers run (the same file, validated the same way: a bad one stops here).
    app.state.strategies = load_instances(settings.streams.strategies_file, discover())
    install_error_handlers(app)
    _add_middleware(app, settings, buckets)
    for router in ROUTERS:
        app.include_router(router)
    add_console(app)
    _document_trading_scopes(app, settings)
    instrument(app)
    return app


def _document_trading_scopes(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI document lists the trading-state and flatten scopes this deployment knows (the account and the
    configured universe), so a client sees them as the enum the route enforces (422 ``unknown_scope`` otherwise); the
    strategy switches list the configured instances the same way."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for body in ("TradingStateRequest", "FlattenRequest"):
                scope = document["components"]["schemas"][body]["properties"]["scope"]
                scope.pop("pattern", None)
                scope["enum"] = [ACCOUNT, *settings.feed.symbols]
            # Likewise the strategy instances a switch may name (404 unknown_strategy otherwise).
            names = [instance.name for instance in app.state.strategies]
            for action in ("enable", "disable"):
                operation = document["paths"][f"/v1/strategies/{{instance}}/{action}"]["post"]
                for parameter in operation["parameters"]:
                    if parameter["name"] == "instance":
                        parameter["schema"].pop("pattern", None)
                        parameter["schema"]["enum"] = names
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the document


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """How uvicorn serves the API."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the JSON logging telemetry.configure installed
        access_log=False,
        server_header=False,
        # uvicorn by default believes X-Forwarded-For from 127.0.0.1, so any local process could pick its own
        # client address (and rate-limit bucket). Proxy headers are read only for IBSTREAM_API_TRUSTED_PROXIES,
        # by the API itself (api.limits.client_address).
        proxy_headers=False,
    )


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
        config = server_config(app, args.host or settings.api.host, args.port or settings.api.port)
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
