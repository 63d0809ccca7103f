"""An input partition that stops moving: found, reported, and read again from its committed offset.

Why: now and then on a loaded machine a restarted worker never processed a record produced while it was joining its
group (CI, in three restart tests; the mechanism inside faust-streaming 0.15 is not found yet, see the CI notes). The
worker looked healthy: ready, timers running, nothing logged. Faust's own check (``stream_processing_timeout``) cannot
see such a record: it compares a monotonic clock with aiokafka's wall-clock fetch time, and it only looks for data
aiokafka has not fetched, while a record fetched and then lost leaves nothing unfetched.

So every ``CHECK_SECONDS`` the watch looks at each assigned input partition (never a table's changelog):

* ``committed``: the next offset Faust commits; everything before it was processed and acknowledged;
* ``delivered``: the last offset Faust handed to the agents (its read offset);
* ``position`` and ``highwater``: aiokafka's fetch position, and the log end it last saw.

A partition is *behind* when a record at or after the committed offset was handed over (``delivered >= committed``),
or when the log holds records aiokafka has not fetched (``position < highwater``). Behind with no commit for
``stall_seconds``: *stalled*. Then one error line carries those numbers (the evidence), ``/ready`` answers 503 naming
the partition, and the partition is sought back to its committed offset, so a record that was fetched and dropped, or
never fetched, is read again (at-least-once: the agents already meet such replays after a crash). Once it moves, a
line says it recovered and readiness comes back.

A transactional writer's commit marker takes an offset no record has: a partition read to its end then has
``delivered == committed - 1`` and ``position == highwater``, which is not behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: How often the watch looks at the partitions.
CHECK_SECONDS = 5.0
#: How long the watch waits for aiokafka's fetch position of one partition before it reports the position unknown.
POSITION_TIMEOUT_SECONDS = 2.0
#: Test hook (the real-socket stall test): drop the first record of this topic (its name without the prefix) after
#: Faust fetched it, as the lost record was: read offset advanced, never processed, never acknowledged.
DROP_FIRST_ENV = "IBSTREAM_STREAMS_TEST_DROP_FIRST"


@dataclass(frozen=True)
class Offsets:
    """One input partition's offsets at one look (None: not known yet)."""

    committed: int | None
    delivered: int | None
    position: int | None
    highwater: int | None

    @property
    def behind(self) -> bool:
        """Records handed over and not yet acknowledged, or in the log and not yet fetched."""
        handed_over = self.delivered is not None and (self.committed is None or self.delivered >= self.committed)
        unfetched = self.position is not None and self.highwater is not None and self.position < self.highwater
        return handed_over or unfetched


@dataclass
class _Track:
    committed: int | None
    moved_at: float
    stalled: bool = False


