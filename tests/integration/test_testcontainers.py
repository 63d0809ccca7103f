"""The containers path of the Kafka fixture, for real: a broker in a container started through testcontainers on
whatever engine exists (our CI has no Docker: podman's API socket, and the image built from the Maven jars with
``IBSTREAM_TEST_KAFKA_IMAGE=local``). Records round-trip through it, and one pipeline slice runs on it: the
warehouse sink lands what was produced.

The rest of the suite keeps the local stack; only this module swaps ``kafka_bootstrap`` for the container.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from consumers.warehouse_sink import SinkThread
from ibstream.config import Settings
from ibstream.contracts import Quote, quotes
from ibstream.contracts.enums import MarketDataSource
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.warehouse import Warehouse
from tests.conftest import TEST_KAFKA_PORT, TEST_STATE
from tests.containers import TEST_LABEL, ContainerError, Engine, kafka_container, kafka_image
from tests.integration.kafka_helpers import consume_all
from tests.integration.warehouse_helpers import ALL_TIME, CODEC, count_final, wait_for, warehouse_settings
from tests.tools import require_tool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_bootstrap(container_engine: Engine) -> Iterator[str]:
    """This module's broker: a container (overrides the session's local stack here only)."""
    try:
        image = kafka_image(container_engine, TEST_STATE)
    except ContainerError as error:
        require_tool(f"{error} (IBSTREAM_TEST_KAFKA_IMAGE=local builds one from the Maven jars with podman)")
    with kafka_container(container_engine, image) as bootstrap:
        yield bootstrap


def _quotes(count: int) -> list[Quote]:
    start = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
    return [
        Quote(
            symbol=("AAPL", "MSFT", "QQQ")[i % 3],
            con_id=1000 + i,
            bid=100.0 + i,
            ask=100.02 + i,
            last=100.01 + i,
            bid_size=100.0,
            ask_size=200.0,
            last_size=10.0 + i,
            event_time=start + timedelta(seconds=i),
            ingest_time=start + timedelta(seconds=i),
            source=MarketDataSource.LIVE,
        )
        for i in range(count)
    ]


def _publishers(engine: Engine, port: int) -> list[str]:
    """Names of this session's test containers that publish ``port`` on the engine's host."""
    client = docker.DockerClient(base_url=engine.docker_host, timeout=30)
    try:
        found = []
        for container in client.containers.list(filters={"label": TEST_LABEL}):
            bindings = container.attrs["HostConfig"].get("PortBindings") or {}
            host_ports = {int(b["HostPort"]) for spec in bindings.values() for b in spec or [] if b.get("HostPort")}
            if port in host_ports:
                found.append(container.name)
        return found
    finally:
        client.close()


def test_records_round_trip_through_a_broker_in_a_container(
    settings: Settings, kafka_bootstrap: str, container_engine: Engine
) -> None:
    port = kafka_bootstrap.rsplit(":", 1)[1]
    assert int(port) != TEST_KAFKA_PORT, "this module must not be on the local stack's broker"
    assert _publishers(container_engine, int(port)), f"no test container publishes {kafka_bootstrap}"

    sent = _quotes(30)
    producer = RecordProducer(create_producer(settings), CODEC, settings.kafka.topic_prefix)
    for quote in sent:
        producer.send(quotes.TOPIC, quote)
    assert producer.flush(30) == 0 and producer.failed == 0

    topic = producer.topic(quotes.TOPIC)
    messages = consume_all(settings, topic, len(sent))
    received = [CODEC.decode(topic, Quote, m.value(), m.partition(), m.offset()) for m in messages]
    assert sorted(received, key=lambda q: q.con_id) == sent
    for symbol in {q.symbol for q in sent}:  # keyed by symbol: one partition each, in produce order
        assert [q for q in received if q.symbol == symbol] == [q for q in sent if q.symbol == symbol]


def test_the_warehouse_sink_lands_what_was_produced_to_a_broker_in_a_container(
    settings: Settings, tmp_path: Path
) -> None:
    wh_settings = warehouse_settings(settings, tmp_path / "wh")
    sent = _quotes(50)
    producer = RecordProducer(create_producer(wh_settings), CODEC, wh_settings.kafka.topic_prefix)
    for quote in sent:
        producer.send(quotes.TOPIC, quote)
    assert producer.flush(30) == 0 and producer.failed == 0

    with Warehouse.open(wh_settings) as warehouse:
        table = warehouse.schema.for_topic(quotes.TOPIC)
        sink = SinkThread(wh_settings, warehouse).start()
        try:
            wait_for(lambda: count_final(warehouse, table.name) == len(sent), 60, "every quote in the warehouse")
        finally:
            sink.stop()
        stored = list(warehouse.stream_records(table, producer.topic(quotes.TOPIC), *ALL_TIME))
    assert sorted((s.record for s in stored), key=lambda q: q.con_id) == sent
