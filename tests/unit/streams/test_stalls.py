"""The stall watch's decisions from plain offsets, and the Faust consumer attributes it reads."""

from __future__ import annotations

import inspect

import pytest
from faust.transport.consumer import Consumer

from streams.stalls import Offsets, StallTracker


def offsets(
    committed: int | None, delivered: int | None, position: int | None = None, highwater: int | None = None
) -> Offsets:
    return Offsets(committed=committed, delivered=delivered, position=position, highwater=highwater)


@pytest.mark.parametrize(
    ("committed", "delivered", "position", "highwater", "behind"),
    [
        (10, 9, 10, 10, False),  # read to the end and committed
        (10, 9, 11, 11, False),  # a transactional commit marker after offset 9: nothing to read
        (10, 10, 11, 11, True),  # offset 10 handed over, not acknowledged
        (10, 12, 13, 13, True),  # 10-12 handed over, none acknowledged
        (10, 9, 10, 12, True),  # two records aiokafka has not fetched
        (None, None, 0, 0, False),  # an empty partition never committed
        (None, 0, 1, 1, True),  # its first record handed over, nothing committed yet
        (10, 9, None, None, False),  # aiokafka does not know position or highwater yet
    ],
)
def test_behind_means_handed_over_unacknowledged_or_unfetched(
    committed: int | None, delivered: int | None, position: int | None, highwater: int | None, behind: bool
) -> None:
    assert offsets(committed, delivered, position, highwater).behind is behind


def test_a_partition_behind_with_no_commit_for_the_stall_time_stalls_once_and_recovers_when_it_moves() -> None:
    tracker = StallTracker(stall_seconds=60.0)
    stuck = offsets(10, 10, 11, 11)
    assert tracker.observe("t[0]", stuck, now=0.0) is None  # first look
    assert tracker.observe("t[0]", stuck, now=59.0) is None
    assert tracker.observe("t[0]", stuck, now=60.0) == "stalled"
    assert tracker.stalled == ["t[0]"]
    assert tracker.observe("t[0]", stuck, now=200.0) is None  # reported once per stall
    assert tracker.observe("t[0]", offsets(11, 10, 11, 11), now=205.0) == "recovered"
    assert tracker.stalled == []


def test_commits_moving_through_a_backlog_are_never_a_stall() -> None:
    tracker = StallTracker(stall_seconds=60.0)
    for second in range(0, 600, 5):
        busy = offsets(second, second + 3, second + 10, 10_000)  # always behind, but the commit moves
        assert tracker.observe("t[0]", busy, now=float(second)) is None
    assert tracker.stalled == []


def test_an_idle_partition_read_to_its_end_is_never_a_stall() -> None:
    tracker = StallTracker(stall_seconds=60.0)
    for second in range(0, 600, 5):
        assert tracker.observe("t[0]", offsets(10, 9, 10, 10), now=float(second)) is None


def test_reading_again_gives_the_partition_another_stall_time_and_a_moved_partition_recovers() -> None:
    tracker = StallTracker(stall_seconds=10.0)
    stuck = offsets(10, 10, 11, 11)
    tracker.observe("t[0]", stuck, now=0.0)
    assert tracker.observe("t[0]", stuck, now=10.0) == "stalled"
    tracker.read_again("t[0]", now=10.0)
    assert tracker.observe("t[0]", offsets(10, None, 10, 11), now=15.0) is None  # sought back: still behind
    assert tracker.observe("t[0]", offsets(11, 10, 11, 11), now=20.0) == "recovered"


def test_partitions_no_longer_assigned_are_forgotten() -> None:
    tracker = StallTracker(stall_seconds=1.0)
    stuck = offsets(1, 1, 2, 2)
    tracker.observe("a[0]", stuck, now=0.0)
    tracker.observe("a[0]", stuck, now=2.0)
    assert tracker.stalled == ["a[0]"]
    tracker.forget(["b[0]"])
    assert tracker.stalled == []


def test_the_faust_consumer_still_keeps_the_offsets_the_watch_reads() -> None:
    # StallWatch reads Consumer._committed_offset and Consumer._read_offset (no public accessor): pinned here so a
    # faust-streaming upgrade that renames them fails this test instead of blinding the watch.
    source = inspect.getsource(Consumer)
    assert "self._committed_offset = defaultdict(lambda: None)" in source
    assert "self._read_offset = defaultdict(lambda: None)" in source
    assert "set_read_offset(tp, offset)" in inspect.getsource(Consumer._drain_messages)


def test_a_failing_look_is_logged_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from streams.stalls import StallWatch

    class App:
        rebalancing = False

        @property
        def consumer(self) -> object:
            raise RuntimeError("consumer gone")

    watch = StallWatch(App(), stall_seconds=1.0)
    asyncio.run(watch.check())
    [record] = [r for r in caplog.records if r.getMessage() == "stall watch look failed"]
    assert "consumer gone" in record.error  # type: ignore[attr-defined]  # the structured field
