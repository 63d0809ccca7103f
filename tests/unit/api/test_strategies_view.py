"""GET /v1/strategies as a pure function: configuration, switches folded from control.v1, counts and failures."""

from __future__ import annotations

from datetime import UTC, datetime

from api.models import SignalCounts
from api.queries.strategies import strategy_views
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.strategies.builtin import DonchianBreakout, MaCrossover
from ibstream.strategies.instances import StrategyInstance
from ibstream.strategies.switches import target_of
from tests.unit.ibstream.test_trading_states import command

T = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def test_views_show_configuration_newest_switch_counts_and_failures() -> None:
    instances = [
        StrategyInstance("ma-fast", MaCrossover(MaCrossover.params_model(fast=5, slow=20)), frozenset({"AAPL"}), False),
        StrategyInstance("breakout", DonchianBreakout(DonchianBreakout.params_model()), frozenset(), True),
    ]
    commands = [
        command(ControlCommandKind.TRADING_STATE, target_of("ma-fast"), 2, TradingState.ACTIVE),
        command(ControlCommandKind.TRADING_STATE, target_of("ma-fast"), 1, TradingState.HALTED),  # stale
        command(ControlCommandKind.TRADING_STATE, "AAPL", 3, TradingState.HALTED),  # a symbol's, not a strategy's
    ]
    counts = {"ma-fast": SignalCounts(total=3, buy=2, sell=1, last_signal_time=T)}
    ma, breakout = strategy_views(instances, commands, counts, {"breakout": "ValueError: bug"})
    assert (ma.name, ma.strategy, ma.version, ma.symbols, ma.timeframes, ma.warmup) == (
        "ma-fast",
        "ma_crossover",
        "1.0.0",
        ["AAPL"],
        ["5s"],
        26,
    )
    assert ma.params == {"fast": 5, "slow": 20, "momentum": 5}
    assert not ma.configured_enabled and ma.enabled and ma.switched_by == "ops" and ma.failure is None
    assert ma.signals == counts["ma-fast"] and ma.scores is None
    assert breakout.enabled and breakout.switched_by is None and breakout.signals.total == 0
    assert breakout.failure == "ValueError: bug" and breakout.symbols == []
    scored = strategy_views(instances, [], {}, {}, {"breakout": {"hit_rate": 0.5}})
    assert scored[1].scores == {"hit_rate": 0.5} and scored[0].scores is None
