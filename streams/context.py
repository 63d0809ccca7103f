"""What every agent shares, whatever its area: the codec, where records go (``Emitter``), where records that cannot
be decoded or processed go (``DeadLetters``), and the ``AgentContext`` that bundles them with the topic prefix and
the worker's alerts.

Every agent reads raw bytes and decodes with our Avro codec itself, so an undecodable record goes to the topic's
DLQ (through ``DeadLetterRouter``) and the agent moves on instead of crashing. Processing is at-least-once: each
agent makes its effects idempotent with deterministic ids and a Faust table of what it already did.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, TypeVar

from ibstream.config import Settings
from ibstream.contracts import Alert, Record, TopicSpec, alerts
from ibstream.contracts.serde import Codec, ConfluentCodec, DecodeError, SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import DeadLetterRouter, RecordProducer
from ibstream.telemetry import consumed_attributes, kafka_trace_headers, record_error
from streams.observability import StreamsAlerts

R = TypeVar("R", bound=Record)


class Emitter(Protocol):
    """Where agents write records (Faust topics in the app, a list in tests)."""

    async def emit(self, spec: TopicSpec[R], record: R, *, wait: bool = False) -> None:
        """Send ``record`` keyed by its topic's key; ``wait`` blocks until the broker acknowledged it."""

    async def emit_pending(self, spec: TopicSpec[R], record: R) -> Awaitable[Any]:
        """Send ``record``; the returned awaitable completes when the broker acknowledged it (raises if it failed)."""


class DeadLetters(Protocol):
    """Where records that cannot be decoded or processed go."""

    def route(self, spec: TopicSpec[Any], message: Any, error: BaseException, error_kind: str = "") -> Any: ...

    def flush(self) -> None: ...


class MessageView:
    """A Faust message seen through the accessor methods ``DeadLetterRouter`` reads from a Kafka message."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def key(self) -> bytes | None:
        key: bytes | None = self._message.key
        return key

    def value(self) -> bytes | None:
        value: bytes | None = self._message.value
        return value

    def headers(self) -> list[tuple[str, bytes]]:
        headers = self._message.headers or []
        pairs = headers.items() if isinstance(headers, dict) else headers
        return [(str(name), bytes(value or b"")) for name, value in pairs]

    def timestamp(self) -> tuple[int, int]:
        """(type, epoch milliseconds) as confluent-kafka gives it (1 create time, 2 log-append time, 0 none) from
        Faust's seconds and aiokafka's type (0 create time, 1 log-append time)."""
        seconds = getattr(self._message, "timestamp", None)
        if seconds is None:
            return 0, -1
        log_append = getattr(self._message, "timestamp_type", 0) == 1
        return (2 if log_append else 1), int(float(seconds) * 1000)


class FaustEmitter:
    """Encodes with our codec and sends raw bytes through the Faust topics declared for each contract."""

    def __init__(self, codec: Codec, topics: dict[str, Any], prefix: str) -> None:
        self._codec = codec
        self._topics = topics
        self._prefix = prefix

    async def emit(self, spec: TopicSpec[R], record: R, *, wait: bool = False) -> None:
        pending = await self.emit_pending(spec, record)
        if wait:
            await pending

    async def emit_pending(self, spec: TopicSpec[R], record: R) -> Awaitable[Any]:
        name = self._prefix + spec.name
        topic = self._topics[spec.name]
        # The current span's trace context rides along, so the next consumer's span joins this trace.
        pending: Awaitable[Any] = await topic.send(
            key=spec.key_of(record).encode(),
            value=self._codec.encode(name, record),
            headers=kafka_trace_headers() or None,
        )
        return pending


#: How many undecodable records a worker remembers to dead-letter each once (the agents reading one topic see a
#: record within moments of each other; a record remembered longer costs 100 bytes).
UNDECODABLE_MEMORY = 10_000


class AgentContext:
    """What every agent shares: the codec, the output emitter, the dead-letter router, the topic prefix and the
    worker's alerts."""

    def __init__(
        self,
        codec: Codec,
        emitter: Emitter,
        dead_letters: DeadLetters,
        prefix: str,
        alerts: StreamsAlerts | None = None,
    ) -> None:
        self.codec = codec
        self.emitter = emitter
        self.dead_letters = dead_letters
        self.prefix = prefix
        self.alerts = alerts if alerts is not None else StreamsAlerts()
        # (topic, partition, offset) of the records this worker dead-lettered as undecodable, newest last: several
        # agents read one topic (md.bars.5s.v1: bars, signals, outcomes), and unreadable bytes are the record's fault,
        # not an agent's — one dead letter for it, not one per agent.
        self._undecodable: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    async def emit_alerts(self, records: list[Alert]) -> None:
        """Write fired/resolved alerts to ``ops.alerts.v1`` (acknowledged: an alert is rare and must not vanish)."""
        for record in records:
            await self.emitter.emit(alerts.TOPIC, record, wait=True)

    def decode(self, spec: TopicSpec[R], event: Any) -> R | None:
        """The event's record, or None after routing it to the DLQ."""
        message = event.message
        try:
            return self.codec.decode(
                str(message.topic), spec.record, message.value, int(message.partition), int(message.offset)
            )
        except DecodeError as error:
            self.dead_letter(spec, event, error, "decode")
            return None

    def dead_letter(self, spec: TopicSpec[Any], event: Any, error: BaseException, kind: str) -> None:
        if kind == "decode" and self._seen_undecodable(event.message):
            return
        self.dead_letters.route(spec, MessageView(event.message), error, kind)
        record_error(kind, "streams")
        # Rare path: wait for the DLQ write so the offset Faust commits next never skips an undelivered letter.
        self.dead_letters.flush()

    def _seen_undecodable(self, message: Any) -> bool:
        """Whether another agent of this worker already dead-lettered this record as undecodable (remembers it)."""
        position = (str(message.topic), int(message.partition), int(message.offset))
        if position in self._undecodable:
            return True
        self._undecodable[position] = None
        if len(self._undecodable) > UNDECODABLE_MEMORY:
            self._undecodable.popitem(last=False)
        return False


