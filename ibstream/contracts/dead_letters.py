"""Dead letters: records that failed to decode or process, with their original bytes."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, UtcDatetime


class DeadLetter(Record):
    """A record that failed to decode or process, with its original bytes and origin."""

    schema_name: ClassVar[str] = "dead_letter"

    original_topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: dict[str, bytes]
    error_kind: str
    error_message: str
    component: str
    failed_time: UtcDatetime


# DLQ topics are declared per source topic by the catalogue (``TopicSpec.dlq_name``); they all carry this record.
DLQ_PARTITIONS = 1
DLQ_RETENTION_MS = 365 * DAY_MS
