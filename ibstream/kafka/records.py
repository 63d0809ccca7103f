"""Typed produce and consume on top of confluent-kafka: records in, Avro bytes on the wire, failures visible."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from opentelemetry.metrics import Counter

from ibstream.config import Settings
from ibstream.contracts import DeadLetter, Record, TopicSpec, utc_now
from ibstream.contracts.serde import Codec, ConfluentCodec, SchemaStore, SingleObjectCodec
from ibstream.kafka.dead_letters import ConsumedMessage, dead_letter_of, error_headers
from ibstream.telemetry import meter, record_error, trace_headers

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


class RecordProducer:
    """Encodes records with the codec, keys them by their topic's key, and counts every delivery outcome.

    ``produce`` blocks (polling delivery reports) while librdkafka's queue is full, so a slow broker slows the
    caller down instead of growing memory without bound.
    """

    def __init__(self, producer: Producer, codec: Codec, topic_prefix: str = "") -> None:
        self._producer = producer
        self._codec = codec
        self._prefix = topic_prefix
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.last_error: KafkaError | None = None

    def topic(self, spec: TopicSpec[Any]) -> str:
        return self._prefix + spec.name

    def _report(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if error is None:
                self.delivered += 1
                return
            self.failed += 1
            self.last_error = error
        record_error("delivery")
        log.error(
            "delivery failed",
            extra={
                "topic": message.topic(),
                "error": str(error),
                "key": (message.key() or b"").decode(errors="replace"),
            },
        )

    def send(
        self,
        spec: TopicSpec[R],
        record: R,
        *,
        headers: dict[str, str | bytes | None] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one record; delivery is confirmed asynchronously (``flush`` or ``poll`` serve the reports)."""
        topic = self.topic(spec)
        value = self._codec.encode(topic, record)
        # The current span (if any) travels with the record, so the consumer's span joins the same trace.
        self.send_raw(
            topic, spec.key_of(record).encode(), value, headers=trace_headers(headers) or None, on_delivery=on_delivery
        )

    def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: dict[str, str | bytes | None] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue already-encoded bytes (DLQ routing, replay)."""

        report: DeliveryCallback = self._report
        if on_delivery is not None:

            def report(error: KafkaError | None, message: Message) -> None:
                self._report(error, message)
                on_delivery(error, message)

        produce = self._producer.produce
        while True:
            try:
                # Positional (topic, value, key): the quote path's hot call, keywords cost it a few percent.
                if headers is None:
                    produce(topic, value, key, on_delivery=report)
                else:
                    produce(topic, value, key, headers=headers, on_delivery=report)
                break
            except BufferError:
                # Queue full: serve delivery reports until there is room (backpressure, not an OOM).
                self._producer.poll(0.05)
        self._producer.poll(0)

    def poll(self, timeout: float = 0.0) -> int:
        return self._producer.poll(timeout)

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the cluster answers a metadata request now (readiness probes)."""
        try:
            return bool(self._producer.list_topics(timeout=timeout).brokers)
        except Exception:
            return False

    def in_flight(self) -> int:
        """Records queued or awaiting acknowledgement."""
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding deliveries; returns how many are still in flight."""
        return self._producer.flush(timeout)


@functools.cache
def _dlq_records() -> Counter:
    # Created on first use, so the counter binds to the meter provider the deployable configured at startup.
    return meter("ibstream.kafka").create_counter(
        "ibstream_dlq_records", description="Records routed to a dead-letter topic, by source topic and error kind"
    )


def decode_message(codec: Codec, spec: TopicSpec[R], message: Message) -> R:
    """Decode a consumed message into the topic's record type, or raise DecodeError naming where it came from."""
    return codec.decode(
        message.topic() or spec.name, spec.record, message.value(), message.partition(), message.offset()
    )


