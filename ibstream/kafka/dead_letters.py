"""The facts of a dead letter, taken from the consumed message and the exception: pure functions shared by every
component that dead-letters (``DeadLetterRouter`` sends what they build).

The facts are those Kafka Connect puts in its ``__connect.errors.*`` headers (original topic, partition, offset,
exception class, message and stack trace, the stage that failed as our ``error_kind``, the connector as our
``component``) plus the original record's timestamp and the consumer group that read it. They travel twice: inside
the ``DeadLetter`` record (Avro, what the warehouse stores and `ibstream dlq` reads) and as headers any Kafka tool
shows without Avro.

Header names: ``ibstream.errors.<Connect's suffix>`` (``ibstream.errors.topic``, ``….exception.class.name``, …), not
Connect's own ``__connect.errors.*``. The ``__`` prefix is Kafka's and Connect's namespace (``__consumer_offsets``,
``__connect.*``): a tool that knows Connect would take our records for a connector's and look for the connector and
task headers we cannot fill, and Connect has no header for the facts we add (timestamp, group, component). The
suffixes are Connect's, so whoever knows one DLQ reads the other. The earlier ``dlq.*`` headers stay as they were
(runbooks and operators' scripts read them).

A record that was redriven carries ``ibstream.redrive.*`` headers (``tooling/dlq.py`` sets them); if it fails again its
new dead letter keeps them among the original headers and repeats them on the DLQ record, so it is recognisable.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from ibstream.contracts import DeadLetter
from ibstream.contracts.serde import DecodeError

#: Connect's ``__connect.errors.`` under our own name (see the module docstring).
ERROR_HEADER_PREFIX = "ibstream.errors."
#: The headers a redriven record carries (``tooling/dlq.py``): which dead letter it was sent back from.
REDRIVE_HEADER_PREFIX = "ibstream.redrive."
REDRIVE_DLQ_TOPIC = REDRIVE_HEADER_PREFIX + "dlq.topic"
REDRIVE_DLQ_PARTITION = REDRIVE_HEADER_PREFIX + "dlq.partition"
REDRIVE_DLQ_OFFSET = REDRIVE_HEADER_PREFIX + "dlq.offset"
REDRIVE_TIME = REDRIVE_HEADER_PREFIX + "time"

#: Stack traces keep their last characters (Python prints the innermost frame last): a DLQ record must stay far
#: below the broker's message size limit, and it already carries the original bytes.
STACK_TRACE_CHARS = 8000
#: Header values of free text are cut to this many bytes.
HEADER_TEXT_BYTES = 4000


class ConsumedMessage(Protocol):
    """What a dead letter is built from: confluent-kafka's ``Message`` or streams' ``MessageView`` of a Faust one."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> str | bytes | None: ...

    def value(self) -> str | bytes | None: ...

    def headers(self) -> Any: ...

    def timestamp(self) -> tuple[int, int]: ...


def _bytes(value: str | bytes | None) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value or b"")


def exception_class(error: BaseException) -> str:
    """``module.QualName`` of the exception (``builtins.`` left out), as Connect records the Java class name."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def stack_trace(error: BaseException, limit: int = STACK_TRACE_CHARS) -> str:
    """The exception formatted with its traceback and causes; its last ``limit`` characters."""
    text = "".join(traceback.format_exception(error)).rstrip("\n")
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def original_timestamp(message: ConsumedMessage) -> datetime | None:
    """The message's Kafka timestamp (create or log-append time), or None when the broker gave none or it is
    beyond what a datetime holds."""
    try:
        kind, millis = message.timestamp()
    except (AttributeError, TypeError, ValueError):
        return None
    if kind == 0 or millis is None or millis < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None  # a topic that accepts any timestamp can hold one past year 9999: not a datetime


def header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    """A message's headers (a list of pairs, a dict or None) as (name, bytes) pairs."""
    pairs: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, dict) else headers or []
    return [(str(name), _bytes(value)) for name, value in pairs]


def default_kind(error: BaseException) -> str:
    return "decode" if isinstance(error, DecodeError) else "processing"


def dead_letter_of(
    message: ConsumedMessage,
    error: BaseException,
    *,
    component: str,
    group: str | None,
    failed_time: datetime,
    error_kind: str = "",
    fallback_topic: str = "",
) -> DeadLetter:
    """The dead letter of ``message``, which ``component`` (reading as ``group``) failed to handle with ``error``."""
    key, value = message.key(), message.value()
    return DeadLetter(
        original_topic=message.topic() or fallback_topic,
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=_bytes(key) if key is not None else None,
        value=_bytes(value) if value is not None else None,
        # A map: a name repeated in the original keeps its last value.
        headers=dict(header_pairs(message.headers())),
        error_kind=error_kind or default_kind(error),
        error_message=str(error),
        component=component,
        failed_time=failed_time,
        original_timestamp=original_timestamp(message),
        consumer_group=group,
        exception_class=exception_class(error),
        stack_trace=stack_trace(error),
    )


def _text(value: str) -> bytes:
    return value.encode(errors="replace")[:HEADER_TEXT_BYTES]


def error_headers(letter: DeadLetter) -> dict[str, bytes]:
    """The Kafka headers of ``letter``'s DLQ record: the ``ibstream.errors.*`` facts, the earlier ``dlq.*`` ones,
    and the ``ibstream.redrive.*`` headers of a record that failed again after a redrive."""
    facts = {
        "topic": letter.original_topic,
        "partition": str(letter.partition),
        "offset": str(letter.offset),
        "timestamp": letter.original_timestamp.isoformat() if letter.original_timestamp else None,
        "consumer.group": letter.consumer_group,
        "component": letter.component,
        "kind": letter.error_kind,
        "exception.class.name": letter.exception_class,
        "exception.message": letter.error_message,
    }
    headers = {ERROR_HEADER_PREFIX + name: _text(value) for name, value in facts.items() if value is not None}
    if letter.stack_trace is not None:
        # Whole (already capped), as Connect sends it: the message-size budget is spent in the record anyway.
        headers[ERROR_HEADER_PREFIX + "exception.stacktrace"] = letter.stack_trace.encode(errors="replace")
    headers |= {
        "dlq.original.topic": letter.original_topic.encode(),
        "dlq.original.partition": str(letter.partition).encode(),
        "dlq.original.offset": str(letter.offset).encode(),
        "dlq.error.kind": letter.error_kind.encode(),
        "dlq.error.message": _text(letter.error_message),
        "dlq.component": letter.component.encode(),
    }
    headers |= {name: value for name, value in letter.headers.items() if name.startswith(REDRIVE_HEADER_PREFIX)}
    return headers
