"""Dead letters: records that failed to decode or process, with their original bytes, origin and error; and the
redrive ledger's entries, one per dead letter sent back to its original topic."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, FOREVER, Record, TopicSpec, UtcDatetime


class DeadLetter(Record):
    """A record that failed to decode or process, with its original bytes, origin and the error (the facts Kafka
    Connect's ``__connect.errors.*`` headers carry, and the original timestamp and consumer group besides)."""

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
    # Added after v1 (avro/history/dead_letter/v1.avsc): null in letters written before.
    original_timestamp: UtcDatetime | None = None
    consumer_group: str | None = None
    exception_class: str | None = None
    stack_trace: str | None = None


class DlqRedrive(Record):
    """The redrive ledger's entry for one dead letter sent back to its original topic."""

    schema_name: ClassVar[str] = "dlq_redrive"

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    original_topic: str
    original_partition: int
    original_offset: int
    redriven_by: str
    redriven_time: UtcDatetime

    @property
    def ledger_key(self) -> str:
        return redrive_key(self.dlq_topic, self.dlq_partition, self.dlq_offset)


def redrive_key(dlq_topic: str, partition: int, offset: int) -> str:
    """The ledger key of the dead letter at ``dlq_topic``/``partition``/``offset`` (the full topic name)."""
    return f"{dlq_topic}/{partition}/{offset}"


# DLQ topics are declared per source topic by the catalogue (``TopicSpec.dlq_name``); they all carry this record.
DLQ_PARTITIONS = 1
DLQ_RETENTION_MS = 365 * DAY_MS

#: The redrive ledger: compacted, one entry per redriven dead letter (the latest per key), written in the same Kafka
#: transaction as the record sent back. Not in the catalogue (``TOPICS``): no deployable reads or writes it, so it
#: has no DLQ, table or ACLs of its own; `ibstream dlq redrive` creates it on first use.
REDRIVE_LEDGER = TopicSpec(
    name="ops.dlq.redrives.v1",
    record=DlqRedrive,
    key=lambda entry: entry.ledger_key,
    partitions=1,
    retention_ms=FOREVER,
    cleanup_policy="compact",
    doc="Which dead letters `ibstream dlq redrive` sent back to their original topic, and when and by whom.",
)
