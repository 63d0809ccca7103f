"""Client factories with the settings our guarantees need (see ARCHITECTURE.md, Guarantees)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ibstream.config import Settings
from ibstream.exceptions import IbstreamError

#: quotes: lowest latency; bulk: backfill, replay, sink-side DLQ writes, where batching pays.
ProducerProfile = Literal["quotes", "events", "bulk"]

_LINGER_MS: dict[ProducerProfile, int] = {"quotes": 1, "events": 5, "bulk": 50}


def base_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap plus the pass-through client settings (SASL_SSL, mTLS, …) every client shares."""
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, **settings.kafka_client_config}


def producer_config(settings: Settings, profile: ProducerProfile = "events", **overrides: Any) -> dict[str, Any]:
    """Producer settings for no loss and Java-compatible partitioning.

    librdkafka defaults idempotence to off and partitions with CRC32, while Java clients and Faust (aiokafka) use
    murmur2: without ``murmur2_random`` the same key would land on different partitions than Faust expects.
    """
    config: dict[str, Any] = {
        **base_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": _LINGER_MS[profile],
        # Retry for as long as a broker restart can take; a delivery report still says if it gave up.
        "delivery.timeout.ms": 120_000,
        "compression.type": "lz4" if profile == "bulk" else "none",
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """At-least-once consumer: offsets are stored only after a record was handled (``store_offsets``)."""
    config: dict[str, Any] = {
        **base_config(settings),
        "group.id": group_id,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
    }
    config.update(overrides)
    return config


def create_producer(settings: Settings, profile: ProducerProfile = "events", **overrides: Any) -> Producer:
    return Producer(producer_config(settings, profile, **overrides))


def create_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


def create_admin(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient({**base_config(settings), **overrides})


def is_fatal(error: KafkaError | None) -> bool:
    """Whether a client error leaves the client unusable for good, so the only way on is a new client.

    A static group member (``group.instance.id``) whose session times out while the broker is down rejoins under a
    new member id and is then fenced by the broker as if another instance had taken its id (librdkafka#3437): the
    consumer reports a fatal FENCED_INSTANCE_ID and never consumes again. Polling it on would stall silently.
    """
    # The poll-time error event carries code _FATAL without its fatal flag set.
    return error is not None and (error.fatal() or error.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID))


# --- offsets and positions (warehouse sink, replay) ---


class OffsetError(IbstreamError):
    """Committing or looking up offsets failed."""


def commit_offsets(
    consumer: Consumer, next_offsets: Mapping[tuple[str, int], int], *, asynchronous: bool = False
) -> None:
    """Commit ``{(topic, partition): next offset to read}``; raises OffsetError on failure (synchronous commits;
    an asynchronous one only queues the commit, and a later commit of the same positions covers a failed one)."""
    if not next_offsets:
        return
    positions = [TopicPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()]
    try:
        if asynchronous:
            consumer.commit(offsets=positions, asynchronous=True)
        else:
            consumer.commit(offsets=positions, asynchronous=False)
    except KafkaException as error:
        raise OffsetError(f"offset commit failed: {error}") from None


def committed_offsets(
    consumer: Consumer, topics: Mapping[str, int], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """The group's committed next offsets for ``{topic: partitions}`` (partitions without a commit are left out)."""
    wanted = [TopicPartition(topic, p) for topic, count in topics.items() for p in range(count)]
    result = consumer.committed(wanted, timeout=timeout)
    return {(tp.topic, tp.partition): tp.offset for tp in result if tp.offset >= 0}


def high_watermark(consumer: Consumer, topic: str, partition: int, timeout: float = 5.0) -> int:
    """The partition's end offset (next offset to be written), asked of the broker."""
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    return int(high)


def partition_count(consumer: Consumer, topic: str, timeout: float = 10.0) -> int:
    """How many partitions a topic has; OffsetError if it does not exist."""
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise OffsetError(f"topic {topic} does not exist")
    return len(metadata.partitions)


def offsets_for_time(
    consumer: Consumer, topic: str, partitions: int, timestamp_ms: int, timeout: float = 10.0
) -> dict[int, int]:
    """Per partition, the earliest offset whose timestamp is ≥ ``timestamp_ms``; the end offset where none is."""
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, timestamp_ms) for p in range(partitions)], timeout=timeout
    )
    result: dict[int, int] = {}
    for tp in found:
        # -1 (OFFSET_END) means no message at or after the timestamp: start at (and stop at) the end.
        result[tp.partition] = tp.offset if tp.offset >= 0 else high_watermark(consumer, topic, tp.partition, timeout)
    return result


def assign_at(consumer: Consumer, topic: str, offsets: Mapping[int, int]) -> None:
    """Assign partitions at explicit offsets (no group subscription, so nothing is rebalanced or committed)."""
    consumer.assign([TopicPartition(topic, partition, offset) for partition, offset in offsets.items()])


# --- transactions (execution: a step's records and the input offset commit together) ---


class TransactionError(IbstreamError):
    """A transactional call failed. ``fatal``: this producer is fenced (another instance took over its
    transactional.id) or broken, and must not be used again; otherwise abort the transaction and retry."""

    def __init__(self, message: str, *, fatal: bool, fenced: bool) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.fenced = fenced


def _transaction_error(action: str, error: KafkaException) -> TransactionError:
    kafka_error = error.args[0] if error.args else None
    fatal = bool(kafka_error is not None and hasattr(kafka_error, "fatal") and kafka_error.fatal())
    code = kafka_error.code() if kafka_error is not None and hasattr(kafka_error, "code") else None
    fenced = code in {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
    return TransactionError(f"{action} failed: {error}", fatal=fatal or fenced, fenced=fenced)


def create_transactional_producer(settings: Settings, transactional_id: str, **overrides: Any) -> Producer:
    """An idempotent producer with a transactional.id; ``init_transactions`` fences older instances of the id."""
    return Producer(
        producer_config(
            settings,
            "events",
            **{
                "transactional.id": transactional_id,
                "transaction.timeout.ms": 60_000,
                # librdkafka requires a delivery timeout within the transaction timeout.
                "delivery.timeout.ms": 60_000,
                "linger.ms": 0,
                **overrides,
            },
        )
    )


class Transactions:
    """Begin/commit on a transactional producer.

    Every librdkafka error is raised as TransactionError, so callers need not import confluent-kafka.
    """

    def __init__(self, producer: Producer, timeout: float = 10.0) -> None:
        self._producer = producer
        self._timeout = timeout
        self.open = False

    def init(self) -> None:
        """Register the transactional.id: aborts a transaction a crashed predecessor left open and fences it."""
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as error:
            raise _transaction_error("init_transactions", error) from None

    def begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as error:
            raise _transaction_error("begin_transaction", error) from None
        self.open = True

    def commit(self) -> None:
        """Commit the open transaction.

        Consumer offsets are deliberately not part of it: librdkafka's ``send_offsets_to_transaction`` can block
        forever, past its timeout, when the group coordinator restarts (librdkafka#5456; seen here after a broker
        restart), and a call that never returns cannot be recovered from. Callers commit offsets after this returns
        and make re-delivery harmless instead.
        """
        try:
            self._producer.commit_transaction(self._timeout)
        except KafkaException as error:
            raise _transaction_error("commit_transaction", error) from None
        self.open = False

    def abort(self) -> None:
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as error:
            raise _transaction_error("abort_transaction", error) from None
        finally:
            self.open = False
