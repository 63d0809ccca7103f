"""Confluent framing through a real schema registry (Apicurio's ccompat API) and the real broker."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from ibstream.config import Settings
from ibstream.contracts import Quote, quotes
from ibstream.contracts.serde import ConfluentCodec, SchemaStore
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer, decode_message
from ibstream.registry import COMPATIBILITY, RegistryError, SchemaRegistry
from tests.integration.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def test_confluent_framing_round_trip_and_interop(settings: Settings, registry_url: str, quote_sample: Quote) -> None:
    store = SchemaStore()
    registry = SchemaRegistry(SchemaRegistryClient({"url": registry_url}))
    codec = ConfluentCodec(store, registry)
    producer = RecordProducer(create_producer(settings), codec, settings.kafka.topic_prefix)
    topic = producer.topic(quotes.TOPIC)
    producer.send(quotes.TOPIC, quote_sample)
    assert producer.flush(30) == 0

    [message] = consume_all(settings, topic, 1)
    value = message.value() or b""
    assert value[0] == 0  # Confluent magic byte
    assert decode_message(codec, quotes.TOPIC, message) == quote_sample

    # confluent-kafka's own AvroDeserializer (what other tools use) reads our bytes.
    client = SchemaRegistryClient({"url": registry_url})
    deserializer = AvroDeserializer(client)
    data = deserializer(value, SerializationContext(topic, MessageField.VALUE))
    assert data["symbol"] == "AAPL" and data["bid"] == 189.1
    assert client.get_compatibility(f"{topic}-value") == COMPATIBILITY


def test_registry_refuses_an_incompatible_schema(registry_url: str) -> None:
    registry = SchemaRegistry(SchemaRegistryClient({"url": registry_url}))
    subject = f"evolution-{uuid.uuid4().hex[:8]}-value"
    current = json.loads(SchemaStore().current("quote").text)
    registry.register(subject, json.dumps(current))

    compatible = json.loads(json.dumps(current))
    compatible["fields"].append({"name": "exchange", "type": "string", "default": "SMART"})
    assert registry.is_compatible(subject, json.dumps(compatible))
    registry.register(subject, json.dumps(compatible))

    incompatible = json.loads(json.dumps(current))
    incompatible["fields"].append({"name": "venue", "type": "string"})
    assert not registry.is_compatible(subject, json.dumps(incompatible))
    with pytest.raises(RegistryError, match=subject):
        registry.register(subject, json.dumps(incompatible))
    assert Schema  # the client's Schema type is what SchemaRegistry sends
