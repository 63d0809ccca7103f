"""Avro records of every type through the real broker, and bad records into their DLQ."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ibstream.config import Settings
from ibstream.contracts import TOPICS, DeadLetter, Quote, Record, TopicSpec, quotes
from ibstream.contracts.serde import DecodeError, SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import DeadLetterRouter, RecordProducer, decode_message
from tests.integration.kafka_helpers import consume_all
from tests.strategies import records

pytestmark = pytest.mark.integration

CODEC = SingleObjectCodec(SchemaStore())


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.name)
def test_every_record_type_round_trips_through_the_broker(settings: Settings, spec: TopicSpec[Record]) -> None:
    producer = RecordProducer(create_producer(settings), CODEC, settings.kafka.topic_prefix)
    sent: list[Record] = []

    @hypothesis_settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(records(spec.record), min_size=5, max_size=25))
    def produce(batch: list[Record]) -> None:
        for record in batch:
            producer.send(spec, record)
        sent.extend(batch)

    produce()
    assert producer.flush(30) == 0
    assert producer.failed == 0 and producer.delivered == len(sent)

    messages = consume_all(settings, producer.topic(spec), len(sent))
    received = [decode_message(CODEC, spec, message) for message in messages]
    # Per-key order is what Kafka promises; compare per key and as multisets overall.
    for key in {spec.key_of(record) for record in sent}:
        assert [r for r in received if spec.key_of(r) == key] == [r for r in sent if spec.key_of(r) == key]
    assert all(
        message.key() == spec.key_of(record).encode() for message, record in zip(messages, received, strict=True)
    )


def test_undecodable_record_goes_to_the_dlq_with_its_bytes(settings: Settings, quote_sample: Quote) -> None:
    spec = quotes.TOPIC
    producer = RecordProducer(create_producer(settings), CODEC, settings.kafka.topic_prefix)
    topic = producer.topic(spec)
    producer.send(spec, quote_sample)
    producer.send_raw(topic, b"AAPL", b"\x00not avro at all", headers={"trace": b"abc"})
    producer.send(spec, quote_sample)
    assert producer.flush(30) == 0

    router = DeadLetterRouter(
        producer, CODEC, component="test", topic_prefix=settings.kafka.topic_prefix, group="test-readers"
    )
    good = 0
    for message in consume_all(settings, topic, 3):
        try:
            decode_message(CODEC, spec, message)
            good += 1
        except DecodeError as error:
            router.route(spec, message, error)
    assert producer.flush(30) == 0
    assert good == 2 and router.routed == 1

    [dead] = consume_all(settings, settings.kafka.topic_prefix + spec.dlq_name, 1)
    letter = CODEC.decode(dead.topic() or "", DeadLetter, dead.value(), dead.partition(), dead.offset())
    assert letter.original_topic == topic
    assert letter.offset == 1
    assert letter.value == b"\x00not avro at all"
    assert letter.key == b"AAPL"
    assert letter.headers == {"trace": b"abc"}
    assert letter.error_kind == "decode"
    assert "@1" in letter.error_message
    headers = dict(dead.headers() or [])
    assert headers["dlq.original.offset"] == b"1"
    assert headers["dlq.original.topic"] == topic.encode()
    # The Connect-style facts: the original's broker timestamp, who read it, and the exception in full.
    [original] = [message for message in consume_all(settings, topic, 3) if message.offset() == 1]
    assert letter.original_timestamp is not None
    assert int(letter.original_timestamp.timestamp() * 1000) == original.timestamp()[1]
    assert letter.consumer_group == "test-readers" and letter.component == "test"
    assert letter.exception_class == "ibstream.contracts.serde.DecodeError"
    assert letter.stack_trace is not None and "in decode_message" in letter.stack_trace
    assert letter.stack_trace.endswith(letter.error_message)
    assert headers["ibstream.errors.offset"] == b"1" and headers["ibstream.errors.topic"] == topic.encode()
    assert headers["ibstream.errors.consumer.group"] == b"test-readers"
    assert headers["ibstream.errors.exception.class.name"] == b"ibstream.contracts.serde.DecodeError"
    assert headers["ibstream.errors.exception.stacktrace"] == letter.stack_trace.encode()
    assert headers["ibstream.errors.timestamp"] == letter.original_timestamp.isoformat().encode()
