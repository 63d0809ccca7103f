"""The strategy switches feed on the real broker: a signals worker's runtime reads control.v1 from its beginning
before it is ready (the newest switch per instance wins, whatever else the topic holds), follows later switches,
and an unreadable record keyed to an instance disables it (fail closed)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ibstream.config import Settings
from ibstream.contracts import control, utc_now
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.strategies.instances import default_instances
from ibstream.strategies.runtime import StrategyRuntime
from ibstream.strategies.switches import target_of
from ibstream.trading_states import micros
from streams.signals.control_feed import StrategyControlFeed

from .streams_support import CODEC, producer
from .test_trading_states import command

pytestmark = pytest.mark.integration


def _until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_switches_are_read_before_ready_followed_live_and_unreadable_ones_fail_closed(settings: Settings) -> None:
    out = producer(settings)
    base = micros(utc_now())
    switch = ControlCommandKind.TRADING_STATE
    out.send(control.TOPIC, command(switch, target_of("ma_crossover"), base + 1, TradingState.HALTED))
    out.send(control.TOPIC, command(switch, target_of("zscore_reversion"), base + 2, TradingState.HALTED))
    out.send(control.TOPIC, command(switch, target_of("zscore_reversion"), base + 3, TradingState.ACTIVE))
    out.send(control.TOPIC, command(switch, "AAPL", base + 4, TradingState.HALTED))  # a symbol's: not a switch
    out.flush()
    runtime = StrategyRuntime(default_instances())
    feed = StrategyControlFeed(settings, CODEC, runtime, poll_seconds=0.05)
    feed.start()
    try:
        assert runtime.ready.wait(30), "the feed never reached the end of control.v1"
        assert not runtime.enabled("ma_crossover")
        assert runtime.enabled("zscore_reversion") and runtime.enabled("donchian_breakout")
        assert set(runtime.evaluators("AAPL", "5s")) == {"zscore_reversion", "donchian_breakout"}

        out.send(control.TOPIC, command(switch, target_of("ma_crossover"), base + 5, TradingState.ACTIVE))
        out.send(control.TOPIC, command(switch, target_of("ma_crossover"), base, TradingState.HALTED, "old-off"))
        out.flush()
        assert _until(lambda: runtime.enabled("ma_crossover")), "the live enable was not folded"
        time.sleep(0.5)
        assert runtime.enabled("ma_crossover") and runtime.switches.stale == 1  # the older off is stale

        topic = settings.kafka.topic_prefix + control.TOPIC.name
        out.send_raw(topic, b"trading_state:strategy:donchian_breakout", b"\x00not avro")
        out.flush()
        assert _until(lambda: not runtime.enabled("donchian_breakout")), "an unreadable switch did not fail closed"
        assert runtime.enabled("ma_crossover") and runtime.enabled("zscore_reversion")
    finally:
        feed.stop()
