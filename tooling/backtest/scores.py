"""The report's figures from a backtest's result. Pure.

Per strategy instance, two scores:

* **signals**: every signal scored as the outcomes agent scores it (``ibstream.strategies.scoring``), traded or not,
  with the definitions of the ``strategy-scores`` audit: hit rate (R > 0), target rate, expectancy in R and in P&L
  at the planned size, profit factor (gross profit / gross loss; None without a loss);
* **trades**: the orders the backtest placed and the engine filled: trades, closed, wins, hit rate, P&L after
  commissions (open trades marked at the last close), expectancy, profit factor, mean R.

The equity curve's drawdown: at each point, how far NetLiquidation is below its running peak (absolute and in %).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ibstream.contracts import SignalOutcome
from ibstream.contracts.enums import OutcomeKind
from tooling.backtest.engine import BacktestResult, Trade


def _profit_factor(values: Sequence[float]) -> float | None:
    profit = sum(v for v in values if v > 0)
    loss = -sum(v for v in values if v < 0)
    return profit / loss if loss > 0 else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def signal_scores(outcomes: Iterable[SignalOutcome]) -> dict[str, dict[str, Any]]:
    """Per strategy: the ``strategy-scores`` audit's figures over the scored signals."""
    by_strategy: dict[str, list[SignalOutcome]] = {}
    for outcome in outcomes:
        by_strategy.setdefault(outcome.strategy, []).append(outcome)
    scores: dict[str, dict[str, Any]] = {}
    for strategy, scored in sorted(by_strategy.items()):
        count = len(scored)
        wins = sum(1 for o in scored if o.r_multiple > 0)
        scores[strategy] = {
            "scored": count,
            "wins": wins,
            "hit_rate": wins / count,
            "target_rate": sum(1 for o in scored if o.outcome is OutcomeKind.HIT_TARGET) / count,
            "expectancy_r": _mean([o.r_multiple for o in scored]),
            "expectancy_pnl": _mean([o.pnl for o in scored]),
            "profit_factor": _profit_factor([o.pnl for o in scored]),
            "hit_target": sum(1 for o in scored if o.outcome is OutcomeKind.HIT_TARGET),
            "hit_stop": sum(1 for o in scored if o.outcome is OutcomeKind.HIT_STOP),
            "expired": sum(1 for o in scored if o.outcome is OutcomeKind.EXPIRED),
        }
    return scores


def trade_scores(trades: Iterable[Trade], marks: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per strategy: the filled trades' figures (open ones marked at ``marks``)."""
    by_strategy: dict[str, list[Trade]] = {}
    for trade in trades:
        if trade.quantity > 0:
            by_strategy.setdefault(trade.strategy, []).append(trade)
    scores: dict[str, dict[str, Any]] = {}
    for strategy, filled in sorted(by_strategy.items()):
        pnls = [t.pnl(marks.get(t.symbol)) for t in filled]
        rs = [r for t in filled if (r := t.r_multiple(marks.get(t.symbol))) is not None]
        wins = sum(1 for p in pnls if p > 0)
        scores[strategy] = {
            "trades": len(filled),
            "closed": sum(1 for t in filled if t.closed),
            "wins": wins,
            "hit_rate": wins / len(filled),
            "pnl": sum(pnls),
            "expectancy_pnl": _mean(pnls),
            "expectancy_r": _mean(rs),
            "profit_factor": _profit_factor(pnls),
            "commission": sum(t.commission for t in filled),
        }
    return scores


def drawdown(equity: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, float, float]]:
    """(time, drawdown below the running peak, the same in % of the peak) for each equity point."""
    peak = float("-inf")
    points: list[tuple[datetime, float, float]] = []
    for at, value in equity:
        peak = max(peak, value)
        below = peak - value
        points.append((at, below, 100.0 * below / peak if peak > 0 else 0.0))
    return points


def summary(result: BacktestResult) -> dict[str, Any]:
    """The headline figures."""
    start = result.equity[0][1] if result.equity else 0.0
    end = result.equity[-1][1] if result.equity else 0.0
    down = drawdown(result.equity)
    filled = [t for t in result.trades.values() if t.quantity > 0]
    return {
        "bars": result.bars,
        "symbols": sorted(result.symbols),
        "first_bar": result.first_bar.isoformat() if result.first_bar else None,
        "last_bar": result.last_bar.isoformat() if result.last_bar else None,
        "signals": len(result.signals),
        "orders": len(result.trades),
        "trades": len(filled),
        "start_equity": start,
        "end_equity": end,
        "return_pct": 100.0 * (end - start) / start if start else 0.0,
        "max_drawdown": max((d for _, d, _ in down), default=0.0),
        "max_drawdown_pct": max((p for _, _, p in down), default=0.0),
        "runs": dict(sorted(result.runs.items())),
        "risk_rejections": dict(sorted(result.rejections.items())),
        "failed_instances": result.failed_instances,
    }
