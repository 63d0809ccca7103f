"""The containers path of the Kafka fixture, for real: a broker in a container started through testcontainers on
whatever engine exists (our CI has no Docker: podman's API socket, and the image built from the Maven jars with
``IBSTREAM_TEST_KAFKA_IMAGE=local``). Records round-trip through it, and one pipeline slice runs on it: the
warehouse sink lands what was produced.

The schema registry runs in a container too (``IBSTREAM_TEST_REGISTRY_IMAGE``; ``local`` in our CI): Confluent
framing through it and the container broker, and it refuses an incompatible schema.

The rest of the suite keeps the local stack; only this module swaps ``kafka_bootstrap`` for the container.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.warehouse_sink import SinkThread
from ibstream.config import Settings, load_settings
from ibstream.contracts import Quote, quotes
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import ConfluentCodec, SchemaStore
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer, decode_message
from ibstream.registry import RegistryError, SchemaRegistry
from ibstream.warehouse import Warehouse
from tests.conftest import TEST_KAFKA_PORT, TEST_STATE
from tests.containers import (
    KAFKA_IMAGE_DIR,
    TEST_LABEL,
    Engine,
    kafka_container,
    kafka_environment,
    kafka_test_image,
    registry_container,
    registry_test_image,
)
from tests.integration.kafka_helpers import consume_all
from tests.integration.warehouse_helpers import ALL_TIME, CODEC, count_final, wait_for, warehouse_settings
from tooling.stack import KafkaStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_bootstrap(container_engine: Engine) -> Iterator[str]:
    """This module's broker: a container (overrides the session's local stack here only)."""
    with kafka_container(container_engine, kafka_test_image(container_engine, TEST_STATE)) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def registry_in_container(container_engine: Engine) -> Iterator[str]:
    with registry_container(container_engine, registry_test_image(container_engine, TEST_STATE)) as url:
        yield url


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_local_images_entrypoint_reads_the_apache_kafka_variables_into_the_local_stacks_settings(
    tmp_path: Path,
) -> None:
    """run-kafka turns KAFKA_* into properties by apache/kafka's rule, so one environment drives either image, and
    the container broker gets the single-node settings the local stack's broker has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"  # records what the entrypoint would run instead of running a broker
    java.write_text('#!/bin/sh\necho "$@" >> "$JAVA_CALLS"\n')
    java.chmod(0o755)
    environment = kafka_environment("127.0.0.1", 39092, "abc")
    env = {
        **environment,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "IBSTREAM_KAFKA_HOME": str(tmp_path / "home"),
        "JAVA_CALLS": str(tmp_path / "calls"),
    }
    subprocess.run(["bash", str(KAFKA_IMAGE_DIR / "run-kafka")], env=env, check=True, timeout=30)

    written = _properties((tmp_path / "home" / "server.properties").read_text())
    assert written["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092"
    assert written["log.dirs"] == str(tmp_path / "home" / "data")
    assert "heap.opts" not in written  # JVM options are not properties
    properties = [name for name in environment if name.startswith("KAFKA_") and not name.endswith("_OPTS")]
    assert len(written) == len(properties) + 1  # and log.dirs
    format_call, broker_call = (tmp_path / "calls").read_text().splitlines()
    assert "StorageTool format" in format_call and "--cluster-id=abc" in format_call
    assert broker_call.startswith("-Xms256m -Xmx512m") and broker_call.endswith("server.properties")

    stack = KafkaStack(load_settings(state_dir=tmp_path / "stack"), state_dir=tmp_path / "stack")
    stack._write_config()
    local = _properties(stack.config_file.read_text())
    single_node = {key for key in local if "replication.factor" in key or ".isr" in key or "num.partitions" in key}
    single_node |= {"auto.create.topics.enable", "group.initial.rebalance.delay.ms", "process.roles", "node.id"}
    assert {key: written.get(key) for key in single_node} == {key: local[key] for key in single_node}


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


def test_confluent_framing_through_a_registry_and_a_broker_in_containers(
    settings: Settings, registry_in_container: str
) -> None:
    registry = SchemaRegistry(SchemaRegistryClient({"url": registry_in_container}))
    codec = ConfluentCodec(SchemaStore(), registry)
    producer = RecordProducer(create_producer(settings), codec, settings.kafka.topic_prefix)
    sent = _quotes(5)
    for quote in sent:
        producer.send(quotes.TOPIC, quote)
    assert producer.flush(30) == 0 and producer.failed == 0

    topic = producer.topic(quotes.TOPIC)
    messages = consume_all(settings, topic, len(sent))
    assert all((m.value() or b"\xff")[0] == 0 for m in messages)  # Confluent framing: magic byte, schema id
    assert sorted((decode_message(codec, quotes.TOPIC, m) for m in messages), key=lambda q: q.con_id) == sent

    current = json.loads(SchemaStore().current("quote").text)
    incompatible = {**current, "fields": [*current["fields"], {"name": "venue", "type": "string"}]}
    assert not registry.is_compatible(f"{topic}-value", json.dumps(incompatible))
    with pytest.raises(RegistryError, match=topic):
        registry.register(f"{topic}-value", json.dumps(incompatible))
