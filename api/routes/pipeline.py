"""The pipeline's health: ``GET /v1/health/pipeline`` (viewer), read by the console."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from api.auth import Role
from api.errors import errors
from api.pipeline import PipelineHealth, pipeline_health
from api.routes.deps import require

router = APIRouter()


@router.get(
    "/v1/health/pipeline",
    response_model=PipelineHealth,
    tags=["health"],
    responses=errors(),
    dependencies=[Depends(require(Role.VIEWER))],
)
def pipeline(request: Request) -> Any:
    """IB connection, feed ages (stale highlighted), open gaps, consumer lag, dead letters, firing alerts,
    Agent0's circuit and the kill switch, from the warehouse."""
    return pipeline_health(request.app.state.warehouse, request.app.state.settings, datetime.now(UTC))
