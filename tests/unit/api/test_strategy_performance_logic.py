"""Strategy performance figures from plain scored signals: hit rate, expectancy, profit factor, spreads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from api.queries.strategy_performance import ScoredSignal, headline, performance, period_start, score

MONDAY = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def scored(symbol: str, day: int, outcome: str, r: float, pnl: float) -> ScoredSignal:
    return ScoredSignal(symbol, MONDAY + timedelta(days=day), outcome, r, pnl)


SIGNALS = [
    scored("AAPL", 0, "hit_target", 2.0, 400.0),
    scored("AAPL", 0, "hit_stop", -1.0, -200.0),
    scored("MSFT", 1, "expired", 0.5, 50.0),
    scored("MSFT", 8, "hit_stop", -1.0, -100.0),
]


def test_hit_rate_expectancy_and_profit_factor_follow_their_definitions() -> None:
    scores = score(SIGNALS)
    assert (scores.scored, scores.wins, scores.hit_rate, scores.target_rate) == (4, 2, 0.5, 0.25)
    assert scores.expectancy_r == pytest.approx((2.0 - 1.0 + 0.5 - 1.0) / 4)
    assert scores.expectancy_pnl == pytest.approx((400 - 200 + 50 - 100) / 4)
    assert (scores.gross_profit, scores.gross_loss) == (450.0, 300.0)
    assert scores.profit_factor == pytest.approx(1.5)
    assert (scores.hit_target, scores.hit_stop, scores.expired) == (1, 2, 1)


def test_no_signals_and_no_losses_leave_the_ratios_empty() -> None:
    empty = score([])
    assert (empty.scored, empty.hit_rate, empty.expectancy_r, empty.profit_factor) == (0, None, None, None)
    assert score(SIGNALS[:1]).profit_factor is None


def test_spread_by_symbol_and_by_period() -> None:
    daily = performance("breakout", SIGNALS, "day")
    assert [(row.symbol, row.scores.scored) for row in daily.by_symbol] == [("AAPL", 2), ("MSFT", 2)]
    assert [(row.period_start, row.scores.scored) for row in daily.by_period] == [
        (date(2026, 11, 23), 2),
        (date(2026, 11, 24), 1),
        (date(2026, 12, 1), 1),
    ]
    weekly = performance("breakout", SIGNALS, "week")
    assert [(row.period_start, row.scores.scored) for row in weekly.by_period] == [
        (date(2026, 11, 23), 3),
        (date(2026, 11, 30), 1),
    ]
    assert daily.overall == score(SIGNALS)


def test_periods_start_on_the_day_the_monday_or_the_first() -> None:
    at = datetime(2026, 12, 3, 23, 59, tzinfo=UTC)  # a Thursday
    assert period_start(at, "day") == date(2026, 12, 3)
    assert period_start(at, "week") == date(2026, 11, 30)
    assert period_start(at, "month") == date(2026, 12, 1)


def test_the_headline_keeps_the_list_figures_and_leaves_out_missing_ones() -> None:
    assert headline(score(SIGNALS)) == {
        "scored": 4.0,
        "hit_rate": 0.5,
        "expectancy_r": pytest.approx(0.125),
        "profit_factor": pytest.approx(1.5),
    }
    assert headline(score(SIGNALS[:1])) == {"scored": 1.0, "hit_rate": 1.0, "expectancy_r": 2.0}  # no loss
