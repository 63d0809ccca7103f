"""Agent0's routes: ``POST /v1/plan`` (the service role, or a trader), ``POST /v1/execute`` (a trader),
``GET /health`` and ``GET /metrics``. Tokens are checked by the API's verifier (``api.auth``); errors are the API's
``ErrorBody`` (``api.handlers``: validation errors name the field, never echo the input). What a route needs is
the app's ``Agent0Context`` (``app.state.agent0``, set by ``api.agent0.create_app``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from api.agent0.execution import Refusal, verdict
from api.agent0.models import ExecuteRequestV1, ExecuteResponseV1, PlanRequestV1, PlanResponseV1
from api.agent0.planning import PlanLimits, make_plan
from api.agent0.runs import RunLookup, RunLookupError
from api.agent0.store import PlanStore
from api.auth import Principal, Role, authorize, authorize_service_or
from api.errors import ApiError, errors
from api.routes.deps import authenticated, bearer_scheme
from ibstream.config import Settings
from ibstream.sizing import SizingError
from ibstream.telemetry import consume_span, log_context, meter, prometheus_exposition

_plans = meter("api.agent0").create_counter(
    "ibstream_agent0_plans", description="Plan requests Agent0 answered, by outcome"
)
_executes = meter("api.agent0").create_counter(
    "ibstream_agent0_executes", description="Execute requests Agent0 answered, by outcome"
)

log = logging.getLogger(__name__)

router = APIRouter()


@dataclass(frozen=True)
class Agent0Context:
    """What the routes work with: the settings (risk budget and limits), the plan store and the run lookup."""

    settings: Settings
    store: PlanStore
    runs: RunLookup


def _context(request: Request) -> Agent0Context:
    context: Agent0Context = request.app.state.agent0
    return context


def planner(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Streams (the service role) plans every run; a trader may plan by hand."""
    authorize_service_or(principal, Role.TRADER)
    return principal


def executor(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Only people execute, and only as traders: the service role plans, it never asks for an order."""
    authorize(principal, Role.TRADER)
    return principal


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    body, content_type = prometheus_exposition()
    return Response(content=body, media_type=content_type)


def _equity(request: PlanRequestV1, settings: Settings) -> float:
    if request.equity is not None:
        return request.equity
    log.warning(
        "plan sized by the configured equity: the request carries no NetLiquidation (no account.v1 record yet)",
        extra={"equity": settings.risk.account_equity, "setting": "IBSTREAM_ACCOUNT_EQUITY"},
    )
    return settings.risk.account_equity


@router.post("/v1/plan", response_model=PlanResponseV1, responses=errors())
def plan(request: PlanRequestV1, http: Request, principal: Annotated[Principal, Depends(planner)]) -> PlanResponseV1:
    settings, store = _context(http).settings, _context(http).store
    # Continues the caller's trace (orchestration sends W3C trace context), so a run's trace shows its plan.
    with consume_span("agent0.plan", list(http.headers.items()), signal_id=request.signal.signal_id):
        try:
            response = make_plan(
                request.signal,
                request.entry_type,
                _equity(request, settings),
                settings.risk.per_trade_pct,
                PlanLimits.from_settings(settings),
            )
        except SizingError as error:
            _plans.add(1, {"outcome": "unplannable"})
            # The message names prices the caller sent as numbers, never raw text.
            raise ApiError(422, "unplannable", str(error)) from None
        store.save(response)
        _plans.add(1, {"outcome": "planned"})
    log.info(
        "plan",
        extra={
            "signal_id": response.signal_id,
            "run_id": response.run_id,
            "symbol": response.symbol,
            "plan_id": response.plan_id,
            "quantity": response.plan.quantity,
            "actor": principal.subject,
        },
    )
    return response


@router.post("/v1/execute", response_model=ExecuteResponseV1, responses=errors(404, 409))
def execute(
    request: ExecuteRequestV1,
    http: Request,
    principal: Annotated[Principal, Depends(executor)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> ExecuteResponseV1:
    """Hand a plan to orchestration: 200 when its run is approved there with this very plan (orchestration, the
    one writer of ``orders.intents.v1``, submits its one order); 409 with the reason otherwise."""
    context = _context(http)
    planned = context.store.get(request.plan_id)
    if planned is None:
        _executes.add(1, {"outcome": "unknown_plan"})
        raise ApiError(404, "unknown_plan", "no plan with this plan_id")
    assert credentials is not None  # executor authenticated the caller from it
    with log_context(run_id=planned.run_id, signal_id=planned.signal_id, plan_id=planned.plan_id):
        try:
            run = context.runs(planned.run_id, credentials.credentials)
        except RunLookupError as error:
            _executes.add(1, {"outcome": "runs_unavailable"})
            raise ApiError(503, "runs_unavailable", f"the run's approval cannot be checked: {error}") from None
        outcome = verdict(planned, run)
        if isinstance(outcome, Refusal):
            _executes.add(1, {"outcome": outcome.code})
            log.warning(
                "execute refused", extra={"code": outcome.code, "why": outcome.message, "actor": principal.subject}
            )
            raise ApiError(outcome.status, outcome.code, outcome.message)
        _executes.add(1, {"outcome": "handed_over"})
        log.info(
            "plan handed to orchestration",
            extra={"order_id": outcome.order_id, "state": outcome.run_state.value, "actor": principal.subject},
        )
    return outcome
