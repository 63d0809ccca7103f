"""Client factories with the settings our guarantees need (see ARCHITECTURE.md, Guarantees)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from ibstream.config import Settings
from ibstream.exceptions import IbstreamError
from ibstream.kafka.security import client_security_config

log = logging.getLogger(__name__)

#: quotes: lowest latency; bulk: backfill, replay, sink-side DLQ writes, where batching pays.
ProducerProfile = Literal["quotes", "events", "bulk"]

_LINGER_MS: dict[ProducerProfile, int] = {"quotes": 1, "events": 5, "bulk": 50}


# --- librdkafka's own log lines ---

#: A broker unreachable for this long is real trouble; shorter outages (a broker starting or restarting, a rolling
#: upgrade) are what librdkafka's own reconnect handles, so they are logged at DEBUG only.
UNREACHABLE_GRACE_SECONDS = 30.0
#: While a broker stays unreachable, one WARNING per this many seconds says so again.
UNREACHABLE_REPEAT_SECONDS = 60.0
#: No failure for this long ends an outage: librdkafka retries at most every ``reconnect.backoff.max.ms`` (10 s).
OUTAGE_QUIET_SECONDS = 15.0
#: librdkafka's FAIL lines for a connection it will retry by itself.
_TRANSIENT = re.compile(
    r"Connect to .* failed|Connection refused|Disconnected|Connection reset|timed out|Broker handle destroyed"
)
_BROKER = re.compile(r"^(\S+?/\S+?):")


class LibrdkafkaLog:
    """Receives librdkafka's log lines (the clients' ``logger`` setting) into the ``librdkafka`` logger, so they
    are JSON lines with the rest of the process's logging instead of raw text on stderr.

    librdkafka logs every failed connection attempt at ERROR (several a second while a broker starts). Those it
    retries by itself are DEBUG until a broker has been unreachable for ``UNREACHABLE_GRACE_SECONDS``, then one
    WARNING a minute while the outage lasts; anything else keeps librdkafka's own level. confluent-kafka calls
    ``log(level, fmt, facility, client, text)`` from the thread that polls the client.
    """

    def __init__(self, logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger or logging.getLogger("librdkafka")
        self._clock = clock
        self._lock = threading.Lock()
        #: broker → (first failure, last failure, last warning) of its current outage
        self._outages: dict[str, tuple[float, float, float | None]] = {}

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if len(args) == 3:
            facility, client, text = (str(arg) for arg in args)
        else:
            facility, client, text = "", "", fmt % args if args else fmt
        level = self.level_for(level, facility, text)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", text, extra={"kafka_client": client, "facility": facility})

    def level_for(self, level: int, facility: str, text: str) -> int:
        """The level one librdkafka line is logged at (see the class docstring)."""
        if facility != "FAIL" or not _TRANSIENT.search(text):
            return level
        match = _BROKER.match(text)
        broker = match.group(1) if match else "?"
        now = self._clock()
        with self._lock:
            first, last, warned = self._outages.get(broker, (now, now, None))
            if now - last > OUTAGE_QUIET_SECONDS:
                first, warned = now, None  # a new outage
            due = now - first >= UNREACHABLE_GRACE_SECONDS and (
                warned is None or now - warned >= UNREACHABLE_REPEAT_SECONDS
            )
            self._outages[broker] = (first, now, now if due else warned)
        return logging.WARNING if due else logging.DEBUG


_LIBRDKAFKA_LOG = LibrdkafkaLog()


def librdkafka_log() -> LibrdkafkaLog:
    """The process's receiver of librdkafka log lines, for clients built outside these factories (tooling)."""
    return _LIBRDKAFKA_LOG


def base_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap, this process's principal (``ibstream.kafka.security``), the pass-through client settings every
    client shares, and librdkafka's log lines routed into our logging (delivered when the client is polled)."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "logger": _LIBRDKAFKA_LOG,
        **client_security_config(settings.kafka),
        **settings.kafka.client_config,
    }


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


