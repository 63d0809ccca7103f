"""Market data for the console's chart: ``GET /v1/bars`` and ``GET /v1/chart`` (viewer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from api.auth import Role
from api.charts import (
    BarSeries,
    ChartData,
    IntervalQuery,
    LimitQuery,
    SinceQuery,
    SymbolQuery,
    UntilQuery,
    chart_data,
    list_bars,
)
from api.errors import errors
from api.routes.deps import require, utc

router = APIRouter(tags=["market data"], dependencies=[Depends(require(Role.VIEWER))])


@router.get("/v1/bars", response_model=BarSeries, responses=errors())
def bars(
    request: Request,
    symbol: SymbolQuery,
    since: SinceQuery = None,
    until: UntilQuery = None,
    interval: IntervalQuery = 5,
    limit: LimitQuery = 720,
) -> Any:
    """The newest ``limit`` bars of a symbol in the window, oldest first, optionally aggregated."""
    return list_bars(
        request.app.state.warehouse,
        symbol,
        since=utc(since),
        until=utc(until),
        interval_seconds=interval,
        limit=limit,
    )


@router.get("/v1/chart", response_model=ChartData, responses=errors())
def chart(
    request: Request,
    symbol: SymbolQuery,
    since: SinceQuery = None,
    until: UntilQuery = None,
    interval: IntervalQuery = 5,
    limit: LimitQuery = 720,
) -> Any:
    """Bars with signals, entries, stops, take-profits and fills marked, and the session's P&L per bar."""
    return chart_data(
        request.app.state.warehouse,
        symbol,
        since=utc(since),
        until=utc(until),
        interval_seconds=interval,
        limit=limit,
    )
