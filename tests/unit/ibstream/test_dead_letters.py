"""The facts of a dead letter, from a consumed message and an exception: what the record and its headers say."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ibstream.contracts.serde import DecodeError
from ibstream.kafka.dead_letters import (
    REDRIVE_DLQ_OFFSET,
    STACK_TRACE_CHARS,
    dead_letter_of,
    error_headers,
    exception_class,
    original_timestamp,
    stack_trace,
)

FAILED = datetime(2026, 12, 4, 15, 0, 1, tzinfo=UTC)
WRITTEN_MS = 1_764_860_400_123  # 2025-12-04T15:00:00.123Z


@dataclass
class Consumed:
    """A consumed message as confluent-kafka presents it."""

    topic_: str = "t1.md.quotes.v1"
    partition_: int = 2
    offset_: int = 41
    key_: bytes | None = b"AAPL"
    value_: bytes | None = b"\x00not avro"
    headers_: Any = field(default_factory=lambda: [("trace", b"abc"), ("n", "text")])
    timestamp_: tuple[int, int] = (1, WRITTEN_MS)

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> Any:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return self.timestamp_


class QuoteRefusedError(Exception):
    """An exception of a module other than builtins."""


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def _fails_deep() -> None:
    def inner() -> None:
        raise ValueError("price must be positive")

    try:
        inner()
    except ValueError as cause:
        raise QuoteRefusedError("quote refused") from cause


def test_a_processing_failure_becomes_a_letter_with_every_connect_fact_and_ours() -> None:
    try:
        _fails_deep()
    except QuoteRefusedError as error:
        letter = dead_letter_of(
            Consumed(), error, component="warehouse_sink", group="ibstream.warehouse-sink", failed_time=FAILED
        )
    assert (letter.original_topic, letter.partition, letter.offset) == ("t1.md.quotes.v1", 2, 41)
    assert (letter.key, letter.value) == (b"AAPL", b"\x00not avro")
    assert letter.headers == {"trace": b"abc", "n": b"text"}
    assert letter.original_timestamp == datetime(2025, 12, 4, 15, 0, 0, 123000, tzinfo=UTC)
    assert letter.consumer_group == "ibstream.warehouse-sink"
    assert letter.component == "warehouse_sink"
    assert letter.error_kind == "processing"
    assert letter.exception_class == f"{__name__}.QuoteRefusedError"
    assert letter.error_message == "quote refused"
    assert letter.failed_time == FAILED
    trace = letter.stack_trace or ""
    # The traceback where it was raised, and its cause with its own frames.
    assert "in _fails_deep" in trace and "in inner" in trace
    assert "ValueError: price must be positive" in trace
    assert trace.rstrip().endswith("QuoteRefusedError: quote refused")


def test_a_decode_error_is_of_kind_decode_unless_the_caller_names_the_kind() -> None:
    error = _raised(DecodeError("t1.md.quotes.v1", 2, 41, "not Avro single-object encoded"))
    letter = dead_letter_of(Consumed(), error, component="c", group=None, failed_time=FAILED)
    assert letter.error_kind == "decode"
    assert letter.exception_class == "ibstream.contracts.serde.DecodeError"
    assert (
        dead_letter_of(Consumed(), error, component="c", group=None, failed_time=FAILED, error_kind="insert").error_kind
        == "insert"
    )


def test_an_exception_never_raised_has_no_frames_but_its_class_and_message() -> None:
    letter = dead_letter_of(Consumed(), KeyError("AAPL"), component="c", group=None, failed_time=FAILED)
    assert letter.exception_class == "KeyError"
    assert letter.stack_trace == "KeyError: 'AAPL'"


def test_a_tombstone_without_key_or_timestamp_keeps_nulls() -> None:
    message = Consumed(key_=None, value_=None, headers_=None, timestamp_=(0, -1))
    letter = dead_letter_of(message, ValueError("x"), component="c", group="g", failed_time=FAILED)
    assert (letter.key, letter.value, letter.headers, letter.original_timestamp) == (None, None, {}, None)


def test_a_timestamp_past_year_9999_is_no_original_timestamp_rather_than_a_failure() -> None:
    year_10000_ms = 253_402_300_800_000 + 86_400_000
    message = Consumed(timestamp_=(1, year_10000_ms))
    assert original_timestamp(message) is None
    letter = dead_letter_of(
        message, ValueError("year 10000 is out of range"), component="c", group=None, failed_time=FAILED
    )
    assert letter.original_timestamp is None and "ibstream.errors.timestamp" not in error_headers(letter)


def test_a_message_without_a_timestamp_accessor_has_no_original_timestamp() -> None:
    class Bare:
        pass

    assert original_timestamp(Bare()) is None  # type: ignore[arg-type]  # deliberately not a ConsumedMessage


def test_a_long_stack_trace_keeps_its_end() -> None:
    error = _raised(RuntimeError("x" * 20_000 + " the end"))
    trace = stack_trace(error)
    assert len(trace) == STACK_TRACE_CHARS
    assert trace.startswith("…") and trace.endswith("x the end")
    assert len(stack_trace(_raised(RuntimeError("short")))) < STACK_TRACE_CHARS


def test_exception_class_is_qualified_except_for_builtins() -> None:
    assert exception_class(ValueError()) == "ValueError"
    assert exception_class(DecodeError("t", 0, 0, "r")) == "ibstream.contracts.serde.DecodeError"


def test_headers_carry_the_facts_under_connect_suffixes_and_the_earlier_names() -> None:
    error = _raised(QuoteRefusedError("x" * 5000))
    letter = dead_letter_of(Consumed(), error, component="streams", group="ibstream", failed_time=FAILED)
    headers = error_headers(letter)
    assert headers["ibstream.errors.topic"] == b"t1.md.quotes.v1"
    assert headers["ibstream.errors.partition"] == b"2"
    assert headers["ibstream.errors.offset"] == b"41"
    assert headers["ibstream.errors.timestamp"] == b"2025-12-04T15:00:00.123000+00:00"
    assert headers["ibstream.errors.consumer.group"] == b"ibstream"
    assert headers["ibstream.errors.component"] == b"streams"
    assert headers["ibstream.errors.kind"] == b"processing"
    assert headers["ibstream.errors.exception.class.name"] == f"{__name__}.QuoteRefusedError".encode()
    assert headers["ibstream.errors.exception.message"] == b"x" * 4000  # cut; the record keeps it whole
    assert headers["ibstream.errors.exception.stacktrace"] == (letter.stack_trace or "").encode()
    assert (headers["dlq.original.offset"], headers["dlq.error.kind"]) == (b"41", b"processing")
    assert not any(name.startswith("ibstream.redrive.") for name in headers)


def test_a_letter_without_group_or_timestamp_leaves_those_headers_out() -> None:
    letter = dead_letter_of(
        Consumed(timestamp_=(0, -1)), ValueError("x"), component="c", group=None, failed_time=FAILED
    )
    headers = error_headers(letter)
    assert "ibstream.errors.consumer.group" not in headers and "ibstream.errors.timestamp" not in headers


def test_a_redriven_record_that_fails_again_says_so_on_its_new_dead_letter() -> None:
    redriven = Consumed(headers_=[("trace", b"abc"), (REDRIVE_DLQ_OFFSET, b"7")])
    letter = dead_letter_of(redriven, ValueError("again"), component="c", group="g", failed_time=FAILED)
    assert letter.headers[REDRIVE_DLQ_OFFSET] == b"7"
    assert error_headers(letter)[REDRIVE_DLQ_OFFSET] == b"7"