async def events(stream: Any) -> AsyncIterator[Any]:
    """A Faust stream's events (the message with its topic, partition, offset and headers), one at a time."""
    async for event in stream.events():
        yield event


def messaging_of(event: Any) -> dict[str, str | int]:
    """The messaging semantic-convention attributes of a Faust event's record, with its consumer group (Faust's group
    id is the app id)."""
    group = getattr(getattr(getattr(event, "app", None), "conf", None), "id", None)
    return consumed_attributes(event.message, group if isinstance(group, str) else None)


def codec_for(settings: Settings) -> Codec:
    """Single-object encoding without a registry, Confluent framing with one."""
    store = SchemaStore()
    if settings.registry.url is None:
        return SingleObjectCodec(store)
    from ibstream.registry import SchemaRegistry

    return ConfluentCodec(store, SchemaRegistry.from_settings(settings))


class RouterDeadLetters:
    """Our ``DeadLetterRouter`` with a flush, for the agents."""

    def __init__(self, settings: Settings, codec: Codec, component: str) -> None:
        self._producer = RecordProducer(create_producer(settings), codec, settings.kafka.topic_prefix)
        # Faust's consumer group is the app's id (streams.app: the topic prefix and the app id).
        prefix = settings.kafka.topic_prefix
        self._router = DeadLetterRouter(
            self._producer, codec, component, prefix, group=prefix + settings.streams.app_id
        )

    def route(self, spec: TopicSpec[Any], message: Any, error: BaseException, error_kind: str = "") -> Any:
        # The router reads only the accessor methods (topic(), value(), …) that MessageView provides.
        return self._router.route(spec, message, error, error_kind)

    def flush(self) -> None:
        self._producer.flush(10.0)

    @property
    def routed(self) -> int:
        return self._router.routed
