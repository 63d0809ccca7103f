"""Each Faust agent under ``test_context()``: no broker, a recording emitter and dead-letter sink."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ibstream.config import load_settings
from ibstream.contracts import (
    OrderIntent,
    Record,
    RiskDecision,
    RoutedOrder,
    Signal,
    SignalTransition,
    TopicSpec,
    bars,
    order_intents,
    signal_transitions,
)
from ibstream.contracts.enums import OrderType, Side, SignalStatus
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from streams import signals
from streams.app import build_app
from tests.unit.ibstream.test_risk import NOW, quote
from tests.unit.streams.test_streams_signals import CHANNEL, T0, bar

R = TypeVar("R", bound=Record)
CODEC = SingleObjectCodec(SchemaStore())


class RecordingEmitter:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Record]] = []

    async def emit(self, spec: TopicSpec[R], record: R, *, wait: bool = False) -> None:
        self.sent.append((spec.name, record))

    async def emit_pending(self, spec: TopicSpec[R], record: R) -> Awaitable[None]:
        self.sent.append((spec.name, record))
        return asyncio.sleep(0)

    def of(self, record_type: type[R]) -> list[R]:
        return [record for _, record in self.sent if isinstance(record, record_type)]


class RecordingDeadLetters:
    def __init__(self) -> None:
        self.routed: list[tuple[str, BaseException, str]] = []
        self.flushes = 0

    def route(self, spec: TopicSpec[Any], message: Any, error: BaseException, error_kind: str = "") -> None:
        self.routed.append((message.topic(), error, error_kind))

    def flush(self) -> None:
        self.flushes += 1


def make_intent(order_id: str, **overrides: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "order_id": order_id,
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 10.0,
        "order_type": OrderType.LMT,
        "limit_price": 100.0,
        "stop_loss": 98.0,
        "take_profit": 104.0,
        "requested_by": "test",
        "created_time": NOW,
    }
    values.update(overrides)
    return OrderIntent(**values)


@pytest.mark.asyncio
async def test_risk_agent_decides_once_routes_approved_and_dead_letters_garbage(tmp_path: Path) -> None:
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    settings = load_settings(kafka_topic_prefix="unit.", risk_quote_max_age_seconds=1e9)
    built = build_app(
        settings, enabled=("risk",), data_dir=tmp_path, emitter=emitter, dead_letters=letters, with_feed=False
    )
    assert built.view is not None
    built.view.apply_quote(quote())
    built.view.ready.set()
    built.app.finalize()
    built.app.flow_control.resume()
    topic = "unit." + order_intents.TOPIC.name
    async with built.agents["risk"].test_context() as agent:
        good = make_intent("o-good")
        await agent.put(key=b"o-good", value=CODEC.encode(topic, good))
        await agent.put(key=b"o-good", value=CODEC.encode(topic, good))  # redelivery
        await agent.put(key=b"o-wide", value=CODEC.encode(topic, make_intent("o-wide", stop_loss=50.0)))
        await agent.put(key=b"junk", value=b"not avro at all")

    decisions = emitter.of(RiskDecision)
    assert [(d.order_id, d.approved) for d in decisions] == [("o-good", True), ("o-wide", False)]
    assert [r.order_id for r in emitter.of(RoutedOrder)] == ["o-good"]
    assert built.tables["risk-decided"].get("o-good") == decisions[0].decision_id
    assert len(letters.routed) == 1
    assert letters.routed[0][2] == "decode"
    assert letters.flushes == 1


class AckFailingEmitter(RecordingEmitter):
    """The broker never acknowledges the decision of ``failing`` (its record is lost)."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    async def emit_pending(self, spec: TopicSpec[R], record: R) -> Awaitable[None]:
        if isinstance(record, RiskDecision) and record.order_id == self.failing:
            self.sent.append((spec.name, record))

            async def lost() -> None:
                raise RuntimeError("delivery timed out")

            return lost()
        return await super().emit_pending(spec, record)


