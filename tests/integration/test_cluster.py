"""The 3-broker KRaft cluster (`ibstream stack up --brokers 3`) on this module's own ports: the catalogue at
replication 3 with min ISR 2, and acknowledged writes that survive the partition leader's SIGKILL and a rolling
restart (nothing lost, nothing doubled, order kept).

The pipeline's stages under the same faults (ingestion, risk, execution: no bar lost, one decision per intent, no
duplicate order at ibsim) are the cluster chaos campaign's (tests/chaos/test_chaos_cluster.py), judged by the chaos
checker.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from ibstream.config import PROJECT_ROOT, Settings, load_settings
from ibstream.kafka.clients import create_admin, create_consumer, create_producer
from ibstream.kafka.topics import TopicLayout, catalogue, delete_topics, ensure_topics
from tooling.stack import KafkaCluster

pytestmark = pytest.mark.integration

TEST_STATE = Path(os.environ.get("IBSTREAM_TEST_STATE_DIR", PROJECT_ROOT / ".state" / "test"))
#: The cluster's nodes take six ports from here (the session's single broker is on the test port and the next).
CLUSTER_PORT = int(os.environ.get("IBSTREAM_TEST_KAFKA_PORT", "29092")) + 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    # The session broker's state dir: the nodes share its cache of the broker's classpath.
    settings = load_settings(state_dir=TEST_STATE, stack_kafka_port=CLUSTER_PORT)
    cluster = KafkaCluster(settings, brokers=3)
    cluster.up(timeout=180)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def cluster_settings(cluster: KafkaCluster) -> Iterator[Settings]:
    """Every node running and in sync before a test (the previous one may have restarted some)."""
    cluster.up(timeout=180)
    deadline = time.monotonic() + 60
    while not cluster.in_sync() and time.monotonic() < deadline:
        time.sleep(0.5)
    yield cluster.client_settings()


def _topic(settings: Settings) -> str:
    name = f"cluster.{uuid.uuid4().hex[:8]}"
    report = ensure_topics(
        create_admin(settings), [TopicLayout(name, 1, 3_600_000, "delete")], replication=3, timeout=30
    )
    assert report.created == [name]
    return name


class Writer(threading.Thread):
    """Writes 0, 1, 2, … with the project's idempotent acks=all producer until stopped; counts acknowledgements."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(daemon=True)
        self.producer = create_producer(settings, **{"delivery.timeout.ms": 120_000})
        self.topic = topic
        self.sent = 0
        self.acked: list[int] = []
        self.failed: list[str] = []
        self.halt = threading.Event()

    def _delivered(self, error: object, message: object) -> None:
        if error is not None:
            self.failed.append(str(error))
        else:
            self.acked.append(int(message.value()))  # type: ignore[attr-defined]

    def run(self) -> None:
        while not self.halt.is_set():
            self.producer.produce(self.topic, value=str(self.sent).encode(), on_delivery=self._delivered)
            self.sent += 1
            self.producer.poll(0.005)
        self.producer.flush(120)

    def stop(self) -> None:
        self.halt.set()
        self.join(150)


def _read_back(settings: Settings, topic: str, count: int, timeout: float = 60.0) -> list[int]:
    consumer = create_consumer(settings, f"reader-{uuid.uuid4().hex[:6]}", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(int(message.value()))
    finally:
        consumer.close()
    return values


def _wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.2)


def test_the_catalogue_at_replication_three_has_three_replicas_and_min_isr_two(cluster_settings: Settings) -> None:
    admin = create_admin(cluster_settings)
    layouts = [layout for layout in catalogue(f"c{uuid.uuid4().hex[:6]}.") if not layout.is_dlq][:4]
    ensure_topics(admin, layouts, replication=3)
    try:
        topics = admin.list_topics(timeout=10).topics
        for layout in layouts:
            partitions = topics[layout.name].partitions.values()
            assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in partitions), layout.name
            # Leadership is spread: killing one node never takes every partition's leader.
        leaders = {p.leader for layout in layouts for p in topics[layout.name].partitions.values()}
        assert leaders == {1, 2, 3}
        resources = [ConfigResource(ResourceType.TOPIC, layout.name) for layout in layouts]
        for future in admin.describe_configs(resources).values():
            assert future.result()["min.insync.replicas"].value == "2"
        # A second ensure finds nothing to change.
        assert ensure_topics(admin, layouts, replication=3).reconciled == {}
    finally:
        delete_topics(admin, [layout.name for layout in layouts])


def test_acknowledged_writes_survive_a_sigkill_of_the_partition_leader(
    cluster: KafkaCluster, cluster_settings: Settings
) -> None:
    topic = _topic(cluster_settings)
    leader = cluster.leader_of(topic)
    writer = Writer(cluster_settings, topic)
    writer.start()
    _wait_until(lambda: len(writer.acked) >= 200, 30)
    cluster.kill(leader)
    acked_at_kill = len(writer.acked)
    # A new leader takes over and writes are acknowledged again while the old leader is down.
    _wait_until(lambda: len(writer.acked) >= acked_at_kill + 200, 60)
    new_leader = cluster.leader_of(topic)
    assert new_leader != leader
    assert len(writer.acked) >= acked_at_kill + 200, "no writes acknowledged after the leader died"
    cluster.restart(leader)
    writer.stop()
    assert writer.failed == []
    assert sorted(writer.acked) == list(range(writer.sent))
    # Read back: every acknowledged write once, in the order written (idempotence kept retries from doubling).
    assert _read_back(cluster_settings, topic, writer.sent) == list(range(writer.sent))


def test_a_rolling_restart_loses_no_acknowledged_write(cluster: KafkaCluster, cluster_settings: Settings) -> None:
    topic = _topic(cluster_settings)
    writer = Writer(cluster_settings, topic)
    writer.start()
    for node, stack in cluster.nodes.items():
        _wait_until(cluster.in_sync, 60)
        before = len(writer.acked)
        stack.down()
        _wait_until(lambda before=before: len(writer.acked) > before + 50, 60)
        assert len(writer.acked) > before + 50, f"writes stalled while node {node} was down"
        cluster.restart(node)
    writer.stop()
    assert writer.failed == []
    assert _read_back(cluster_settings, topic, writer.sent) == list(range(writer.sent))