def bootstrap_listening(bootstrap_servers: str, timeout: float = 0.5) -> bool:
    """Whether any of the bootstrap servers accepts a TCP connection: a cheap look before a Kafka client is made,
    so nothing starts a client (and its reconnect loop) against a port nobody listens on."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def broker_answers(settings: Settings, timeout: float = 3.0) -> bool:
    """Whether the configured brokers answer a metadata request (after a TCP look, so a closed port costs no
    client)."""
    if not bootstrap_listening(settings.kafka.bootstrap_servers):
        return False
    try:
        return bool(create_admin(settings).list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


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


def end_offsets(
    admin: AdminClient, partitions: Iterable[tuple[str, int]], timeout: float = 5.0
) -> dict[tuple[str, int], int]:
    """The end offsets (as a read_committed consumer sees them) of many partitions, in one request per leader.

    Meant for lag: a consumer's own ``get_watermark_offsets`` goes out on the connection its fetches use, and a broker
    answers one connection's requests in order, so each lookup waits behind a long-polling fetch (up to
    ``fetch.wait.max.ms``) when the topic is quiet: a sink measuring 150 partitions stalled for seconds. A partition
    whose lookup failed is left out of the result."""
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    wanted = {TopicPartition(topic, partition): latest for topic, partition in partitions}
    if not wanted:
        return {}
    futures = admin.list_offsets(wanted, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
    found: dict[tuple[str, int], int] = {}
    for partition, future in futures.items():
        try:
            found[(partition.topic, partition.partition)] = int(future.result().offset)
        except KafkaException as error:
            log.debug("end offset lookup failed", extra={"topic": partition.topic, "error": str(error)})
    return found


def tail_offset(consumer: Consumer, partition: TopicPartition, records: int, timeout: float = 10.0) -> int:
    """Where to start reading ``partition`` to get its last ``records`` records; its beginning when the broker does
    not answer in time. Meant for assignment callbacks: an exception raised there comes out of ``poll`` and would end
    the reader's thread, where reading from the beginning is only slower."""
    try:
        low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
    except KafkaException as error:
        log.warning(
            "watermarks unanswered: reading from the beginning",
            extra={"topic": partition.topic, "partition": partition.partition, "error": str(error)},
        )
        return OFFSET_BEGINNING
    return max(int(low), int(high) - records)


def offsets_at_times(consumer: Consumer, partitions: list[TopicPartition], timeout: float = 10.0) -> dict[Any, int]:
    """``{(topic, partition): offset}`` of the first record at or after each partition's ``offset`` (a time in ms;
    -1: none); every partition from its beginning when the broker does not answer in time (see ``tail_offset``)."""
    try:
        found = consumer.offsets_for_times(partitions, timeout=timeout)
    except KafkaException as error:
        log.warning("offsets for times unanswered: reading from the beginning", extra={"error": str(error)})
        return {(p.topic, p.partition): OFFSET_BEGINNING for p in partitions}
    return {(p.topic, p.partition): int(p.offset) for p in found}


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


def _commit_in_progress(error: KafkaException) -> bool:
    """A retriable commit error that does not ask for an abort: the commit goes on and must be called again."""
    kafka_error = error.args[0] if error.args else None
    return bool(
        isinstance(kafka_error, KafkaError)
        and kafka_error.retriable()
        and not kafka_error.txn_requires_abort()
        and not kafka_error.fatal()
    )


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

    def __init__(
        self,
        producer: Producer,
        timeout: float = 10.0,
        commit_deadline: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._timeout = timeout
        # How long a commit that keeps timing out (a retriable error) is resumed before giving up as broken: past
        # the transaction timeout (60 s) the broker aborts the transaction itself and the commit fails for good.
        self._commit_deadline = commit_deadline
        self._clock = clock
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
        deadline = self._clock() + self._commit_deadline
        while True:
            try:
                self._producer.commit_transaction(self._timeout)
            except KafkaException as error:
                if _commit_in_progress(error) and self._clock() < deadline:
                    # A commit that timed out is still in progress in librdkafka: it must be resumed by calling
                    # commit again. Aborting (or beginning the next transaction) instead is refused with _CONFLICT
                    # "commit_transaction API call is already in progress" forever: execution wedged so under load.
                    log.warning("commit_transaction timed out; resuming it", extra={"error": str(error)})
                    continue
                if _commit_in_progress(error):
                    raise TransactionError(
                        f"commit_transaction still in progress after {self._commit_deadline:.0f}s: {error}",
                        fatal=True,
                        fenced=False,
                    ) from None
                raise _transaction_error("commit_transaction", error) from None
            break
        self.open = False

    def abort(self) -> None:
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as error:
            raise _transaction_error("abort_transaction", error) from None
        finally:
            self.open = False