class DeadLetterRouter:
    """Routes records that failed to decode or process to their topic's DLQ, original bytes intact.

    Origin and error travel both inside the DeadLetter record and as Kafka headers, so a DLQ can be triaged
    with tools that do not speak Avro (``ibstream.kafka.dead_letters`` builds both from the message and the
    exception). ``group``: the consumer group the component reads with, recorded in every letter.
    """

    def __init__(
        self,
        producer: RecordProducer,
        codec: Codec,
        component: str,
        topic_prefix: str = "",
        group: str | None = None,
    ) -> None:
        self._producer = producer
        self._codec = codec
        self._component = component
        self._prefix = topic_prefix
        self._group = group
        self.routed = 0

    def route(
        self, spec: TopicSpec[Any], message: ConsumedMessage, error: BaseException, error_kind: str = ""
    ) -> DeadLetter:
        letter = dead_letter_of(
            message,
            error,
            component=self._component,
            group=self._group,
            failed_time=utc_now(),
            error_kind=error_kind,
            fallback_topic=spec.name,
        )
        dlq_topic = self._prefix + spec.dlq_name
        self._producer.send_raw(
            dlq_topic, letter.key, self._codec.encode(dlq_topic, letter), headers=dict(error_headers(letter))
        )
        self.routed += 1
        _dlq_records().add(1, {"topic": spec.name, "component": self._component, "kind": letter.error_kind})
        log.warning(
            "record routed to DLQ",
            extra={
                "topic": letter.original_topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "dlq": dlq_topic,
                "error_kind": letter.error_kind,
                "error": letter.error_message,
                "exception_class": letter.exception_class,
                "group": self._group,
                # The metric's component label: it can differ from the process's (the sink runs inside the API).
                "dead_lettered_by": self._component,
            },
        )
        return letter


def codec_from_settings(settings: Settings) -> Codec:
    """The wire codec the settings call for: Confluent framing with a registry, single-object encoding without."""
    store = SchemaStore()
    if settings.registry.url is None:
        return SingleObjectCodec(store)
    from ibstream.registry import SchemaRegistry

    return ConfluentCodec(store, SchemaRegistry.from_settings(settings))


#: The consumed-message type, for annotations in code that must not import confluent-kafka itself.
KafkaMessage = Message


_NOT_YET_LED = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def _watermarks(consumer: Consumer, position: TopicPartition, attempts: int = 10) -> tuple[int, int]:
    # On a cluster that just created its topics a partition may have no leader yet (NOT_LEADER_FOR_PARTITION):
    # retriable, so retry for a few seconds rather than failing a deployable's startup.
    for attempt in range(attempts):
        try:
            low, high = consumer.get_watermark_offsets(position, timeout=10, cached=False)
            return int(low), int(high)
        except KafkaException as error:
            kafka_error = error.args[0] if error.args else None
            retriable = kafka_error is not None and (kafka_error.retriable() or kafka_error.code() in _NOT_YET_LED)
            if not retriable or attempt == attempts - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def consume_to_end(
    consumer: Consumer,
    topics: dict[str, int],
    handle: Callable[[Message], None],
    timeout: float = 60.0,
    tail: int | None = None,
) -> int:
    """Assign every partition of ``topics`` (``{name: partitions}``) from the beginning (or only its last ``tail``
    messages) and hand each message to ``handle`` until every partition reported its end (the consumer needs
    ``enable.partition.eof=true``; with read_committed the end is the last stable offset). Returns how many
    messages were handled."""
    assignment = []
    for topic, count in topics.items():
        for partition in range(count):
            offset = OFFSET_BEGINNING
            if tail is not None:
                low, high = _watermarks(consumer, TopicPartition(topic, partition))
                offset = max(low, high - tail)
            assignment.append(TopicPartition(topic, partition, offset))
    consumer.assign(assignment)
    pending = {(t, p) for t, count in topics.items() for p in range(count)}
    handled = 0
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not read to their end within {timeout:.0f}s: {sorted(pending)}")
        message = consumer.poll(0.2)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard((message.topic(), message.partition()))
                continue
            raise RuntimeError(f"consumer error: {error}")
        handle(message)
        handled += 1
    return handled
