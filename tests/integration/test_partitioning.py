"""Our producer puts a key on the partition Java clients and Faust (murmur2) would choose."""

from __future__ import annotations

import pytest

from ibstream.config import Settings
from ibstream.contracts import quotes
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer
from tests.integration.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


def java_murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, transcribed (seed 0x9747b28c)."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    remaining = length % 4
    if remaining == 3:
        h ^= data[tail + 2] << 16
    if remaining >= 2:
        h ^= data[tail + 1] << 8
    if remaining >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (java_murmur2(key) & 0x7FFFFFFF) % partitions


def test_keys_land_where_java_would_put_them(settings: Settings, quote_sample: object) -> None:
    from ibstream.contracts import Quote

    assert isinstance(quote_sample, Quote)
    symbols = ["AAPL", "MSFT", "SPY", "QQQ", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "IWM", "BRK B", "X"]
    producer = RecordProducer(create_producer(settings), SingleObjectCodec(SchemaStore()), settings.kafka.topic_prefix)
    for symbol in symbols:
        producer.send(quotes.TOPIC, quote_sample.model_copy(update={"symbol": symbol}))
    assert producer.flush(30) == 0
    messages = consume_all(settings, producer.topic(quotes.TOPIC), len(symbols))
    landed = {(message.key() or b"").decode(): message.partition() for message in messages}
    expected = {symbol: java_partition(symbol.encode(), quotes.TOPIC.partitions) for symbol in symbols}
    assert landed == expected
    assert len(set(landed.values())) > 1  # the check means something only if keys spread
