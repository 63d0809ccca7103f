"""Interruptions of a bar stream and their recovery state, keyed by symbol."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import GapState


class Gap(Record):
    """An interruption of a symbol's bar stream; the latest record per gap_id is its state."""

    schema_name: ClassVar[str] = "gap"

    gap_id: str
    symbol: str
    start: UtcDatetime
    end: UtcDatetime
    state: GapState
    cause: str
    missing_bars: int
    recovered_bars: int
    reason: str | None = None
    detected_time: UtcDatetime
    updated_time: UtcDatetime


TOPIC = TopicSpec(
    name="md.gaps.v1",
    record=Gap,
    key=lambda gap: gap.symbol,
    partitions=3,
    retention_ms=FOREVER,
    doc="Every gap with its final state (backfilled or unrecoverable).",
)


def latest_states(records: Iterable[Gap]) -> dict[str, Gap]:
    """Each gap's current state: its latest record by ``updated_time`` (the topic's last word on it)."""
    latest: dict[str, Gap] = {}
    for gap in records:
        known = latest.get(gap.gap_id)
        if known is None or gap.updated_time >= known.updated_time:
            latest[gap.gap_id] = gap
    return latest


def unfinished(records: Iterable[Gap]) -> list[Gap]:
    """Gaps still open or backfilling: a producer has bars left to recover for them."""
    return [gap for gap in latest_states(records).values() if gap.state in (GapState.OPEN, GapState.BACKFILLING)]
