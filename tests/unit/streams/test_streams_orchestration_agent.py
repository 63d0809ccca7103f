"""The orchestration agent under ``test_context()``: no broker, a fake planner, a recording emitter."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ibstream import ids
from ibstream.config import load_settings
from ibstream.contracts import OrchestrationRun, OrderIntent, SignalTransition, utc_now
from ibstream.contracts.enums import ControlCommandKind, OrderStatus, RunState, SignalStatus
from streams import orchestration as orch
from streams.app import build_app
from tests.unit.streams.test_streams_agents import RecordingDeadLetters, RecordingEmitter
from tests.unit.streams.test_streams_orchestration import SIGNAL, FakePlanner, command, fill


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def forward(self, key: str, value: bytes) -> None:
        self.sent.append((key, value))


@pytest.mark.asyncio
async def test_orchestration_agent_runs_approves_once_triggers_expires_and_resumes(tmp_path: Path) -> None:
    emitter, letters, bus, planner = RecordingEmitter(), RecordingDeadLetters(), RecordingBus(), FakePlanner()
    settings = load_settings(kafka_topic_prefix="unit.", orchestration_min_confidence=0.6)
    built = build_app(
        settings,
        enabled=("orchestration",),
        data_dir=tmp_path,
        emitter=emitter,
        dead_letters=letters,
        with_feed=False,
        planner=planner,
        commands=bus,
    )
    built.app.finalize()
    built.app.flow_control.resume()
    now = utc_now()
    hot = SIGNAL.model_copy(update={"signal_id": "hot", "expiry_time": now + timedelta(minutes=5)})
    cold = SIGNAL.model_copy(update={"signal_id": "cold", "confidence": 0.3, "expiry_time": now + timedelta(minutes=5)})
    brief = SIGNAL.model_copy(update={"signal_id": "brief", "expiry_time": now + timedelta(seconds=5)})
    hot_run, cold_run = ids.run_id("hot"), ids.run_id("cold")
    order_id = ids.order_id(hot_run)
    approve = command(ControlCommandKind.APPROVE_RUN, hot_run, actor="alice", reason="fits")
    # Issued now, so the trigger still waits for its signal when the sweep below runs.
    late = command(ControlCommandKind.TRIGGER_RUN, "late").model_copy(update={"issued_time": now})
    outcomes = []
    async with built.agents["orchestration"].test_context() as agent:

        async def put(raw: bytes) -> None:
            event = await agent.put(key=b"k", value=raw)
            outcomes.append(agent.results[event.message.offset])

        for record in (
            hot,
            cold,
            late,
            approve,
            approve,
            hot,
            command(ControlCommandKind.TRIGGER_RUN, "cold", actor="bob", reason="manual"),
            fill(order_id),
            brief,
        ):
            await put(orch.encode_command(record))
        await put(b"not json")
        # The sweep asks for the expired run's tick through the bus (tables change only inside the stream).
        assert built.orchestrator is not None
        ticks = built.orchestrator.due_ticks(brief.expiry_time)
        assert [key for key, _ in ticks] == [ids.order_id(ids.run_id("brief"))]
        assert built.orchestrator.due_ticks(brief.expiry_time) == []  # in flight: not asked twice
        await put(ticks[0][1])  # the owner checks again on its own clock: not yet
        built.orchestrator.clock = lambda: brief.expiry_time
        await put(ticks[0][1])

    assert outcomes == [
        "awaiting_approval",
        "no run: confidence 0.30 < orchestration minimum 0.60",
        "trigger_run waits for its signal",
        "submitted",
        "approve_run ignored: run is submitted",
        "signal seen before: its run exists",
        "awaiting_approval",
        "completed",
        "awaiting_approval",
        "undecodable",
        f"not expired: run is awaiting_approval, signal expires {brief.expiry_time.isoformat()}",
        "expired",
    ]
    intents = emitter.of(OrderIntent)
    assert [(i.order_id, i.run_id) for i in intents] == [(order_id, hot_run)]
    hot_states = [r.state for r in emitter.of(OrchestrationRun) if r.run_id == hot_run]
    assert hot_states == [
        RunState.TRIGGERED,
        RunState.PLANNING,
        RunState.PLANNED,
        RunState.AWAITING_APPROVAL,
        RunState.APPROVED,
        RunState.SUBMITTED,
        RunState.COMPLETED,
    ]
    cold_runs = [r for r in emitter.of(OrchestrationRun) if r.run_id == cold_run]
    assert (cold_runs[0].actor, cold_runs[0].reason) == ("bob", "manual")
    moved = [(t.signal_id, t.to_status) for t in emitter.of(SignalTransition)]
    assert moved == [
        ("hot", SignalStatus.PLANNED),
        ("hot", SignalStatus.APPROVED),
        ("hot", SignalStatus.ORDERED),
        ("cold", SignalStatus.PLANNED),
        ("hot", SignalStatus.FILLED),
        ("brief", SignalStatus.PLANNED),
        ("brief", SignalStatus.EXPIRED),
    ]
    assert planner.calls == 3
    assert [kind for _, _, kind in letters.routed] == ["decode"]
    runs_table = built.tables["orchestration-runs"]
    assert runs_table.get(hot_run)["run"]["state"] == "completed"
    assert built.tables["orchestration-orders"].get(order_id) == hot_run
    assert built.tables["orchestration-signals"].get("late")["trigger"]["target"] == "late"
    assert fill(order_id, OrderStatus.FILLED).order_id == order_id
