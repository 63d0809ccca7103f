"""The app's Faust names are its state: consumer groups and changelog topics derive from agent and table names, so
a renamed agent or table would orphan a running deployment's offsets and tables."""

from __future__ import annotations

from pathlib import Path

from ibstream.config import load_settings
from streams.app import build_app
from tests.unit.streams.test_streams_agents import RecordingDeadLetters, RecordingEmitter
from tests.unit.streams.test_streams_orchestration import FakePlanner
from tests.unit.streams.test_streams_orchestration_agent import RecordingBus


def test_every_agent_table_and_internal_topic_keeps_its_name(tmp_path: Path) -> None:
    settings = load_settings(kafka_topic_prefix="unit.")
    built = build_app(
        settings,
        data_dir=tmp_path,
        emitter=RecordingEmitter(),
        dead_letters=RecordingDeadLetters(),
        with_feed=False,
        planner=FakePlanner(),
        commands=RecordingBus(),
    )

    assert built.app.conf.id == "unit.ibstream-streams"
    inputs = {agent.name: sorted(agent.channel.topics) for agent in built.agents.values()}
    assert inputs == {
        "bars": ["unit.md.bars.5s.v1"],
        "signals": ["unit.md.bars.5s.v1"],
        "transitions": ["unit.signals.transitions.v1"],
        "outcomes": ["unit.md.bars.5s.v1", "unit.signals.v1"],
        "risk": ["unit.orders.intents.v1"],
        "risk-modifications": ["unit.control.v1"],
        "orchestration-router": [
            "unit.control.v1",
            "unit.orders.events.v1",
            "unit.risk.decisions.v1",
            "unit.signals.v1",
        ],
        "orchestration": ["unit.orchestration-commands"],
    }
    assert sorted(built.app.agents) == sorted(inputs)
    assert sorted(table.name for table in built.tables.values()) == [
        "bar-aggregates",
        "orchestration-orders",
        "orchestration-runs",
        "orchestration-signals",
        "risk-decided",
        "signal-scoring",
        "signal-state",
    ]
    assert sorted(layout.name for layout in built.internal_topics()) == [
        "unit.ibstream-streams-bar-aggregates-changelog",
        "unit.ibstream-streams-orchestration-orders-changelog",
        "unit.ibstream-streams-orchestration-runs-changelog",
        "unit.ibstream-streams-orchestration-signals-changelog",
        "unit.ibstream-streams-risk-decided-changelog",
        "unit.ibstream-streams-signal-scoring-changelog",
        "unit.ibstream-streams-signal-state-changelog",
        "unit.orchestration-commands",
    ]
