"""Publishing an approved plan's order intent on Kafka, waiting for the acknowledgement."""

from __future__ import annotations

from collections.abc import Callable

from ibstream.config import Settings
from ibstream.contracts import OrderIntent, order_intents
from ibstream.exceptions import IbstreamError

#: Publishes an intent and returns once the broker acknowledged it; raises on failure.
Publisher = Callable[[OrderIntent], None]


class DependencyDownError(IbstreamError):
    """Kafka (or another dependency) did not take the intent."""


def kafka_publisher(settings: Settings, timeout: float = 10.0) -> Publisher:
    """Publish intents with the core's producer, waiting for the acknowledgement."""
    from ibstream.contracts.serde import Codec, ConfluentCodec, SchemaStore, SingleObjectCodec
    from ibstream.kafka.clients import create_producer
    from ibstream.kafka.records import RecordProducer

    codec: Codec
    if settings.registry.url is None:
        codec = SingleObjectCodec(SchemaStore())
    else:
        from ibstream.registry import SchemaRegistry

        codec = ConfluentCodec(SchemaStore(), SchemaRegistry.from_settings(settings))
    producer = RecordProducer(create_producer(settings), codec, settings.kafka.topic_prefix)

    def publish(intent: OrderIntent) -> None:
        failed_before = producer.failed
        producer.send(order_intents.TOPIC, intent)
        if producer.flush(timeout) > 0 or producer.failed > failed_before:
            raise DependencyDownError(f"Kafka did not acknowledge the intent: {producer.last_error or 'timeout'}")

    return publish
