"""Signals: ``GET /v1/signals`` and ``GET /v1/signals/{signal_id}`` (viewer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.errors import errors
from api.models import SignalDetail, SignalPage
from api.queries import signals as queries
from api.routes.deps import Cursor, Limit, SignalId, Since, Symbol, Until, Viewer, utc, warehouse_of
from ibstream.contracts.enums import SignalStatus
from ibstream.telemetry import log_context

router = APIRouter(tags=["signals"])


@router.get("/v1/signals", response_model=SignalPage, responses=errors())
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
        warehouse_of(request),
        symbol=symbol,
        strategy=strategy,
        status=status,
        since=utc(since),
        until=utc(until),
        limit=limit,
        cursor=cursor,
    )


@router.get("/v1/signals/{signal_id}", response_model=SignalDetail, responses=errors(404))
def get_signal(principal: Viewer, request: Request, signal_id: SignalId) -> SignalDetail:
    """One signal with its lifecycle transitions, runs and outcome."""
    with log_context(signal_id=signal_id):
        return queries.get_signal(warehouse_of(request), signal_id)
