"""Replay re-emits market data only: control and trading topics are refused as sources and targets, before any I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from ibstream.config import load_settings
from ibstream.contracts import TOPICS
from tooling.replay import ReplayError, refuse_unless_market_data, replay

START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)

TRADING_TOPICS = [
    "control.v1",
    "orders.intents.v1",
    "risk.decisions.v1",
    "orders.routed.v1",
    "orders.events.v1",
    "executions.v1",
]


@pytest.mark.parametrize("topic", TRADING_TOPICS)
def test_replay_refuses_control_and_trading_topics(topic: str) -> None:
    assert topic in {spec.name for spec in TOPICS}
    with pytest.raises(ReplayError, match=f"market data only.*refusing {topic}"):
        replay(load_settings(), topic, START, START + timedelta(minutes=1))


@pytest.mark.parametrize("target", ["control.v1", "orders.routed.v1"])
def test_replay_refuses_a_trading_topic_as_the_target_of_market_data(target: str) -> None:
    with pytest.raises(ReplayError, match=f"refusing {target}"):
        replay(load_settings(), "md.quotes.v1", START, START + timedelta(minutes=1), target_topic=target)


def test_a_scratch_target_outside_the_catalogue_passes_the_topic_check() -> None:
    refuse_unless_market_data("md.bars.5s.v1", "replay.check.v1")  # no error
    with pytest.raises(ReplayError, match=re.escape("refusing executions.v1")):
        refuse_unless_market_data("md.bars.5s.v1", "executions.v1")
