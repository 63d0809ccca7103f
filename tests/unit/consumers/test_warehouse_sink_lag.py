"""Which partitions the sink measures consumer lag for: a partition that caught up between two measurements and then
went quiet is measured once more (its gauge must not keep the stale lag), one at 0 is left alone."""

from __future__ import annotations

from consumers.warehouse_sink.lag import LagWatch

GAPS = ("md.gaps.v1", 1)
QUOTES = ("md.quotes.v1", 0)


def test_committed_partitions_are_due_at_their_latest_offset() -> None:
    watch = LagWatch()
    watch.committed({GAPS: 10_000, QUOTES: 5})
    watch.committed({GAPS: 20_000})
    assert watch.take() == {GAPS: 20_000, QUOTES: 5}
    assert watch.take() == {}


def test_a_partition_still_behind_is_measured_again_after_it_goes_quiet() -> None:
    watch = LagWatch()
    watch.committed({GAPS: 10_000})
    due = watch.take()
    watch.measured(GAPS, due[GAPS], lag=30_000)
    # The burst's last batches are committed between two measurements; then nothing more arrives on the partition.
    watch.committed({GAPS: 40_000})
    assert watch.take() == {GAPS: 40_000}
    watch.measured(GAPS, 40_000, lag=0)
    assert watch.take() == {}


def test_a_caught_up_partition_is_not_measured_until_committed_again() -> None:
    watch = LagWatch()
    watch.committed({QUOTES: 5})
    watch.measured(QUOTES, watch.take()[QUOTES], lag=0)
    assert watch.take() == {}


def test_a_failed_measurement_is_retried_and_a_newer_commit_wins() -> None:
    watch = LagWatch()
    watch.committed({GAPS: 100})
    watch.take()
    watch.committed({GAPS: 250})  # committed while the measurement of offset 100 was under way
    watch.measured(GAPS, 100, lag=None)
    assert watch.take() == {GAPS: 250}
    watch.measured(GAPS, 250, lag=None)
    assert watch.take() == {GAPS: 250}


def test_revoked_partitions_are_no_longer_measured() -> None:
    watch = LagWatch()
    watch.committed({GAPS: 10, QUOTES: 5})
    watch.revoked([GAPS])
    assert watch.take() == {QUOTES: 5}