@dataclass
class StallTracker:
    """Pure: which partitions are stalled, from successive looks at their offsets."""

    stall_seconds: float
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def observe(self, partition: str, offsets: Offsets, now: float) -> str | None:
        """``"stalled"`` when the partition just became stalled, ``"recovered"`` when a stalled one moves again or is
        no longer behind, None otherwise."""
        track = self._tracks.get(partition)
        if track is None:
            self._tracks[partition] = _Track(offsets.committed, now)
            return None
        moved = offsets.committed != track.committed
        if moved or not offsets.behind:
            track.committed, track.moved_at = offsets.committed, now
            if track.stalled:
                track.stalled = False
                return "recovered"
            return None
        if not track.stalled and now - track.moved_at >= self.stall_seconds:
            track.stalled = True
            return "stalled"
        return None

    def read_again(self, partition: str, now: float) -> None:
        """The partition was sought back: it gets another ``stall_seconds`` before it counts as stalled again."""
        track = self._tracks.get(partition)
        if track is not None:
            track.moved_at = now

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the partitions no longer assigned (a rebalance moved them)."""
        kept = set(keep)
        for partition in list(self._tracks):
            if partition not in kept:
                del self._tracks[partition]

    @property
    def stalled(self) -> list[str]:
        return sorted(partition for partition, track in self._tracks.items() if track.stalled)


class StallWatch:
    """The Faust side: reads the offsets from the app's consumer, reports and seeks (see the module).

    It reads two of Faust's consumer attributes that have no public accessor (``_committed_offset``, ``_read_offset``);
    ``tests/unit/streams/test_stalls.py`` fails if a Faust upgrade renames them."""

    def __init__(self, app: Any, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.tracker = StallTracker(stall_seconds)
        self._clock = clock

    @property
    def stalled(self) -> list[str]:
        return self.tracker.stalled

    async def check(self) -> None:
        """One look at every assigned input partition (skipped while the group rebalances). Never raises: an error
        in a Faust timer crashes the worker, and a partition a rebalance took away in mid-look (a seek on it fails)
        is no reason to stop processing the others."""
        try:
            await self._check()
        except Exception as error:
            log.warning("stall watch look failed", extra={"error": repr(error)})

    async def _check(self) -> None:
        app = self.app
        if app.rebalancing:  # Faust's flag stays up until recovery completed and the streams resumed
            return
        consumer = app.consumer
        changelogs = set(app.tables.changelog_topics)
        partitions = sorted((tp for tp in consumer.assignment() if tp.topic not in changelogs), key=str)
        self.tracker.forget(_name(tp) for tp in partitions)
        for tp in partitions:
            offsets = Offsets(
                committed=consumer._committed_offset.get(tp),
                delivered=consumer._read_offset.get(tp),
                position=await self._position(consumer, tp),
                highwater=_highwater(consumer, tp),
            )
            now = self._clock()
            change = self.tracker.observe(_name(tp), offsets, now)
            if change == "stalled":
                await self._read_again(consumer, tp, offsets, now)
            elif change == "recovered":
                log.warning("stream partition moving again", extra={"partition": _name(tp), **_fields(offsets)})

    async def _read_again(self, consumer: Any, tp: Any, offsets: Offsets, now: float) -> None:
        start = offsets.committed
        if start is None:
            start = (await consumer.earliest_offsets(tp)).get(tp, 0)
        log.error(
            "stream partition stalled: read again from its committed offset",
            extra={
                "partition": _name(tp),
                "stall_seconds": self.tracker.stall_seconds,
                "read_again_from": start,
                **_fields(offsets),
            },
        )
        await consumer.seek(tp, start)
        self.tracker.read_again(_name(tp), now)

    @staticmethod
    async def _position(consumer: Any, tp: Any) -> int | None:
        try:
            position = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_SECONDS)
        except Exception:  # unknown: no valid position yet, or a broker round trip that failed or timed out
            return None
        return int(position) if position is not None else None


def _highwater(consumer: Any, tp: Any) -> int | None:
    try:
        value = consumer.highwater(tp)
    except Exception:  # aiokafka raises for a partition it no longer has
        return None
    return int(value) if value is not None else None


def _name(tp: Any) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _fields(offsets: Offsets) -> dict[str, int | None]:
    return {
        "committed": offsets.committed,
        "delivered": offsets.delivered,
        "position": offsets.position,
        "highwater": offsets.highwater,
    }


def install(app: Any, stall_seconds: float, topic_prefix: str) -> StallWatch:
    """A ``stall-watch`` timer on the app; with the test hook set, the first record of its topic is dropped."""
    watch = StallWatch(app, stall_seconds)
    app.timer(CHECK_SECONDS, name="stall-watch")(watch.check)
    dropped = os.environ.get(DROP_FIRST_ENV)
    if dropped:
        topic = topic_prefix + dropped

        async def hook(sender: Any, *args: Any, **kwargs: Any) -> None:
            # Once the consumer exists and before the fetcher starts (recovery starts it after the assignment).
            _drop_first_record(app, topic)

        app.on_partitions_assigned.connect(hook)
    return watch


def _drop_first_record(app: Any, topic: str) -> None:
    consumer = app.consumer
    if getattr(consumer, "_ibstream_drop_hook", False):
        return
    consumer._ibstream_drop_hook = True
    deliver = consumer.callback
    done = False

    async def callback(message: Any) -> Any:
        nonlocal done
        if not done and message.topic == topic:
            done = True
            log.warning("test hook: record dropped after the fetch", extra={"topic": topic, "offset": message.offset})
            return None
        return await deliver(message)

    consumer.callback = callback
