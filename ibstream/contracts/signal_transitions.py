"""Signal lifecycle transitions, keyed by symbol (same partition as the signal)."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import SignalStatus


class SignalTransition(Record):
    """One lifecycle change of a signal."""

    schema_name: ClassVar[str] = "signal_transition"

    transition_id: str
    signal_id: str
    symbol: str
    strategy: str
    from_status: SignalStatus | None = None
    to_status: SignalStatus
    reason: str
    run_id: str | None = None
    order_id: str | None = None
    time: UtcDatetime


TOPIC = TopicSpec(
    name="signals.transitions.v1",
    record=SignalTransition,
    key=lambda transition: transition.symbol,
    partitions=6,
    retention_ms=365 * DAY_MS,
    doc="Every signal lifecycle change, for audit from Kafka or ClickHouse alone.",
)
