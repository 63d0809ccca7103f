"""The outcomes agent's processing over a signal then bars, as Faust delivers them (raw bytes on two topics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ibstream.contracts import SignalOutcome, bars, signals
from ibstream.contracts.enums import OutcomeKind
from streams.context import AgentContext
from streams.outcomes.agents import outcomes_agent
from tests.unit.ibstream.test_strategies_scoring import SIZING, bar, signal
from tests.unit.streams.test_streams_agents import CODEC, RecordingDeadLetters, RecordingEmitter
from tests.unit.streams.test_streams_observability import _metric


@dataclass
class Message:
    topic: str
    value: bytes
    partition: int = 0
    offset: int = 0
    key: bytes = b"AAPL"
    headers: Any = None


@dataclass
class Event:
    message: Message


class Stream:
    def __init__(self, items: list[Event]) -> None:
        self._items = items

    async def events(self) -> Any:
        for item in self._items:
            yield item


@pytest.mark.asyncio
async def test_outcomes_agent_scores_a_signal_on_the_bars_after_it_and_dead_letters_garbage() -> None:
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    ctx = AgentContext(CODEC, emitter, letters, "unit.")
    sources = {"unit." + spec.name: spec for spec in (signals.TOPIC, bars.TOPIC)}
    table: dict[str, Any] = {}
    bar_topic, signal_topic = "unit." + bars.TOPIC.name, "unit." + signals.TOPIC.name
    stream = [
        Event(Message(signal_topic, CODEC.encode(signal_topic, signal()))),
        Event(Message(bar_topic, CODEC.encode(bar_topic, bar(1, 99.5, 100.5)))),
        Event(Message(bar_topic, b"\xc3\x01garbage")),
        Event(Message(bar_topic, CODEC.encode(bar_topic, bar(2, 100.5, 102.5)))),
        Event(Message(signal_topic, CODEC.encode(signal_topic, signal()))),  # a replay: scored already
    ]
    body = outcomes_agent(ctx, table, SIZING, sources)
    before = _metric("ibstream_signal_outcomes_total", strategy=signal().strategy, outcome="hit_target")
    counts = [count async for count in body(Stream(stream))]
    assert counts == [0, 0, 0, 1, 0]
    (outcome,) = emitter.of(SignalOutcome)
    counted = _metric("ibstream_signal_outcomes_total", strategy=outcome.strategy, outcome="hit_target") - before
    assert counted == 1
    assert (outcome.signal_id, outcome.outcome, outcome.bars_to_outcome) == ("s1", OutcomeKind.HIT_TARGET, 2)
    assert [kind for _, _, kind in letters.routed] == ["decode"]
    assert table["AAPL"]["open"] == {}


def test_a_record_no_agent_can_decode_is_dead_lettered_once_per_worker_however_many_agents_read_it() -> None:
    letters = RecordingDeadLetters()
    ctx = AgentContext(CODEC, RecordingEmitter(), letters, "unit.")
    bar_topic = "unit." + bars.TOPIC.name
    garbage = Event(Message(bar_topic, b"\xc3\x01garbage", partition=2, offset=7))
    other = Event(Message(bar_topic, b"\xc3\x01garbage", partition=2, offset=8))
    for _agent in ("bars", "signals", "outcomes"):  # three agents of one worker read the same record
        assert ctx.decode(bars.TOPIC, garbage) is None
    assert ctx.decode(bars.TOPIC, other) is None
    assert [(topic, kind) for topic, _, kind in letters.routed] == [(bar_topic, "decode"), (bar_topic, "decode")]
    # A processing failure is the agent's own: each is dead-lettered.
    ctx.dead_letter(bars.TOPIC, garbage, ValueError("agent A"), "processing")
    ctx.dead_letter(bars.TOPIC, garbage, ValueError("agent B"), "processing")
    assert len(letters.routed) == 4
