"""Agent0: turns a signal into a sized, bracketed plan (``POST /v1/plan``) and an approved plan into an order
intent on Kafka (``POST /v1/execute``, at most once per plan).

Deterministic: the same signal and sizing policy give the same ``plan_id`` and plan; the intent's ``order_id`` is
``uuid5(run_id)`` with ``run_id = uuid5(signal_id)``, the ids orchestration uses, so the two paths to an order
cannot make two orders. Plans and executions live in SQLite (``agent0_db``): a restart keeps "at most once".

Run: ``ibstream run agent0`` (host/port from settings).
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from api.agent0.models import ErrorV1, ExecuteRequestV1, ExecuteResponseV1, PlanRequestV1, PlanResponseV1, SignalIn
from api.agent0.planning import PlanLimits, make_plan
from api.agent0.publisher import DependencyDownError, Publisher, kafka_publisher
from api.agent0.routes import Agent0Context, install_error_handlers, router
from api.agent0.store import PlanStore
from ibstream.config import LOG_LEVELS, Settings, load_settings

__all__ = [
    "DependencyDownError",
    "ErrorV1",
    "ExecuteRequestV1",
    "ExecuteResponseV1",
    "PlanLimits",
    "PlanRequestV1",
    "PlanResponseV1",
    "PlanStore",
    "Publisher",
    "SignalIn",
    "create_app",
    "kafka_publisher",
    "main",
    "make_plan",
]

API_VERSION = "v1"


def create_app(settings: Settings, store: PlanStore, publish: Publisher) -> FastAPI:
    """The Agent0 HTTP app: its routes (``api.agent0.routes``) over this store and publisher."""
    app = FastAPI(title="ibstream Agent0", version="1", responses={400: {"model": ErrorV1}, 503: {"model": ErrorV1}})
    app.state.agent0 = Agent0Context(settings, store, publish)
    install_error_handlers(app)
    app.include_router(router)
    return app


def main(argv: list[str]) -> int:
    """Load settings, build the app (SQLite store, Kafka publisher), serve with uvicorn until stopped."""
    import uvicorn

    from ibstream.telemetry import configure

    parser = argparse.ArgumentParser(
        prog="ibstream run agent0",
        description="Turns a signal into a sized order plan (entry, stop, target, quantity from the risk budget) "
        "and sends an approved plan on as an order, at most once.",
    )
    parser.add_argument("--host", default=None, help="bind address (IBSTREAM_AGENT0_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (IBSTREAM_AGENT0_PORT)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure("agent0", args.log_level or settings.log_level)
    store = PlanStore(settings.agent0_db_path)
    app = create_app(settings, store, kafka_publisher(settings))
    uvicorn.run(app, host=args.host or settings.agent0.host, port=args.port or settings.agent0.port, log_config=None)
    return 0
