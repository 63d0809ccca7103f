"""A strategy's performance from its scored signals (``signals.outcomes.v1``): hit rate, expectancy, profit factor,
overall and spread by symbol and by period.

Definitions (the ``strategy-scores`` audit, ``ibstream/warehouse/sql/strategy_scores.sql``, uses the same):
  scored          signals with an outcome (hit target, hit stop or expired), one per signal_id
  wins            scored signals whose R multiple is > 0 (an expiry above the entry wins too)
  hit_rate        wins / scored
  target_rate     signals that hit their target / scored
  expectancy_r    mean R multiple: what a signal earns on average, in units of the risk it takes
  expectancy_pnl  mean hypothetical P&L at the planned size
  profit_factor   gross hypothetical profit / gross hypothetical loss (None without a loss)
Periods are UTC days, ISO weeks (Monday) or months of the signal's time.

Pure: ``score``, ``performance`` and ``headline`` work on plain rows; ``strategy_performance`` and ``strategy_scores``
read them from the warehouse.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from api.queries.common import aware, equals, time_range, topic_table, where_clause
from ibstream.contracts import signal_outcomes
from ibstream.warehouse import Warehouse

Period = Literal["day", "week", "month"]


@dataclass(frozen=True)
class ScoredSignal:
    """One scored signal as the performance figures need it."""

    symbol: str
    signal_time: datetime
    outcome: str
    r_multiple: float
    pnl: float


class Scores(BaseModel):
    """The figures of a set of scored signals (definitions in ``api.queries.strategy_performance``)."""

    scored: int
    wins: int
    hit_rate: float | None
    target_rate: float | None
    expectancy_r: float | None
    expectancy_pnl: float | None
    profit_factor: float | None
    gross_profit: float
    gross_loss: float
    hit_target: int
    hit_stop: int
    expired: int


class SymbolScores(BaseModel):
    symbol: str
    scores: Scores


class PeriodScores(BaseModel):
    period_start: date
    scores: Scores


class StrategyPerformance(BaseModel):
    """``GET /v1/strategies/{instance}/performance``: the strategy's scores overall, by symbol and by period."""

    strategy: str
    period: Period
    since: datetime | None
    until: datetime | None
    overall: Scores
    by_symbol: list[SymbolScores]
    by_period: list[PeriodScores]


def score(signals: Sequence[ScoredSignal]) -> Scores:
    """The figures of ``signals`` (all None but the counts when there are none)."""
    scored = len(signals)
    wins = sum(1 for signal in signals if signal.r_multiple > 0)
    profit = sum(signal.pnl for signal in signals if signal.pnl > 0)
    loss = -sum(signal.pnl for signal in signals if signal.pnl < 0)
    kinds = {kind: sum(1 for signal in signals if signal.outcome == kind) for kind in ("hit_target", "hit_stop")}
    return Scores(
        scored=scored,
        wins=wins,
        hit_rate=wins / scored if scored else None,
        target_rate=kinds["hit_target"] / scored if scored else None,
        expectancy_r=sum(signal.r_multiple for signal in signals) / scored if scored else None,
        expectancy_pnl=sum(signal.pnl for signal in signals) / scored if scored else None,
        profit_factor=profit / loss if loss > 0 else None,
        gross_profit=profit,
        gross_loss=loss,
        hit_target=kinds["hit_target"],
        hit_stop=kinds["hit_stop"],
        expired=scored - kinds["hit_target"] - kinds["hit_stop"],
    )


def period_start(at: datetime, period: Period) -> date:
    """The UTC day, ISO week (its Monday) or month (its first day) ``at`` falls in."""
    day = at.date()
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def performance(
    strategy: str,
    signals: Iterable[ScoredSignal],
    period: Period,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StrategyPerformance:
    """Scores overall, per symbol (alphabetical) and per period (oldest first)."""
    every = list(signals)
    by_symbol: dict[str, list[ScoredSignal]] = defaultdict(list)
    by_period: dict[date, list[ScoredSignal]] = defaultdict(list)
    for signal in every:
        by_symbol[signal.symbol].append(signal)
        by_period[period_start(signal.signal_time, period)].append(signal)
    return StrategyPerformance(
        strategy=strategy,
        period=period,
        since=since,
        until=until,
        overall=score(every),
        by_symbol=[SymbolScores(symbol=symbol, scores=score(by_symbol[symbol])) for symbol in sorted(by_symbol)],
        by_period=[PeriodScores(period_start=start, scores=score(by_period[start])) for start in sorted(by_period)],
    )


def strategy_performance(
    warehouse: Warehouse,
    strategy: str,
    *,
    period: Period,
    symbol: str | None,
    since: datetime | None,
    until: datetime | None,
) -> StrategyPerformance:
    """The strategy's scored signals from the warehouse (one per signal_id, the first recorded), then ``performance``.

    ``since``/``until`` bound the signal's time."""
    conditions: list[str] = []
    parameters: dict[str, Any] = {}
    equals(conditions, parameters, "strategy", strategy)
    equals(conditions, parameters, "symbol", symbol)
    time_range(conditions, parameters, "signal_time", since, until)
    signals = [signal for _, signal in scored_signals(warehouse, conditions, parameters)]
    return performance(strategy, signals, period, since, until)


def scored_signals(
    warehouse: Warehouse, conditions: list[str], parameters: dict[str, Any]
) -> list[tuple[str, ScoredSignal]]:
    """(strategy, scored signal) of every outcome matching ``conditions``, one per signal_id (the first recorded),
    oldest signal first."""
    sql = f"""
        SELECT strategy, symbol, signal_time, toString(outcome) AS outcome, r_multiple, pnl
        FROM (SELECT * FROM {topic_table(warehouse, signal_outcomes.TOPIC)} FINAL
              WHERE {where_clause(conditions)} ORDER BY _kafka_ts, _offset LIMIT 1 BY signal_id)
        ORDER BY signal_time
    """
    return [
        (str(row[0]), ScoredSignal(str(row[1]), aware(row[2]), str(row[3]), float(row[4]), float(row[5])))
        for row in warehouse.query(sql, parameters).rows
    ]


#: The figures ``GET /v1/strategies`` shows per instance (the performance route has them all).
HEADLINE = ("scored", "hit_rate", "expectancy_r", "profit_factor")


def headline(scores: Scores) -> dict[str, float]:
    """The headline figures of ``scores``, leaving out those it has none of (no loss: no profit factor)."""
    figures = scores.model_dump()
    return {name: float(figures[name]) for name in HEADLINE if figures[name] is not None}


def strategy_scores(warehouse: Warehouse) -> dict[str, dict[str, float]]:
    """Every strategy's headline scores over all its scored signals (one per signal_id, the first recorded)."""
    by_strategy: dict[str, list[ScoredSignal]] = defaultdict(list)
    for strategy, signal in scored_signals(warehouse, [], {}):
        by_strategy[strategy].append(signal)
    return {strategy: headline(score(signals)) for strategy, signals in by_strategy.items()}
