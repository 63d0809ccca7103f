"""Operational alerts, keyed by alert_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import AlertState, Severity


class Alert(Record):
    """An operational alert; firing and resolved are separate records with the same alert_id."""

    schema_name: ClassVar[str] = "alert"

    alert_id: str
    kind: str
    severity: Severity
    state: AlertState
    component: str
    symbol: str | None = None
    order_id: str | None = None
    message: str
    details: dict[str, str]
    time: UtcDatetime


TOPIC = TopicSpec(
    name="ops.alerts.v1",
    record=Alert,
    key=lambda alert: alert.alert_id,
    partitions=1,
    retention_ms=90 * DAY_MS,
    doc="Stale feeds, disconnects, reconciliation mismatches, risk breaches, kill switch.",
)
