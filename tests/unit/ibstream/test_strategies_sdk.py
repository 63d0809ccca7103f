"""The strategy SDK: built-ins as Strategy classes, proposal checks, entry-point discovery and the instances file."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ibstream.contracts.enums import Side
from ibstream.exceptions import ConfigError
from ibstream.strategies import Bars, Proposal, StrategyError, bar_topic_name, check_proposal
from ibstream.strategies.builtin import BUILTIN, DonchianBreakout, MaCrossover, ZscoreReversion
from ibstream.strategies.instances import SETTING, build_instances, default_instances, load_instances
from ibstream.strategies.registry import GROUP, registry_of
from streams.signals.strategies import STRATEGIES, WINDOW, donchian_breakout, ma_crossover, zscore_reversion
from tests.unit.streams.test_strategies import CHANNEL, CROSS_UP, bars_from, mirrored

SERIES = [CROSS_UP, mirrored(CROSS_UP), [*CHANNEL, 102.0], [*CHANNEL, 97.0], [*CHANNEL[:19], 95.0], [*CHANNEL, 110.0]]


def window(closes: list[float]) -> Bars:
    return Bars(symbol="AAPL", timeframe="5s", window=bars_from(closes)[-WINDOW:])


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_classes_with_default_params_propose_exactly_what_the_functions_do(name: str) -> None:
    strategy = BUILTIN[name](BUILTIN[name].params_model())
    for closes in SERIES:
        bars = window(closes)
        assert strategy.on_bar(bars) == STRATEGIES[name](bars.window)
    assert strategy.timeframes == ("5s",)
    assert strategy.warmup <= WINDOW  # the default window holds every built-in's history


def test_builtin_params_reach_the_function_and_bad_params_are_refused() -> None:
    bars = window(CROSS_UP)
    fast = MaCrossover(MaCrossover.params_model(fast=5, slow=20, momentum=3))
    assert fast.on_bar(bars) == ma_crossover(bars.window, 5, 20, 3)
    assert fast.warmup == 24
    assert DonchianBreakout(DonchianBreakout.params_model(period=10)).on_bar(window([*CHANNEL, 102.0])) == (
        donchian_breakout(bars_from([*CHANNEL, 102.0]), 10)
    )
    z = ZscoreReversion(ZscoreReversion.params_model(threshold=2.5))
    far, near = [*CHANNEL[:19], 96.5], [*CHANNEL[:19], 97.5]  # z ≈ -2.66 and -2.09
    proposal = z.on_bar(window(far))
    assert proposal is not None and proposal == zscore_reversion(bars_from(far), 20, 2.5)
    assert z.on_bar(window(near)) is None and zscore_reversion(bars_from(near)) is not None
    with pytest.raises(ValueError, match="fast"):
        MaCrossover.params_model(fast=30, slow=10)
    with pytest.raises(ValueError, match="extra"):
        MaCrossover.params_model(fats=3)


def test_bars_is_the_sequence_of_its_window() -> None:
    bars = window(CROSS_UP)
    assert len(bars) == len(bars.window)
    assert bars[-1] == bars.window[-1] and list(bars[-3:]) == list(bars.window[-3:])
    assert bar_topic_name("1m") == "md.bars.1m.v1"


def good(**changes: object) -> Proposal:
    values: dict[str, object] = {
        "side": Side.BUY,
        "confidence": 0.7,
        "entry": 100.0,
        "stop": 98.0,
        "take_profit": 104.0,
    }
    values.update(changes)
    return Proposal(**values)  # type: ignore[arg-type]


def test_check_proposal_refuses_what_a_signal_cannot_carry() -> None:
    assert check_proposal(good()) == good()
    assert check_proposal(good(side=Side.SELL, stop=102.0, take_profit=96.0)).side is Side.SELL
    refused = {
        "confidence": good(confidence=1.5),
        "stop < entry": good(stop=101.0),
        "take_profit < entry": good(side=Side.SELL, stop=102.0, take_profit=101.0),
        "positive finite": good(entry=float("nan")),
        "expiry": good(expiry=timedelta(0)),
        "expected a Proposal": "BUY",
    }
    for message, proposal in refused.items():
        with pytest.raises(StrategyError, match=message):
            check_proposal(proposal)


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


def test_registry_has_the_builtins_and_loads_entry_points_reporting_broken_ones() -> None:
    registry = registry_of(
        [
            point("ma_crossover", "ibstream.strategies.builtin:MaCrossover"),  # the built-in's own entry point
            point("not_a_strategy", "ibstream.strategies.builtin:atr"),
            point("missing", "no_such_package.module:Thing"),
            point("renamed", "ibstream.strategies.builtin:DonchianBreakout"),  # its class is named otherwise
            point("donchian_breakout", "tests.unit.ibstream.test_strategies_sdk:Impostor"),
        ]
    )
    assert registry.names() == ["donchian_breakout", "ma_crossover", "zscore_reversion"]
    assert registry.strategies["donchian_breakout"] is DonchianBreakout  # a clash never replaces a built-in
    assert set(registry.broken) == {"not_a_strategy", "missing", "renamed", "donchian_breakout"}
    assert "ModuleNotFoundError" in registry.broken["missing"]
    assert "clashes" in registry.broken["donchian_breakout"]


class Impostor(DonchianBreakout):
    name = "donchian_breakout"


DOCUMENT = {
    "instances": [
        {"name": "ma-fast", "strategy": "ma_crossover", "params": {"fast": 5, "slow": 20}, "symbols": ["AAPL"]},
        {"name": "breakout", "strategy": "donchian_breakout", "enabled": False},
    ]
}


def test_instances_are_built_with_validated_params() -> None:
    fast, breakout = build_instances(DOCUMENT, registry_of([]))
    assert (fast.name, fast.strategy_name, fast.version, fast.symbols, fast.enabled) == (
        "ma-fast",
        "ma_crossover",
        "1.0.0",
        frozenset({"AAPL"}),
        True,
    )
    assert fast.params == MaCrossover.params_model(fast=5, slow=20)
    assert fast.covers("AAPL") and not fast.covers("MSFT")
    assert breakout.covers("MSFT") and not breakout.enabled and breakout.timeframe == "5s"


def test_every_instance_problem_is_reported_at_once_naming_instance_and_field() -> None:
    document = {
        "instances": [
            {"name": "ma-bad", "strategy": "ma_crossover", "params": {"fast": "quick", "slow": 20}},
            {"name": "ma-bad2", "strategy": "ma_crossover", "params": {"fast": 40, "slow": 20}},
            {"name": "nope", "strategy": "no_such_strategy"},
            {"name": "ma-bad", "strategy": "ma_crossover"},
            {"name": "has space", "strategy": "ma_crossover"},
            {"strategy": "ma_crossover", "symbol": ["AAPL"]},
        ],
        "instance": [],
    }
    with pytest.raises(ConfigError) as raised:
        build_instances(document, registry_of([]))
    reasons = [reason for setting, reason in raised.value.problems]
    assert {setting for setting, _ in raised.value.problems} == {SETTING}
    assert "unknown top-level key 'instance' (expected 'instances')" in reasons
    assert any(r.startswith("instance 'ma-bad' params.fast:") for r in reasons)
    assert any(r.startswith("instance 'ma-bad2' params: ") and "must be shorter" in r for r in reasons)
    assert any(r.startswith("instance 'nope' strategy: unknown strategy 'no_such_strategy'") for r in reasons)
    assert "instance 'ma-bad' name: used by another instance" in reasons
    assert any(r.startswith("instance 'has space' name:") for r in reasons)
    assert any(r.startswith("instance '#6' name:") for r in reasons)
    assert any(r.startswith("instance '#6' symbol:") for r in reasons)


def test_the_file_is_toml_or_yaml_and_no_file_means_the_builtins(tmp_path: Path) -> None:
    toml = tmp_path / "strategies.toml"
    toml.write_text(
        textwrap.dedent(
            """
            [[instances]]
            name = "ma-fast"
            strategy = "ma_crossover"
            symbols = ["AAPL"]
            params = { fast = 5, slow = 20 }
            """
        )
    )
    yaml = tmp_path / "strategies.yaml"
    yaml.write_text(
        "instances:\n  - name: ma-fast\n    strategy: ma_crossover\n    symbols: [AAPL]\n"
        "    params: {fast: 5, slow: 20}\n"
    )
    registry = registry_of([])
    assert load_instances(toml, registry) == load_instances(yaml, registry)
    defaults = load_instances(None, registry)
    assert [(i.name, i.strategy_name, i.enabled, i.symbols) for i in defaults] == [
        (name, name, True, frozenset()) for name in BUILTIN
    ]
    assert defaults == default_instances()
    for name, text, message in (
        ("bad.toml", "[[instances]\n", "not valid TOML"),
        ("bad.yaml", "instances: [\n", "not valid YAML"),
        ("bad.json", "{}", "expected a .toml"),
        ("missing.toml", None, "cannot read"),
    ):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(ConfigError, match=message) as raised:
            load_instances(path, registry)
        assert raised.value.setting == SETTING


def test_every_timeframe_a_strategy_may_declare_has_its_bar_topic_in_the_catalogue() -> None:
    from ibstream.contracts import TOPICS
    from ibstream.contracts import bars as bar_contracts
    from ibstream.strategies.sdk import TIMEFRAMES, bar_topic_name

    catalogue = {spec.name for spec in TOPICS}
    assert TIMEFRAMES == bar_contracts.TIMEFRAMES
    assert [bar_topic_name(tf) for tf in TIMEFRAMES] == [f"md.bars.{tf}.v1" for tf in TIMEFRAMES]
    assert {bar_topic_name(tf) for tf in TIMEFRAMES} <= catalogue
