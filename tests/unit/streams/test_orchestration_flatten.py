"""Flatten in orchestration: a ``flatten`` command becomes one market intent per held symbol in scope, with ids a
redelivery repeats, and nothing from a stale command or before the positions are known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibstream import ids
from ibstream.config import load_settings
from ibstream.contracts import ControlCommand, OrderIntent, utc_now
from ibstream.contracts.enums import ControlCommandKind, OrderType, Side
from streams import orchestration as orch
from streams.app import build_app
from streams.orchestration.flatten import flatten_intents, in_scope, is_stale
from streams.orchestration.orchestrator import FlattenConfig
from tests.unit.streams.test_streams_agents import RecordingDeadLetters, RecordingEmitter
from tests.unit.streams.test_streams_orchestration import FakePlanner
from tests.unit.streams.test_streams_orchestration_agent import RecordingBus

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
HELD = {"AAPL": 100.0, "MSFT": -40.0, "SPY": 0.0}


def flatten_command(target: str = "account", issued: datetime = NOW, command_id: str = "cmd-1") -> ControlCommand:
    return ControlCommand(
        command_id=command_id,
        command=ControlCommandKind.FLATTEN,
        target=target,
        reason="end of test",
        actor="ops",
        parameters={},
        issued_time=issued,
    )


def test_an_account_flatten_closes_every_held_symbol_at_market_with_no_bracket() -> None:
    intents = flatten_intents(flatten_command(), HELD, NOW)
    assert [(i.symbol, i.side, i.quantity) for i in intents] == [("AAPL", Side.SELL, 100.0), ("MSFT", Side.BUY, 40.0)]
    for intent in intents:
        assert intent.order_type is OrderType.MKT and intent.stop_loss is None and intent.take_profit is None
        assert intent.flatten_id == "cmd-1" and intent.order_id == ids.flatten_order_id("cmd-1", intent.symbol)
        assert intent.run_id is None and intent.requested_by == "flatten:ops"


def test_a_symbol_flatten_closes_that_symbol_only_and_the_account_id_means_the_account() -> None:
    assert in_scope(flatten_command("MSFT"), HELD) == {"MSFT": -40.0}
    assert in_scope(flatten_command("SPY"), HELD) == {}  # flat already: nothing to close
    assert in_scope(flatten_command("TSLA"), HELD) == {}
    assert set(in_scope(flatten_command("DU123"), HELD, account="DU123")) == {"AAPL", "MSFT"}


def test_a_redelivered_command_makes_the_same_order_ids_and_another_command_new_ones() -> None:
    first = [i.order_id for i in flatten_intents(flatten_command(), HELD, NOW)]
    assert first == [i.order_id for i in flatten_intents(flatten_command(), HELD, NOW + timedelta(seconds=5))]
    other = [i.order_id for i in flatten_intents(flatten_command(command_id="cmd-2"), HELD, NOW)]
    assert not set(first) & set(other)


def test_a_command_older_than_the_max_age_is_stale() -> None:
    assert not is_stale(flatten_command(), NOW + timedelta(seconds=60), timedelta(seconds=60))
    assert is_stale(flatten_command(), NOW + timedelta(seconds=61), timedelta(seconds=60))


def test_the_router_sends_a_flatten_to_the_command_topic_keyed_by_its_id() -> None:
    assert orch.command_key(flatten_command()) == "flatten:cmd-1"


@pytest.mark.asyncio
async def test_the_orchestration_agent_emits_flatten_intents_from_the_positions_it_sees(tmp_path: Path) -> None:
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    built = build_app(
        load_settings(kafka_topic_prefix="unit."),
        enabled=("orchestration",),
        data_dir=tmp_path,
        emitter=emitter,
        dead_letters=letters,
        with_feed=False,
        planner=FakePlanner(),
        commands=RecordingBus(),
    )
    built.app.finalize()
    built.app.flow_control.resume()
    assert built.orchestrator is not None
    fresh = flatten_command(issued=utc_now())
    outcomes = []
    async with built.agents["orchestration"].test_context() as agent:

        async def put(command: ControlCommand) -> None:
            event = await agent.put(key=b"k", value=orch.encode_command(command))
            outcomes.append(agent.results[event.message.offset])

        await put(fresh)  # no position feed in this worker: nothing is closed blind
        built.orchestrator.flattening = FlattenConfig(positions=lambda: None, wait_seconds=0.2)
        await put(fresh)  # the feed has not caught up
        built.orchestrator.flattening = FlattenConfig(positions=lambda: HELD)
        await put(fresh)
        await put(fresh)  # redelivered
        await put(flatten_command(issued=utc_now() - timedelta(minutes=5), command_id="old"))

    assert outcomes == [
        "flatten failed: positions unknown",
        "flatten failed: positions unknown",
        "flatten: 2 intents",
        "flatten: 2 intents",
        "flatten ignored: stale",
    ]
    intents = emitter.of(OrderIntent)
    assert [i.order_id for i in intents[:2]] == [i.order_id for i in intents[2:]]
    assert {i.symbol for i in intents} == {"AAPL", "MSFT"}
