"""The streams ceiling: a bare Faust agent doing what risk and signals do — consume, keep state, produce — and
nothing else, as ProducerPerformance is the broker's ceiling.

    python -m bench.faust_ceiling --source TOPIC --sink TOPIC --data-dir DIR      (the worker; bench.streams runs it)

The worker is a ``faust.App`` built by ``streams.app.faust_app`` (the very settings streams runs with: at-least-once,
acks=all, commit cadence, standby replicas) with one agent: for every record of ``--source`` (raw bytes, no decode),
a write to an in-memory table (its changelog record included, as ``risk-decided`` and ``signal-state`` have) and one
record to ``--sink`` with the same key and value. ``bench.streams`` feeds it the same records as the risk phase on
the same broker in the same run and times it the same way, so ``risk_to_faust_ceiling`` and
``signals_to_faust_ceiling`` compare like with like.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

from ibstream.config import load_settings
from streams import topics
from streams.app import faust_app

#: The ceiling agent's table: one entry per key, each write a changelog record.
TABLE = "ceiling-state"


def build(source: str, sink: str, data: Path, partitions: int) -> faust.App:
    """The bare app: ``source`` → table write → ``sink``, raw bytes throughout; its changelog is created before the
    worker starts, as streams does (``streams.topics``)."""
    settings = load_settings()
    app = faust_app(settings, data)
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source_topic = app.topic(source, partitions=partitions, **raw)
    sink_topic = app.topic(sink, partitions=partitions, **raw)
    state = app.Table(TABLE, key_type=str, value_type=int, partitions=partitions)

    async def ceiling(stream: Any) -> AsyncIterator[bool]:
        async for event in stream.events():
            key = event.key or b""
            state[key.decode(errors="replace")] = len(event.value)
            await sink_topic.send(key=key, value=event.value)
            yield True

    app.agent(source_topic, name="ceiling")(ceiling)
    topics.prepare(settings, [topics.layout_of(state.changelog_topic)])
    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_ceiling", description=__doc__)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    app = build(args.source, args.sink, args.data_dir, args.partitions)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        return int(stop.code or 0) if isinstance(stop.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
