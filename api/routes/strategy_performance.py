"""A strategy's performance: ``GET /v1/strategies/{instance}/performance`` (viewer).

From every signal scored on ``signals.outcomes.v1`` (traded or not): hit rate, expectancy and profit factor, overall,
by symbol and by period. ``instance`` is matched against the signals' ``strategy`` name for now: strategy instances
come with the strategy SDK, which will name them on the signal.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.errors import errors
from api.queries import strategy_performance as queries
from api.queries.strategy_performance import Period, StrategyPerformance
from api.routes.deps import Since, Symbol, Until, Viewer, utc, warehouse_of
from ibstream.telemetry import log_context

router = APIRouter(tags=["strategies"])

#: As the signals filter names strategies.
Instance = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="the strategy (instance) name")]


@router.get("/v1/strategies/{instance}/performance", response_model=StrategyPerformance, responses=errors())
def strategy_performance(
    principal: Viewer,
    request: Request,
    instance: Instance,
    period: Annotated[Period, Query(description="how the by_period spread is cut: UTC day, ISO week or month")] = "day",
    symbol: Symbol = None,
    since: Since = None,
    until: Until = None,
) -> StrategyPerformance:
    """Hit rate, expectancy (in R and in hypothetical P&L) and profit factor of the strategy's scored signals,
    overall, by symbol and by period; ``since``/``until`` bound the signals' time."""
    with log_context(strategy=instance):
        return queries.strategy_performance(
            warehouse_of(request), instance, period=period, symbol=symbol, since=utc(since), until=utc(until)
        )
