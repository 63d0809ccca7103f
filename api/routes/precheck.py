"""The approval gate's pre-check: ``GET /v1/runs/{run_id}/precheck`` (viewer), read by the console."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from api.auth import Role
from api.errors import ApiError, errors
from api.models import ID_PATTERN
from api.precheck import (
    Precheck,
    PrecheckLimits,
    build_precheck,
    latest_position_quantity,
    latest_quote,
    trading_control_commands,
)
from api.queries.runs import get_run
from api.routes.deps import require
from ibstream.warehouse import Warehouse

router = APIRouter()


@router.get(
    "/v1/runs/{run_id}/precheck",
    response_model=Precheck,
    tags=["runs"],
    responses=errors(404, 409),
    dependencies=[Depends(require(Role.VIEWER))],
)
def precheck(
    request: Request,
    run_id: Annotated[str, Path(pattern=ID_PATTERN)],
) -> Any:
    """The gate's plan-dependent checks for the run's latest plan, evaluated now (409 ``no_plan`` before
    Agent0 has planned)."""
    warehouse: Warehouse = request.app.state.warehouse
    run = get_run(warehouse, run_id)
    if run.plan is None:
        raise ApiError(409, "no_plan", f"run {run_id} has no plan yet")
    return build_precheck(
        run_id,
        run.symbol,
        run.plan,
        PrecheckLimits.from_settings(request.app.state.settings),
        quote=latest_quote(warehouse, run.symbol),
        position_quantity=latest_position_quantity(warehouse, run.symbol),
        kill_switch=None,
        now=datetime.now(UTC),
        # The kill switches and trading states, folded as the gate folds them (stale commands ignored).
        controls=trading_control_commands(warehouse),
    )
