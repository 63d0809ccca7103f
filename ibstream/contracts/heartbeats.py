"""Liveness heartbeats of the deployables, keyed by component."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime


class Heartbeat(Record):
    """Liveness of one component and its IB connection."""

    schema_name: ClassVar[str] = "heartbeat"

    component: str
    instance_id: str
    connection_state: str
    symbols_active: int
    reconnect_count: int
    time: UtcDatetime
    market_time: UtcDatetime | None = None


TOPIC = TopicSpec(
    name="md.heartbeats.v1",
    record=Heartbeat,
    key=lambda heartbeat: heartbeat.component,
    partitions=1,
    retention_ms=3 * DAY_MS,
    doc="Heartbeats of the producer and other IB-connected deployables.",
)
