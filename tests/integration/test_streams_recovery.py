"""A killed streams worker restarted with its instance id (static membership, as a pod's container restart or the
chaos campaign's supervisor does) takes its partitions straight back: it does not wait for the killed member's
session to time out, and its table comes back from the changelog.

The group's session is set long here (60 s) so that waiting for it cannot hide inside the restarted process's own
start-up on a loaded machine: with dynamic membership the restarted worker is ready only after ~60 s from the kill;
with its instance id within a couple of seconds of starting."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from ibstream.config import Settings
from ibstream.contracts import SignalOutcome, bars, signal_outcomes, signals
from ibstream.contracts.enums import OutcomeKind, Side

from .streams_support import StreamsWorker, TopicReader, log_records, producer
from .test_streams_outcomes import a_bar, a_signal

pytestmark = pytest.mark.integration

SESSION_SECONDS = 60.0
STATIC = {"streams_instance_id": "outcomes-0", "streams_session_timeout_seconds": SESSION_SECONDS}


def worker_events(log: str) -> list[tuple[datetime, str]]:
    """(time, event) of each JSON log line."""
    return [(datetime.fromisoformat(record["ts"]), str(record.get("event", ""))) for record in log_records(log)]


def seconds_to_ready(log: str) -> float:
    """From the Faust worker starting (the process is up, imports done) to its tables' first "Recovery complete":
    joining the group, the assignment and the recovery. (Its "Worker ready" may come after the first events.)"""
    events = worker_events(log)
    started = next(at for at, event in events if event.startswith("[^_Worker]: Starting"))
    ready = next(at for at, event in events if event.endswith("Recovery complete") and at >= started)
    return (ready - started).total_seconds()


def test_a_killed_worker_restarted_with_its_instance_id_resumes_without_waiting_for_its_session(
    settings: Settings, tmp_path: Path
) -> None:
    scored = TopicReader(settings, signal_outcomes.TOPIC)
    out = producer(settings)
    first = StreamsWorker(settings, tmp_path, "outcomes", name="first", **STATIC).start()
    try:
        out.send(signals.TOPIC, a_signal("AAPL", Side.BUY, "aapl-buy"))
        out.send(signals.TOPIC, a_signal("MSFT", Side.SELL, "msft-sell"))
        out.flush()
        for i in range(1, 4):  # AAPL's signal stays open: its state lives in the table
            out.send(bars.TOPIC, a_bar("AAPL", i, 99.5, 100.5))
        out.send(bars.TOPIC, a_bar("MSFT", 1, 99.0, 101.2))  # MSFT's stop
        out.flush()
        found: list[SignalOutcome] = scored.wait_for(1, 120)
        assert [o.signal_id for o in found] == ["msft-sell"], first.log()[-3000:]
        scored.poll_until(lambda _: False, 3.0)  # past a commit interval (1 s): the kill loses no committed work
    finally:
        first.kill()

    restarted = StreamsWorker(settings, tmp_path, "outcomes", name="restarted", **STATIC).start()
    try:
        out.send(bars.TOPIC, a_bar("AAPL", 4, 99.8, 102.1))
        out.flush()
        found = scored.poll_until(lambda records: any(o.signal_id == "aapl-buy" for o in records), 120)
        aapl = [(o.outcome, o.bars_to_outcome) for o in found if o.signal_id == "aapl-buy"]
        assert aapl == [(OutcomeKind.HIT_TARGET, 4)], restarted.log()[-3000:]
        # Dynamic membership would hold the join until the killed member's session ran out (60 s after the kill).
        ready_after = seconds_to_ready(restarted.log())
        assert ready_after < SESSION_SECONDS / 4, (ready_after, restarted.log()[-3000:])
    finally:
        restarted.stop()
        scored.close()


def test_a_second_worker_with_the_same_instance_id_makes_the_first_stop_instead_of_fencing_forever(
    settings: Settings, tmp_path: Path
) -> None:
    """Two live workers with one id fence each other at every heartbeat (both recover and process the same
    partitions in turn): the one that was there first stops with exit code 3, the newcomer keeps the partitions."""
    same = {"streams_instance_id": "outcomes-0"}  # the default 15 s session: twins fence each other every ~3 s
    first = StreamsWorker(settings, tmp_path, "outcomes", name="first", **same).start()
    second: StreamsWorker | None = None
    try:
        deadline = time.monotonic() + 120
        while "Worker ready" not in first.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(10)  # a member undisturbed for a few heartbeats: the established one, which yields to a newcomer
        second = StreamsWorker(settings, tmp_path, "outcomes", name="second", **same).start()
        workers = (first, second)
        deadline = time.monotonic() + 120
        while all(w.process is not None and w.process.poll() is None for w in workers):
            assert time.monotonic() < deadline, second.log()[-3000:]
            time.sleep(0.5)
        # The newcomer wins, as a restart with the instance id does: the first one stops, the second stays.
        assert first.process is not None and first.process.returncode == 3, first.log()[-3000:]
        assert "another streams worker runs with this instance id" in first.log()
        time.sleep(10)  # left alone, the survivor keeps running
        assert second.process is not None and second.process.poll() is None, second.log()[-3000:]
    finally:
        first.stop()
        if second is not None:
            second.stop()
