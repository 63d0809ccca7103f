"""The local cluster's layout: node ports, the controller quorum, replication of internal topics and of the catalogue
(no broker started)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ibstream.config import load_settings
from ibstream.kafka.topics import catalogue, min_insync_replicas, replicated
from tooling.stack import ClusterLayout, KafkaCluster, KafkaStack, StackError, resolve_classpath


def _properties(stack: KafkaStack) -> dict[str, str]:
    stack._write_config()
    lines = stack.config_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_every_node_of_a_three_broker_layout_listens_on_its_own_two_ports() -> None:
    layout = ClusterLayout(3, 31510)
    ports = [port for node in layout.node_ids for port in (layout.broker_port(node), layout.controller_port(node))]
    assert ports == [31510, 31511, 31512, 31513, 31514, 31515]
    assert layout.bootstrap == "127.0.0.1:31510,127.0.0.1:31512,127.0.0.1:31514"
    assert layout.quorum_voters == "1@127.0.0.1:31511,2@127.0.0.1:31513,3@127.0.0.1:31515"


def test_cluster_nodes_share_the_quorum_and_replicate_internal_topics_three_ways_with_min_isr_two(
    tmp_path: Path,
) -> None:
    cluster = KafkaCluster(load_settings(state_dir=tmp_path, stack_kafka_port=31510), brokers=3)
    nodes = {node_id: _properties(stack) for node_id, stack in cluster.nodes.items()}
    assert [props["node.id"] for props in nodes.values()] == ["1", "2", "3"]
    assert {props["controller.quorum.voters"] for props in nodes.values()} == {cluster.layout.quorum_voters}
    assert nodes[2]["listeners"] == "PLAINTEXT://127.0.0.1:31512,CONTROLLER://127.0.0.1:31513"
    assert len({props["log.dirs"] for props in nodes.values()}) == 3
    for props in nodes.values():
        assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == props["min.insync.replicas"] == "2"
    # Every node resolves the broker's jars into the same cache as the single broker.
    assert {stack.maven_dir for stack in cluster.nodes.values()} == {KafkaStack(cluster.settings).maven_dir}


def test_a_cluster_node_gets_the_cluster_heap_and_the_single_broker_keeps_its_own(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, stack_kafka_heap="700m", stack_cluster_heap="300m")
    assert KafkaStack(settings).heap == "700m"
    assert {stack.heap for stack in KafkaCluster(settings, 3).nodes.values()} == {"300m"}


def test_the_single_broker_keeps_replication_one(tmp_path: Path) -> None:
    props = _properties(KafkaStack(load_settings(state_dir=tmp_path, stack_controller_port=40001)))
    assert props["node.id"] == "1" and props["controller.quorum.voters"] == "1@127.0.0.1:40001"
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.min.isr"] == "1"
    assert props["min.insync.replicas"] == "1"


def test_a_cluster_of_one_broker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="at least 2 brokers"):
        KafkaCluster(load_settings(state_dir=tmp_path), brokers=1)


def test_the_cluster_a_previous_up_left_is_found_by_its_node_directories(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    assert KafkaCluster.from_state(settings) is None
    for node in (1, 2, 3):
        (tmp_path / "kafka-cluster" / f"node-{node}").mkdir(parents=True)
    found = KafkaCluster.from_state(settings)
    assert found is not None and found.layout.brokers == 3


@pytest.mark.parametrize(("replication", "expected"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_min_insync_replicas_is_two_from_three_replicas_on(replication: int, expected: int) -> None:
    assert min_insync_replicas(replication) == expected


def test_the_catalogue_at_replication_three_requires_two_in_sync_replicas_on_every_topic() -> None:
    layouts = replicated(catalogue(), 3)
    assert layouts and all(layout.configs()["min.insync.replicas"] == "2" for layout in layouts)
    # Below three replicas the catalogue is left as it is (the broker's default of 1 applies).
    assert replicated(catalogue(), 1) == catalogue()


def test_a_fresh_state_directory_reuses_the_projects_resolved_classpath_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tooling.stack as stack_module

    jar = tmp_path / "kafka.jar"
    jar.write_text("")
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    shared = tmp_path / "shared"
    shared.mkdir()
    name = f"classpath-{hashlib.sha256(pom.read_bytes()).hexdigest()[:16]}.txt"
    (shared / name).write_text(str(jar))
    monkeypatch.setattr(stack_module, "SHARED_MAVEN_DIR", shared)

    def no_maven(*args: object, **kwargs: object) -> None:
        raise AssertionError("mvn ran although the project's cache had the classpath")

    monkeypatch.setattr(stack_module.subprocess, "run", no_maven)
    assert resolve_classpath(tmp_path / "campaign" / "maven", pom) == str(jar)
    assert (tmp_path / "campaign" / "maven" / name).read_text() == str(jar)
    # A cached classpath naming a jar that is gone is not used.
    jar.unlink()
    with pytest.raises(AssertionError, match="mvn ran"):
        resolve_classpath(tmp_path / "other" / "maven", pom)
