"""Which partitions' consumer lag the sink measures next (pure: no I/O).

Lag is measured after a commit, at most every few seconds, for the partitions committed since the last measurement
— and for every partition still behind at the last one. Without the second set, a partition whose last batch was
committed between two measurements, and which then receives nothing, would never be measured again: its gauge
would keep a stale lag (and the consumer-lag alert fire) long after the sink caught up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: (topic, partition)
Partition = tuple[str, int]


class LagWatch:
    """The partitions due for a lag measurement, each with the next offset the sink has committed for it."""

    def __init__(self) -> None:
        self._due: dict[Partition, int] = {}

    def committed(self, next_offsets: Mapping[Partition, int]) -> None:
        """A batch was committed: its partitions are due, at their new offsets."""
        self._due.update(next_offsets)

    def take(self) -> dict[Partition, int]:
        """The partitions to measure now (they are no longer due until committed again or still behind)."""
        due, self._due = self._due, {}
        return due

    def measured(self, partition: Partition, next_offset: int, lag: int | None) -> None:
        """A measurement's outcome: still behind (or not measured, ``None``) keeps the partition due; a newer
        commit since then has already replaced its offset."""
        if lag is None or lag > 0:
            self._due.setdefault(partition, next_offset)

    def revoked(self, partitions: Iterable[Partition]) -> None:
        """Partitions another sink now owns: ours to measure no more (our offset for them goes stale)."""
        for partition in partitions:
            self._due.pop(partition, None)
