"""Agent0's routes: ``POST /v1/plan``, ``POST /v1/execute``, ``GET /health`` and ``GET /metrics``, and the error
handlers that answer every error as an ``ErrorV1``. What a route needs (settings, plan store, publisher) is the
app's ``Agent0Context`` (``app.state.agent0``, set by ``api.agent0.create_app``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from api.agent0.models import ErrorV1, ExecuteRequestV1, ExecuteResponseV1, PlanRequestV1, PlanResponseV1
from api.agent0.planning import PlanLimits, make_plan
from api.agent0.publisher import Publisher
from api.agent0.store import PlanStore
from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import OrderIntent, utc_now
from ibstream.sizing import SizingError
from ibstream.telemetry import consume_span, meter, prometheus_exposition

_plans = meter("api.agent0").create_counter(
    "ibstream_agent0_plans", description="Plan requests Agent0 answered, by outcome"
)

log = logging.getLogger(__name__)

router = APIRouter()


@dataclass(frozen=True)
class Agent0Context:
    """What the routes work with: the settings (risk budget and limits), the plan store and the publisher."""

    settings: Settings
    store: PlanStore
    publish: Publisher


def _context(request: Request) -> Agent0Context:
    context: Agent0Context = request.app.state.agent0
    return context


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"version": "v1", "code": code, "message": message})


async def _bad_request(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return _error(400, "bad_request", str(error.errors()))


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code, message = error.detail if isinstance(error.detail, tuple) else ("bad_request", str(error.detail))
    return _error(error.status_code, code, message)


def install_error_handlers(app: FastAPI) -> None:
    """Validation errors are 400 ``bad_request``; an ``HTTPException`` whose detail is (code, message) keeps both."""
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(HTTPException, _http_error)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    body, content_type = prometheus_exposition()
    return Response(content=body, media_type=content_type)


@router.post("/v1/plan", response_model=PlanResponseV1)
def plan(request: PlanRequestV1, http: Request) -> PlanResponseV1:
    settings, store = _context(http).settings, _context(http).store
    # Continues the caller's trace (orchestration sends W3C trace context), so a run's trace shows its plan.
    with consume_span("agent0.plan", list(http.headers.items()), signal_id=request.signal.signal_id):
        try:
            response = make_plan(
                request.signal,
                request.entry_type,
                settings.risk.account_equity,
                settings.risk.per_trade_pct,
                PlanLimits.from_settings(settings),
            )
        except SizingError as error:
            _plans.add(1, {"outcome": "bad_request"})
            raise HTTPException(400, ("bad_request", str(error))) from None
        store.save(response)
        _plans.add(1, {"outcome": "planned"})
    log.info(
        "plan",
        extra={
            "signal_id": response.signal_id,
            "run_id": response.run_id,
            "symbol": response.symbol,
            "plan_id": response.plan_id,
        },
    )
    return response


def _intent(planned: PlanResponseV1, order_id: str, approved_by: str) -> OrderIntent:
    p = planned.plan
    return OrderIntent(
        order_id=order_id,
        run_id=planned.run_id,
        signal_id=planned.signal_id,
        symbol=planned.symbol,
        side=p.side,
        quantity=p.quantity,
        order_type=p.order_type,
        limit_price=p.limit_price,
        stop_price=p.stop_price,
        stop_loss=p.stop_loss,
        take_profit=p.take_profit,
        requested_by=f"agent0:{approved_by}",
        created_time=utc_now(),
    )


@router.post(
    "/v1/execute", response_model=ExecuteResponseV1, responses={404: {"model": ErrorV1}, 409: {"model": ErrorV1}}
)
def execute(request: ExecuteRequestV1, http: Request) -> ExecuteResponseV1:
    context = _context(http)
    planned = context.store.get(request.plan_id)
    if planned is None:
        raise HTTPException(404, ("unknown_plan", f"no plan {request.plan_id}"))
    if not request.approved:
        raise HTTPException(400, ("not_approved", "execute needs approved=true"))
    order_id = ids.order_id(planned.run_id)
    if not context.store.claim(request.plan_id, order_id):
        raise HTTPException(409, ("already_executed", f"plan {request.plan_id} already executed as {order_id}"))
    intent = _intent(planned, order_id, request.approved_by)
    try:
        context.publish(intent)
    except Exception as error:
        context.store.release(request.plan_id)  # nothing left: the plan may be executed again (same order_id)
        raise HTTPException(503, ("dependency_down", str(error))) from None
    log.info(
        "plan executed",
        extra={
            "order_id": order_id,
            "run_id": planned.run_id,
            "symbol": planned.symbol,
            "signal_id": planned.signal_id,
        },
    )
    return ExecuteResponseV1(plan_id=request.plan_id, order_id=order_id, intent=intent)
