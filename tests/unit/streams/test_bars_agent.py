"""The bars agent under ``test_context()``: 5-second bars in, aggregates on their timeframe topics, garbage to the
DLQ, the state in the ``bar-aggregates`` table."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ibstream.config import load_settings
from ibstream.contracts import Bar, bars
from ibstream.contracts.enums import MarketDataSource
from streams.app import build_app
from tests.unit.streams.test_bars_aggregation import OPEN, bar, seconds
from tests.unit.streams.test_streams_agents import CODEC, RecordingDeadLetters, RecordingEmitter
from tests.unit.streams.test_streams_observability import _metric


@pytest.mark.asyncio
async def test_bars_agent_emits_each_timeframe_on_its_topic_and_revises_late_bars(tmp_path: Path) -> None:
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    settings = load_settings(kafka_topic_prefix="unit.")
    built = build_app(
        settings, enabled=("bars",), data_dir=tmp_path, emitter=emitter, dead_letters=letters, with_feed=False
    )
    built.app.finalize()
    built.app.flow_control.resume()
    topic = "unit." + bars.TOPIC.name
    times = seconds(OPEN, 61)
    late = times[7]
    emitted = {
        (timeframe, kind): _metric("ibstream_bar_aggregates_total", timeframe=timeframe, kind=kind)
        for timeframe in ("1m", "5m")
        for kind in ("new", "revision")
    }
    async with built.agents["bars"].test_context() as agent:
        for at in times:
            if at != late:
                await agent.put(key=b"AAPL", value=CODEC.encode(topic, bar(at)))
        await agent.put(key=b"AAPL", value=CODEC.encode(topic, bar(late, source=MarketDataSource.BACKFILL)))
        await agent.put(key=b"AAPL", value=b"\xc3\x01garbage")
    sent = [(name, record) for name, record in emitter.sent if isinstance(record, Bar)]
    minutes = [(record.start, record.revision) for name, record in sent if name == "md.bars.1m.v1"]
    assert minutes == [(OPEN + timedelta(minutes=m), 0) for m in range(5)] + [(OPEN, 1)]
    assert [(record.start, record.revision) for name, record in sent if name == "md.bars.5m.v1"] == [
        (OPEN, 0),
        (OPEN, 1),
    ]
    assert {name for name, _ in sent} == {"md.bars.1m.v1", "md.bars.5m.v1"}
    counted = {
        key: _metric("ibstream_bar_aggregates_total", timeframe=key[0], kind=key[1]) - n for key, n in emitted.items()
    }
    assert counted == {("1m", "new"): 5, ("1m", "revision"): 1, ("5m", "new"): 1, ("5m", "revision"): 1}
    assert [kind for _, _, kind in letters.routed] == ["decode"]
    assert built.tables["bar-aggregates"].get("AAPL")["head"] is not None
