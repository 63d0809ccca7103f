"""The local stack: a real Apache Kafka 4.x broker in KRaft mode, from Maven Central jars, on loopback.

No Docker engine runs on our machines, so `ibstream stack up` resolves the broker's classpath with `mvn`
(`ops/kafka/pom.xml`), formats KRaft storage once, starts `kafka.Kafka` detached, and waits until it answers
metadata requests. State (data, log, pid) lives under ``<state_dir>/kafka``; `down` stops only the broker whose
pid file and command line match that directory.

`ibstream stack up --brokers 3` starts a cluster instead (`KafkaCluster`): three combined broker + controller
nodes on consecutive port pairs from ``IBSTREAM_STACK_KAFKA_PORT`` (node n: broker port + 2(n-1), its controller
on the next port), one KRaft quorum, internal topics at replication 3 with min ISR 2. State lives under
``<state_dir>/kafka-cluster/node-<n>``.

With ``IBSTREAM_STACK_KAFKA_SASL`` the client listener is SASL_PLAINTEXT with SCRAM-SHA-512 and the
StandardAuthorizer refuses what no ACL allows: the configured Kafka principal is the super user (created when the
storage is formatted); deployables' users and ACLs are added with ``ibstream.kafka.identities``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ibstream.config import PROJECT_ROOT, Settings
from ibstream.exceptions import IbstreamError

KAFKA_POM = PROJECT_ROOT / "ops" / "kafka" / "pom.xml"
KAFKA_LOG4J = PROJECT_ROOT / "ops" / "kafka" / "log4j2.properties"
#: Where `ops/dev install` resolves the broker's classpath (the default state directory's Maven cache).
SHARED_MAVEN_DIR = PROJECT_ROOT / ".state" / "maven"


class StackError(IbstreamError):
    """The local stack could not be set up or started; the message says what to do."""


@dataclass(frozen=True)
class BrokerStatus:
    """What `stack status` reports."""

    running: bool
    pid: int | None
    bootstrap: str
    state_dir: Path
    log_file: Path

    def describe(self) -> str:
        if self.running:
            return f"kafka: running (pid {self.pid}) on {self.bootstrap}, state {self.state_dir}"
        return f"kafka: stopped (state {self.state_dir})"


@dataclass(frozen=True)
class ClusterLayout:
    """Where the nodes of a local KRaft cluster listen, and the replication its internal topics get (pure).

    Node ids run from 1; node n's broker port is ``base_port + 2(n-1)`` and its controller port the next one, so a
    single node keeps the single broker's ports and the nodes of a cluster never share one.
    """

    brokers: int
    base_port: int
    host: str = "127.0.0.1"

    @property
    def node_ids(self) -> range:
        return range(1, self.brokers + 1)

    def broker_port(self, node_id: int) -> int:
        return self.base_port + 2 * (node_id - 1)

    def controller_port(self, node_id: int) -> int:
        return self.broker_port(node_id) + 1

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{self.broker_port(node)}" for node in self.node_ids)

    @property
    def quorum_voters(self) -> str:
        return ",".join(f"{node}@{self.host}:{self.controller_port(node)}" for node in self.node_ids)


def replication_properties(brokers: int) -> dict[str, str]:
    """Broker settings for the internal topics (consumer offsets, transactions, share groups) and for topics created
    without an explicit factor: every node holds a replica, and from three nodes on a write needs two in sync."""
    # Imported here so `stack status` works without loading librdkafka (the catalogue module imports it).
    from ibstream.kafka.topics import min_insync_replicas

    replicas, min_isr = str(brokers), str(min_insync_replicas(brokers))
    return {
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
    }


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not a running broker.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def resolve_classpath(cache_dir: Path, pom: Path = KAFKA_POM) -> str:
    """The broker's runtime classpath, resolved by Maven once per pom version and reused after that."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"classpath-{digest}.txt"
    # The project's own cache (`ops/dev install` fills it) serves every other state directory too: a chaos campaign
    # or a test cluster in a fresh directory would otherwise start a Maven run of its own (half a minute under load).
    for known in (cache, SHARED_MAVEN_DIR / cache.name):
        classpath = known.read_text().strip() if known.exists() else ""
        if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            if known != cache:
                cache.write_text(classpath)
            return classpath
    command = ["mvn", "-q", "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={cache}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except FileNotFoundError:
        raise StackError("mvn is not installed: the local Kafka broker's jars come from Maven Central") from None
    if result.returncode != 0 or not cache.exists():
        raise StackError(
            f"mvn could not resolve the Kafka broker jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return cache.read_text().strip()


class DetachedProcess:
    """A process started detached from the CLI, tracked by a pid file and recognised by a marker in its command
    line (so a recycled pid of an unrelated process is never signalled)."""

    def __init__(self, directory: Path, name: str, marker: str) -> None:
        self.pid_file = directory / f"{name}.pid"
        self.log_file = directory / f"{name}.log"
        self.marker = marker

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return pid if self.marker in cmdline else None

    def start(self, command: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
            )
        self.pid_file.write_text(str(process.pid))
        return process

    def stop(self, timeout: float = 30.0) -> bool:
        """Graceful stop, then forced. False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class KafkaStack:
    """A single-node KRaft broker (combined broker + controller) owned by one state directory; with ``layout``, node
    ``node_id`` of a local cluster (`KafkaCluster`)."""

    def __init__(
        self,
        settings: Settings,
        state_dir: Path | None = None,
        *,
        layout: ClusterLayout | None = None,
        node_id: int = 1,
    ) -> None:
        self.settings = settings
        self.host = "127.0.0.1"
        self.layout = layout
        self.node_id = node_id
        self.port = layout.broker_port(node_id) if layout else settings.stack.kafka_port
        self.controller_port = layout.controller_port(node_id) if layout else settings.stack.controller_port
        self.heap = settings.stack.cluster_heap if layout else settings.stack.kafka_heap
        self.dir = state_dir or settings.kafka_state_dir
        # The classpath cache is shared by the single broker and every cluster node (all live under state_dir).
        self.maven_dir = (self.dir.parent.parent if layout else self.dir.parent) / "maven"
        self.data_dir = self.dir / "data"
        self.config_file = self.dir / "server.properties"
        self.process = DetachedProcess(self.dir, "broker", marker=str(self.config_file))
        self.log_file = self.process.log_file

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _pid(self) -> int | None:
        return self.process.pid()

    def status(self) -> BrokerStatus:
        pid = self._pid()
        running = pid is not None and port_open(self.host, self.port)
        return BrokerStatus(running, pid, self.bootstrap, self.dir, self.log_file)

    @property
    def sasl(self) -> bool:
        """Whether this broker's client listener takes SASL/SCRAM-SHA-512 and authorizes with ACLs."""
        return self.settings.stack.kafka_sasl

    def _super_user(self) -> tuple[str, str]:
        """The SCRAM user the broker itself and the operator (topics, users, ACLs) connect as: the configured
        Kafka principal, which must therefore be SASL/SCRAM-SHA-512."""
        kafka = self.settings.kafka
        if not (kafka.uses_sasl and kafka.sasl_mechanism == "SCRAM-SHA-512" and kafka.sasl_password):
            raise StackError(
                "IBSTREAM_STACK_KAFKA_SASL=true needs IBSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, "
                "IBSTREAM_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 and IBSTREAM_KAFKA_SASL_USERNAME/PASSWORD: the broker's "
                "super user"
            )
        return str(kafka.sasl_username), kafka.sasl_password.get_secret_value()

    def _listener_properties(self) -> dict[str, str]:
        controller = f"CONTROLLER://{self.host}:{self.controller_port}"
        if not self.sasl:
            return {
                "listeners": f"PLAINTEXT://{self.host}:{self.port},{controller}",
                "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            }
        username, password = self._super_user()
        jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{username}" '
        jaas += f'password="{password}";'
        return {
            "listeners": f"SASL_PLAINTEXT://{self.host}:{self.port},{controller}",
            "advertised.listeners": f"SASL_PLAINTEXT://{self.host}:{self.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            # SCRAM credentials live in the metadata log, so the controller listener cannot use SCRAM (KIP-900):
            # it stays plaintext on loopback, and the broker's requests over it arrive as ANONYMOUS.
            "super.users": f"User:{username};User:ANONYMOUS",
        }

    def _write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        voters = self.layout.quorum_voters if self.layout else f"1@{self.host}:{self.controller_port}"
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            **self._listener_properties(),
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # Topics come from the catalogue (`topics ensure`); auto-creation would hide a misspelt topic name.
            "auto.create.topics.enable": "false",
            # A single node's internal topics cannot have replicas; a cluster's have one on every node.
            **replication_properties(self.layout.brokers if self.layout else 1),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        self.config_file.touch(mode=0o600)  # it holds the super user's password when SASL is on
        self.config_file.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))

    def _format_storage(self, classpath: str, cluster_id: str | None = None) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        # One id in 64 starts with "-"; in "--cluster-id=…" form argparse cannot mistake it for an option.
        cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        command = [
            "java",
            "-cp",
            classpath,
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.config_file),
        ]
        if self.sasl:
            # The super user exists before the broker starts: the broker itself logs in as it.
            username, password = self._super_user()
            command.append(f"--add-scram=SCRAM-SHA-512=[name={username},password={password}]")
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise StackError(f"formatting KRaft storage failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def up(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers metadata requests. A broker that does not
        answer in time is stopped before the error is raised: one that came up later would hold the port for good,
        and the next ``up`` of another state dir (another checkout's test session) would find it taken."""
        current = self.status()
        if current.running:
            return current
        process = self.launch()
        try:
            return self.await_ready(process, timeout)
        except StackError:
            self.down()
            raise

    def launch(self, cluster_id: str | None = None) -> subprocess.Popen[bytes]:
        """Format storage (once, with ``cluster_id``: every node of a cluster shares one) and start the broker
        detached, without waiting for it (a cluster node answers only once a quorum of controllers runs)."""
        if self._pid() is None and port_open(self.host, self.port):
            raise StackError(
                f"port {self.port} is in use by a process this stack did not start; "
                "stop it or set IBSTREAM_STACK_KAFKA_PORT"
            )
        classpath = resolve_classpath(self.maven_dir)
        self._write_config()
        self._format_storage(classpath, cluster_id)
        command = [
            "java",
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(self.config_file),
        ]
        return self.process.start(command)

    def await_ready(self, process: subprocess.Popen[bytes], timeout: float) -> BrokerStatus:
        """Wait until the broker ``process`` answers metadata requests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = self.process.log_tail()
                raise StackError(f"the Kafka broker exited with {process.returncode}; see {self.log_file}:\n{tail}")
            if self._answers_metadata():
                return self.status()
            time.sleep(0.5)
        raise StackError(f"the Kafka broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def _answers_metadata(self) -> bool:
        # Imported here so `stack status` works without loading librdkafka.
        from ibstream.kafka.clients import broker_answers

        return broker_answers(self.client_settings())

    def client_settings(self) -> Settings:
        """The settings a client of this broker uses: plaintext, or with SASL the configured super user. (This
        broker is on loopback: the configured client settings for production do not apply.)"""
        if self.sasl:
            return self.settings.with_overrides(kafka_bootstrap_servers=self.bootstrap, kafka_client_config={})
        return self.settings.with_overrides(
            kafka_bootstrap_servers=self.bootstrap,
            kafka_client_config={},
            kafka_security_protocol="PLAINTEXT",
            kafka_sasl_username=None,
            kafka_sasl_password=None,
            kafka_ssl_ca_location=None,
            kafka_ssl_certificate_location=None,
            kafka_ssl_key_location=None,
        )

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker this stack started (graceful, then forced). False if none was running."""
        return self.process.stop(timeout)

    def signal_broker(self, signum: int) -> None:
        """Send a signal to our broker (chaos tests: SIGSTOP/SIGCONT for a GC-like pause, SIGKILL for a crash)."""
        pid = self._pid()
        if pid is None:
            raise StackError("no broker of this stack is running")
        os.kill(pid, signum)


@dataclass(frozen=True)
class ClusterStatus:
    """What `stack status` reports for a cluster: every node's broker status."""

    nodes: tuple[BrokerStatus, ...]
    bootstrap: str

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    @property
    def any_running(self) -> bool:
        return any(node.pid is not None for node in self.nodes)

    def describe(self) -> str:
        up = sum(node.running for node in self.nodes)
        lines = [f"kafka cluster: {up} of {len(self.nodes)} nodes running, bootstrap {self.bootstrap}"]
        lines += [f"  node {index}: {node.describe()}" for index, node in enumerate(self.nodes, start=1)]
        return "\n".join(lines)


class KafkaCluster:
    """``brokers`` combined KRaft nodes on loopback sharing one cluster id and one controller quorum
    (`ibstream stack up --brokers N`, the cluster tests, the chaos campaign's cluster mode).

    Starting: every stopped node is formatted (once) with the cluster's id and launched, then each must answer and
    the metadata must list every broker. A single node can be killed and restarted on its data (``kill``,
    ``restart``): the others keep serving while a quorum of controllers (two of three) runs.
    """

    def __init__(
        self, settings: Settings, brokers: int = 3, state_dir: Path | None = None, base_port: int | None = None
    ) -> None:
        if brokers < 2:
            raise StackError(f"a cluster needs at least 2 brokers, not {brokers}: `ibstream stack up` starts one")
        self.settings = settings
        self.layout = ClusterLayout(brokers, base_port or settings.stack.kafka_port)
        self.dir = state_dir or settings.state_dir / "kafka-cluster"
        self.nodes = {
            node: KafkaStack(settings, self.dir / f"node-{node}", layout=self.layout, node_id=node)
            for node in self.layout.node_ids
        }

    @classmethod
    def from_state(cls, settings: Settings) -> KafkaCluster | None:
        """The cluster a `stack up --brokers N` left under the state directory (N = its node directories), if any."""
        directory = settings.state_dir / "kafka-cluster"
        brokers = len(list(directory.glob("node-*"))) if directory.is_dir() else 0
        return cls(settings, brokers, directory) if brokers >= 2 else None

    @property
    def bootstrap(self) -> str:
        return self.layout.bootstrap

    def status(self) -> ClusterStatus:
        return ClusterStatus(tuple(node.status() for node in self.nodes.values()), self.bootstrap)

    def _cluster_id(self) -> str:
        path = self.dir / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        self.dir.mkdir(parents=True, exist_ok=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        path.write_text(cluster_id)
        return cluster_id

    def up(self, timeout: float = 120.0) -> ClusterStatus:
        """Start every node that is not running; return once all answer and the metadata lists every broker."""
        cluster_id = self._cluster_id()
        stopped = [node for node, stack in self.nodes.items() if stack.process.pid() is None]
        if stopped:
            resolve_classpath(self.nodes[stopped[0]].maven_dir)  # once, before the nodes look for it at once
        # Formatting is a JVM start per node: side by side, not one after the other.
        with ThreadPoolExecutor(max(1, len(stopped))) as pool:
            launched = dict(
                zip(stopped, pool.map(lambda node: self.nodes[node].launch(cluster_id), stopped), strict=True)
            )
        for node, process in launched.items():
            self.nodes[node].await_ready(process, timeout)
        self.await_brokers(timeout)
        return self.status()

    def await_brokers(self, timeout: float = 60.0) -> None:
        """Wait until the cluster's metadata lists every broker."""
        from confluent_kafka import KafkaException

        from ibstream.kafka.clients import create_admin

        admin = create_admin(self.client_settings())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(admin.list_topics(timeout=5).brokers) == self.layout.brokers:
                    return
            except KafkaException:
                pass
            time.sleep(0.5)
        raise StackError(f"the cluster did not list {self.layout.brokers} brokers within {timeout:.0f}s")

    def down(self, timeout: float = 30.0) -> bool:
        """Stop every node at once (one by one, the last would wait for a quorum that is gone). False if none ran."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda node: node.down(timeout), self.nodes.values()))
        return any(stopped)

    def client_settings(self) -> Settings:
        """Settings for a client of this cluster: every node as bootstrap, topics created at full replication."""
        return (
            self.nodes[1]
            .client_settings()
            .with_overrides(kafka_bootstrap_servers=self.bootstrap, kafka_topic_replication=self.layout.brokers)
        )

    def leader_of(self, topic: str, partition: int = 0, timeout: float = 10.0) -> int:
        """The node id leading ``topic``'s ``partition`` now (asked again for up to ``timeout`` while it has none:
        a new topic's leaders reach the metadata a moment after it is created)."""
        from confluent_kafka import KafkaException

        from ibstream.kafka.clients import create_admin

        admin = create_admin(self.client_settings())
        deadline = time.monotonic() + timeout
        leader = -1
        while True:
            with contextlib.suppress(KafkaException):
                found = admin.list_topics(topic=topic, timeout=max(1.0, timeout)).topics.get(topic)
                leader = found.partitions[partition].leader if found and partition in found.partitions else -1
            if leader in self.nodes:
                return int(leader)
            if time.monotonic() > deadline:
                raise StackError(f"{topic}[{partition}] has no leader among nodes {list(self.nodes)} (leader {leader})")
            time.sleep(0.2)

    def leaders(self, topic: str, timeout: float = 10.0) -> dict[int, int]:
        """Each partition of ``topic`` and the node leading it (-1: none right now)."""
        from ibstream.kafka.clients import create_admin

        found = create_admin(self.client_settings()).list_topics(topic=topic, timeout=timeout).topics.get(topic)
        return {partition: meta.leader for partition, meta in sorted(found.partitions.items())} if found else {}

    def in_sync(self, timeout: float = 10.0) -> bool:
        """Whether every partition of every topic has all its replicas in sync (safe to take the next node down)."""
        from confluent_kafka import KafkaException

        from ibstream.kafka.clients import create_admin

        try:
            topics = create_admin(self.client_settings()).list_topics(timeout=timeout).topics
        except KafkaException:
            return False
        partitions = [partition for topic in topics.values() for partition in topic.partitions.values()]
        return all(partition.leader >= 0 and len(partition.isrs) == len(partition.replicas) for partition in partitions)

    def kill(self, node: int) -> None:
        """SIGKILL one node (a crash) and wait until its process is gone."""
        self.nodes[node].signal_broker(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.nodes[node].process.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self, node: int, timeout: float = 120.0) -> BrokerStatus:
        """Start one node again on its data; return once it answers."""
        return self.nodes[node].up(timeout)


APICURIO_VERSION = "3.0.9"  # 3.3.x is built for Java 21; the machines have Java 17.
APICURIO_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"


def resolve_apicurio(cache_dir: Path) -> Path:
    """Fetch Apicurio Registry's runnable distribution from Maven Central once; return its runner jar."""
    home = cache_dir / f"apicurio-registry-{APICURIO_VERSION}"
    runner = home / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    if runner.exists():
        return runner
    repo = Path(os.environ.get("MAVEN_REPO_LOCAL", Path.home() / ".m2" / "repository"))
    archive = (
        repo
        / "io"
        / "apicurio"
        / "apicurio-registry-app"
        / APICURIO_VERSION
        / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
    )
    if not archive.exists():
        command = [
            "mvn",
            "-q",
            "-B",
            "dependency:get",
            f"-Dartifact={APICURIO_ARTIFACT}",
            "-Dtransitive=false",
            f"-Dmaven.repo.local={repo}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0 or not archive.exists():
            raise StackError(
                f"mvn could not fetch {APICURIO_ARTIFACT}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    home.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(home, filter="data")
    if not runner.exists():
        # The archive may wrap everything in one top-level folder.
        found = next(home.rglob(runner.name), None)
        if found is None:
            raise StackError(f"{archive} holds no {runner.name}")
        return found
    return runner


@dataclass(frozen=True)
class RegistryStatus:
    """What `stack status` reports for the registry."""

    running: bool
    pid: int | None
    url: str

    def describe(self) -> str:
        if self.running:
            return f"schema registry: running (pid {self.pid}) at {self.url}"
        return "schema registry: stopped"


class RegistryStack:
    """Apicurio Registry (in-memory storage) serving the Confluent-compatible API on loopback.

    In-memory storage is deliberate for dev and tests: schemas are re-registered idempotently by every producer
    at startup, so losing them with the process loses nothing; production points at a real registry.
    """

    def __init__(self, settings: Settings, state_dir: Path | None = None) -> None:
        self.settings = settings
        self.port = settings.stack.registry_port
        self.dir = state_dir or (settings.state_dir / "registry")
        self.process = DetachedProcess(self.dir, "registry", marker=f"-Dquarkus.http.port={self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False

    def status(self) -> RegistryStatus:
        pid = self.process.pid()
        return RegistryStatus(pid is not None and self._answers(), pid, self.url)

    def up(self, timeout: float = 90.0) -> RegistryStatus:
        current = self.status()
        if current.running:
            return current
        if current.pid is None and port_open("127.0.0.1", self.port):
            raise StackError(f"port {self.port} is in use by another process; set IBSTREAM_STACK_REGISTRY_PORT")
        runner = resolve_apicurio(self.settings.state_dir / "maven")
        command = [
            "java",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.http.host=127.0.0.1",
            "-jar",
            str(runner),
        ]
        process = self.process.start(command, cwd=runner.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"the registry exited with {process.returncode}:\n{self.process.log_tail()}")
            if self._answers():
                return self.status()
            time.sleep(0.3)
        raise StackError(f"the registry did not answer within {timeout:.0f}s; see {self.process.log_file}")

    def down(self, timeout: float = 20.0) -> bool:
        return self.process.stop(timeout)