@pytest.mark.asyncio
async def test_risk_agent_holds_an_approval_in_flight_and_releases_one_never_recorded(tmp_path: Path) -> None:
    emitter, letters = AckFailingEmitter(failing="o-lost"), RecordingDeadLetters()
    settings = load_settings(kafka_topic_prefix="unit.", risk_quote_max_age_seconds=1e9)
    built = build_app(
        settings, enabled=("risk",), data_dir=tmp_path, emitter=emitter, dead_letters=letters, with_feed=False
    )
    assert built.view is not None
    built.view.apply_quote(quote())
    built.view.ready.set()
    built.app.finalize()
    built.app.flow_control.resume()
    topic = "unit." + order_intents.TOPIC.name
    sell = {"side": Side.SELL, "stop_loss": 102.0, "take_profit": 96.0}
    async with built.agents["risk"].test_context() as agent:
        # A buy approved (no order event yet), then another run's sell on the same symbol: one net position.
        await agent.put(key=b"o-buy", value=CODEC.encode(topic, make_intent("o-buy", run_id="donchian")))
        await agent.put(key=b"o-sell", value=CODEC.encode(topic, make_intent("o-sell", run_id="zscore", **sell)))
        # MSFT: an approval whose decision is never recorded holds nothing, so the opposite one after it passes.
        msft = {"symbol": "MSFT"}
        built.view.apply_quote(quote("MSFT"))
        await agent.put(key=b"o-lost", value=CODEC.encode(topic, make_intent("o-lost", **msft)))
        await agent.put(key=b"o-after", value=CODEC.encode(topic, make_intent("o-after", **msft, **sell)))

    verdicts = {d.order_id: [c.name for c in d.checks if not c.passed] for d in emitter.of(RiskDecision)}
    assert verdicts == {"o-buy": [], "o-sell": ["conflicting_position"], "o-lost": [], "o-after": []}
    assert [r.order_id for r in emitter.of(RoutedOrder)] == ["o-buy", "o-after"]
    assert [kind for _, _, kind in letters.routed] == ["processing"]


@pytest.mark.asyncio
async def test_signals_agent_emits_signal_and_transition_once_and_tracks_transitions(tmp_path: Path) -> None:
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    settings = load_settings(kafka_topic_prefix="unit.")
    built = build_app(
        settings, enabled=("signals",), data_dir=tmp_path, emitter=emitter, dead_letters=letters, with_feed=False
    )
    built.app.finalize()
    built.app.flow_control.resume()
    topic = "unit." + bars.TOPIC.name
    series = [*CHANNEL, 103.0]
    async with built.agents["signals"].test_context() as agent:
        for i, close in enumerate(series):
            await agent.put(key=b"AAPL", value=CODEC.encode(topic, bar(i, close)))
        await agent.put(key=b"AAPL", value=CODEC.encode(topic, bar(len(series) - 1, 103.0)))  # duplicate
        await agent.put(key=b"AAPL", value=b"\xc3\x01garbage")
    # The breakout bar is also a 2-sigma stretch: Donchian buys, the z-score fades it. One each, duplicate ignored.
    made = emitter.of(Signal)
    assert sorted(s.strategy for s in made) == ["donchian_breakout", "zscore_reversion"]
    assert [t.to_status for t in emitter.of(SignalTransition)] == [SignalStatus.NEW, SignalStatus.NEW]
    made = [s for s in made if s.strategy == "donchian_breakout"]
    assert built.tables["signal-state"].get("AAPL")["active"]["donchian_breakout"]["signal_id"] == made[0].signal_id
    assert [kind for _, _, kind in letters.routed] == ["decode"]

    reject = signals.transition(
        made[0].signal_id, "AAPL", "donchian_breakout", SignalStatus.NEW, SignalStatus.REJECTED, "operator", T0
    )
    transitions_topic = "unit." + signal_transitions.TOPIC.name
    async with built.agents["transitions"].test_context() as agent:
        await agent.put(key=b"AAPL", value=CODEC.encode(transitions_topic, reject))
    assert built.tables["signal-state"].get("AAPL")["active"]["donchian_breakout"]["status"] == "rejected"
