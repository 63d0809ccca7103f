"""Positions: ``GET /v1/positions`` (viewer) — per symbol the quantity, cost, mark, P&L and protective orders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.errors import errors
from api.models import PositionList
from api.queries import positions as queries
from api.routes.deps import Viewer, warehouse_of

router = APIRouter(tags=["positions"])


@router.get("/v1/positions", response_model=PositionList, responses=errors())
def list_positions(
    principal: Viewer,
    request: Request,
    include_flat: Annotated[bool, Query(description="also list symbols whose position is now flat")] = False,
) -> PositionList:
    """Each symbol's newest position from IB, marked at the newest quote, with its realized P&L and the stop-loss
    and take-profit orders still working for it."""
    return queries.list_positions(warehouse_of(request), datetime.now(UTC), include_flat)
