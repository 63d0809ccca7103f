"""Agent0: turns a signal into a sized, bracketed plan (``POST /v1/plan``) and hands a plan whose run orchestration
approved back to orchestration (``POST /v1/execute``).

Agent0 writes nothing to Kafka. Orders take one road: orchestration is the only writer of ``orders.intents.v1``
and submits an approved run's one order itself (``order_id = uuid5(run_id)``, ``run_id = uuid5(signal_id)``);
``execute`` only confirms that the plan's run is approved there with this very plan, and refuses (409, with why)
anything else (see ``api.agent0.execution``).

Every ``/v1/*`` call needs a bearer token checked by the API's verifier (``api.auth``): the ``service`` role
(streams' orchestration) or a ``trader`` plans; only a ``trader`` executes. Bodies over
``IBSTREAM_AGENT0_MAX_BODY_BYTES`` are refused with 413 before they are read.

Sizing: by the NetLiquidation orchestration passes in the plan request (the newest ``account.v1`` record);
``IBSTREAM_ACCOUNT_EQUITY`` only until the first record, with a warning. Agent0 keeps no account state.

Deterministic: the same signal and sizing policy give the same ``plan_id`` and plan. Plans live in SQLite
(``agent0_db``) so an execute finds a plan made before a restart.

Run: ``ibstream run agent0`` (host/port from settings).
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from api.agent0.execution import Refusal, verdict
from api.agent0.models import ExecuteRequestV1, ExecuteResponseV1, PlanRequestV1, PlanResponseV1, SignalIn
from api.agent0.planning import PlanLimits, make_plan
from api.agent0.routes import Agent0Context, router
from api.agent0.runs import RunLookup, RunLookupError, api_run_lookup
from api.agent0.store import PlanStore
from api.auth import TokenVerifier, check_auth_settings
from api.handlers import install_error_handlers
from api.limits import BodySizeLimitMiddleware
from api.metrics import instrument
from ibstream.config import LOG_LEVELS, Settings, load_settings

__all__ = [
    "ExecuteRequestV1",
    "ExecuteResponseV1",
    "PlanLimits",
    "PlanRequestV1",
    "PlanResponseV1",
    "PlanStore",
    "Refusal",
    "RunLookup",
    "RunLookupError",
    "SignalIn",
    "api_run_lookup",
    "create_app",
    "main",
    "make_plan",
    "verdict",
]

API_VERSION = "v1"


def create_app(settings: Settings, store: PlanStore, runs: RunLookup) -> FastAPI:
    """The Agent0 HTTP app: its routes (``api.agent0.routes``) over this store and run lookup, behind the API's
    token verifier and body size limit. A missing verification key stops it here, naming the setting."""
    check_auth_settings(settings)
    app = FastAPI(title="ibstream Agent0", version="1")
    app.state.agent0 = Agent0Context(settings, store, runs)
    app.state.verifier = TokenVerifier(settings)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.agent0.max_body_bytes)
    app.include_router(router)
    instrument(app)
    return app


def main(argv: list[str]) -> int:
    """Load settings, build the app (SQLite store, the API as the run lookup), serve with uvicorn until stopped."""
    import uvicorn

    from ibstream.telemetry import configure

    parser = argparse.ArgumentParser(
        prog="ibstream run agent0",
        description="Turns a signal into a sized order plan (entry, stop, target, quantity from the risk budget) "
        "and confirms a plan whose run orchestration approved. Callers need a token (`ibstream token`).",
    )
    parser.add_argument("--host", default=None, help="bind address (IBSTREAM_AGENT0_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (IBSTREAM_AGENT0_PORT)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv)
    settings = load_settings()
    check_auth_settings(settings)  # before opening anything: a missing key names its setting
    configure("agent0", args.log_level or settings.log_level)
    store = PlanStore(settings.agent0_db_path)
    app = create_app(settings, store, api_run_lookup(settings))
    uvicorn.run(app, host=args.host or settings.agent0.host, port=args.port or settings.agent0.port, log_config=None)
    return 0
