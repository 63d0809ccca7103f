"""The signals worker's strategy runtime: instances per symbol and timeframe, isolation of a failing strategy
(disabled with an alert, the others go on), runtime switches, and the agent wiring it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from ibstream.alerting import AlertBook
from ibstream.config import load_settings
from ibstream.contracts import Alert, Signal, bars
from ibstream.contracts.enums import AlertState, ControlCommandKind, Side, TradingState
from ibstream.strategies import Bars, Proposal, Strategy, StrategyParams
from ibstream.strategies.builtin import DonchianBreakout
from ibstream.strategies.instances import StrategyInstance
from ibstream.strategies.runtime import STRATEGY_FAILED, StrategyRuntime
from ibstream.strategies.switches import target_of
from streams import signals
from streams.app import build_app
from streams.signals.agents import timeframe_of
from tests.unit.ibstream.test_trading_states import command
from tests.unit.streams.test_streams_agents import CODEC, RecordingDeadLetters, RecordingEmitter
from tests.unit.streams.test_streams_signals import CHANNEL, T0, bar


class Exploding(Strategy):
    """Raises on every bar once warmed up."""

    name = "exploding"
    version = "0.1.0"

    @property
    def warmup(self) -> int:
        return 3

    def on_bar(self, bars: Bars) -> Proposal | None:
        raise ZeroDivisionError("division by zero in user code")


class Upside(Strategy):
    """Proposes a BUY with its stop above the entry: impossible, so it counts as a failure."""

    name = "upside"
    version = "0.1.0"

    @property
    def warmup(self) -> int:
        return 1

    def on_bar(self, bars: Bars) -> Proposal | None:
        close = bars[-1].close
        return Proposal(Side.BUY, 0.9, close, close + 1, close + 2)


class HourlyParams(StrategyParams):
    lookback: int = 3


class Hourly(Strategy):
    name = "hourly"
    version = "2.0.0"
    params_model = HourlyParams
    timeframes: ClassVar = ("1h", "5s")

    @property
    def warmup(self) -> int:
        return 50

    def on_bar(self, bars: Bars) -> Proposal | None:
        return None


def instance(
    name: str, strategy: Strategy, symbols: frozenset[str] = frozenset(), enabled: bool = True
) -> StrategyInstance:
    return StrategyInstance(name, strategy, symbols, enabled)


def breakout(name: str = "breakout", **kwargs: object) -> StrategyInstance:
    return instance(name, DonchianBreakout(DonchianBreakout.params_model()), **kwargs)  # type: ignore[arg-type]


def feed(runtime: StrategyRuntime, closes: list[float], symbol: str = "AAPL") -> list[Signal]:
    state, made = None, []
    for i, close in enumerate(closes):
        state, new, _ = signals.on_bar(state, bar(i, close, symbol), T0, 300, runtime.evaluators(symbol, "5s"))
        made += new
    return made


def test_a_raising_instance_is_disabled_with_one_alert_and_the_others_go_on() -> None:
    runtime = StrategyRuntime([instance("boom", Exploding(StrategyParams())), breakout()], AlertBook("test"))
    made = feed(runtime, [*CHANNEL, 103.0])
    assert [s.strategy for s in made] == ["breakout"]
    assert not runtime.enabled("boom") and runtime.enabled("breakout")
    assert runtime.faulted() == {"boom"}
    fired = runtime.drain_alerts()
    assert [(a.kind, a.state, a.alert_id) for a in fired] == [
        (STRATEGY_FAILED, AlertState.FIRING, "strategy_failed:boom")
    ]
    assert "ZeroDivisionError" in fired[0].message and fired[0].details["strategy"] == "exploding"
    assert runtime.drain_alerts() == []  # raised once
    assert "boom" not in runtime.evaluators("AAPL", "5s")


def test_an_impossible_proposal_counts_as_a_failure() -> None:
    runtime = StrategyRuntime([instance("up", Upside(StrategyParams()))], AlertBook("test"))
    assert feed(runtime, [100.0, 101.0]) == []
    assert "stop < entry < take_profit" in runtime.drain_alerts()[0].message


def test_an_enable_newer_than_the_failure_brings_the_instance_back_and_resolves_the_alert() -> None:
    runtime = StrategyRuntime([instance("boom", Exploding(StrategyParams()))], AlertBook("test"))
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("boom"), 5, TradingState.ACTIVE))
    feed(runtime, [100.0, 101.0, 102.0])
    runtime.drain_alerts()
    # The enable in force when it failed, read again (a restart of the feed), does not lift the fault.
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("boom"), 5, TradingState.ACTIVE))
    assert not runtime.enabled("boom")
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("boom"), 6, TradingState.ACTIVE))
    assert runtime.enabled("boom")
    assert [(a.kind, a.state) for a in runtime.drain_alerts()] == [(STRATEGY_FAILED, AlertState.RESOLVED)]


def test_the_fault_generation_moves_when_an_instance_fails_and_when_it_is_enabled_again() -> None:
    runtime = StrategyRuntime([instance("boom", Exploding(StrategyParams()))], AlertBook("test"))
    assert runtime.fault_generation == 0
    feed(runtime, [100.0, 101.0, 102.0])
    assert runtime.fault_generation == 1
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("boom"), 1, TradingState.HALTED))
    assert runtime.fault_generation == 1  # a switch that lifts no fault changes nothing
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("boom"), 2, TradingState.ACTIVE))
    assert runtime.fault_generation == 2 and runtime.enabled("boom")


def test_switches_symbols_and_configuration_decide_what_runs() -> None:
    runtime = StrategyRuntime(
        [breakout("msft-only", symbols=frozenset({"MSFT"})), breakout("off", enabled=False), breakout("on")],
        AlertBook("test"),
    )
    assert set(runtime.evaluators("AAPL", "5s")) == {"on"}
    assert set(runtime.evaluators("MSFT", "5s")) == {"msft-only", "on"}
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("off"), 1, TradingState.ACTIVE))
    runtime.apply(command(ControlCommandKind.TRADING_STATE, target_of("on"), 1, TradingState.HALTED))
    assert set(runtime.evaluators("AAPL", "5s")) == {"off"}
    assert [s.strategy for s in feed(runtime, [*CHANNEL, 103.0])] == ["off"]
    assert runtime.evaluators("AAPL", "1m") == {}
    assert not runtime.enabled("unknown")


def test_timeframes_and_windows_follow_the_instances() -> None:
    runtime = StrategyRuntime([breakout(), instance("h", Hourly(HourlyParams()))], AlertBook("test"))
    assert runtime.timeframes() == ["5s", "1h"]
    assert runtime.window("5s") == 50 and runtime.window("1h") == 50 and runtime.window("1m") == 1
    assert set(runtime.evaluators("AAPL", "1h")) == {"h"}
    assert StrategyRuntime([breakout()], AlertBook("test")).window("5s") == 40
    assert timeframe_of("unit.md.bars.1h.v1", "unit.") == "1h" and timeframe_of("md.bars.5s.v1") == "5s"


def test_bars_of_other_timeframes_are_kept_apart_and_seen_by_the_strategy() -> None:
    seen: list[Bars] = []

    class Recorder(Hourly):
        def on_bar(self, bars: Bars) -> Proposal | None:
            seen.append(bars)
            return None

        @property
        def warmup(self) -> int:
            return 1

    runtime = StrategyRuntime([instance("rec", Recorder(HourlyParams()))], AlertBook("test"))
    state, _, _ = signals.on_bar(None, bar(0, 100.0), T0, 300, runtime.evaluators("AAPL", "5s"))
    assert seen == []  # a 5 s bar does not drive an hourly strategy
    state, _, _ = signals.on_bar(
        state, bar(720, 110.0), T0, 300, runtime.evaluators("AAPL", "1h"), timeframe="1h", window=runtime.window("1h")
    )
    assert len(state["bars"]) == 1 and len(state["frames"]["1h"]) == 1
    assert seen[0].timeframe == "1h" and seen[0][-1].close == 110.0 and seen[0][-1].open == 110.0
    assert [p.close for p in seen[0].frames["5s"]] == [100.0]


@pytest.mark.asyncio
async def test_signals_agent_emits_the_alert_of_a_failing_instance_and_signals_of_the_rest(tmp_path: Path) -> None:
    strategies = tmp_path / "strategies.toml"
    strategies.write_text(
        '[[instances]]\nname = "breakout"\nstrategy = "donchian_breakout"\n\n'
        '[[instances]]\nname = "fast-z"\nstrategy = "zscore_reversion"\nparams = { period = 10 }\n'
    )
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    settings = load_settings(kafka_topic_prefix="unit.", strategies_file=str(strategies))
    built = build_app(
        settings, enabled=("signals",), data_dir=tmp_path, emitter=emitter, dead_letters=letters, with_feed=False
    )
    assert built.strategies is not None and set(built.strategies.instances) == {"breakout", "fast-z"}

    def explode(bars: Bars) -> Proposal | None:
        raise RuntimeError("bug")

    built.strategies.instances["fast-z"].strategy.on_bar = explode  # type: ignore[method-assign]
    built.app.finalize()
    built.app.flow_control.resume()
    topic = "unit." + bars.TOPIC.name
    async with built.agents["signals"].test_context() as agent:
        for i, close in enumerate([*CHANNEL, 103.0]):
            await agent.put(key=b"AAPL", value=CODEC.encode(topic, bar(i, close)))
    assert [s.strategy for s in emitter.of(Signal)] == ["breakout"]
    assert [(a.alert_id, a.state) for a in emitter.of(Alert)] == [("strategy_failed:fast-z", AlertState.FIRING)]
    assert letters.routed == []  # the failure stayed inside its instance: no bar was dead-lettered
