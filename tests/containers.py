"""Containers for the tests through any Docker-compatible engine (testcontainers): Docker where one answers, else
podman's Docker-compatible API socket, started here for the session and stopped after it.

Kafka runs as a generic container configured the way apache/kafka's image is (``KAFKA_*`` variables become
server.properties; testcontainers' ``KafkaContainer`` drives only Confluent's cp-kafka image and refuses others).
The image is ``IBSTREAM_TEST_KAFKA_IMAGE`` (default ``apache/kafka:4.1.1``) or, with the value ``local``, one built
here where nothing can be pulled: a Debian base made by mmdebstrap with the host's Java (the local stack runs the
broker on the host's Java too), imported into podman, plus the broker jars the local stack already resolves from
Maven Central and an entrypoint that reads the same variables (``ops/kafka/image``). Each image is tagged with a
digest of its inputs and the base's tarball is cached under ``<state>/containers``, so a warm run builds nothing.

The broker advertises ``<engine host>:<port>`` with the container port bound to the same free host port: a client
bootstraps, then connects to what the broker advertises, and both must be reachable from the test process.

The schema registry (``IBSTREAM_TEST_REGISTRY_IMAGE``, default Apicurio's image, in-memory like the local stack's)
is built the same way with ``local``, from the Apicurio distribution the local stack fetches from Maven Central.
ClickHouse (``IBSTREAM_TEST_CLICKHOUSE_IMAGE``) is only pulled: where the engine cannot pull it, the tests that
need it are skipped with the engine's reason.

Without Ryuk (its image cannot be pulled everywhere) nothing reaps a container whose test process was killed; the
containers carry the label ``ibstream.test=1`` and each new session removes its predecessors' leftovers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ibstream.config import PROJECT_ROOT, load_settings
from ibstream.exceptions import IbstreamError

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

DEFAULT_KAFKA_IMAGE = "apache/kafka:4.1.1"
DEFAULT_CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8"
DEFAULT_REGISTRY_IMAGE = "apicurio/apicurio-registry:3.0.9"
LOCAL_IMAGE = "local"
TEST_LABEL = "ibstream.test"
KAFKA_IMAGE_DIR = PROJECT_ROOT / "ops" / "kafka" / "image"
KAFKA_LOG4J = PROJECT_ROOT / "ops" / "kafka" / "log4j2.properties"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# podman's defaults here give containers too few open files for a broker, and crun is not installed.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


class ContainerError(IbstreamError):
    """No container engine, an image that cannot be had, or a container that did not come up; the message says
    which and why."""


@dataclass(frozen=True)
class Engine:
    """A Docker-compatible API the tests drive: its ``DOCKER_HOST`` URL and what serves it."""

    docker_host: str
    kind: str  # "docker" or "podman"

    @property
    def host(self) -> str:
        return engine_host(self.docker_host)


def engine_host(docker_host: str) -> str:
    """Where the engine's published ports are reached from this process: the host of a tcp:// engine, else
    loopback (a unix socket means the engine runs here)."""
    parsed = urllib.parse.urlparse(docker_host)
    if parsed.scheme in {"tcp", "http", "https", "ssh"} and parsed.hostname:
        return parsed.hostname
    return "127.0.0.1"


def configured_image(variable: str, default: str) -> str:
    """The image a test container runs: the variable's value, else the default."""
    return os.environ.get(variable, "").strip() or default


def _api_answers(docker_host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=docker_host, timeout=10)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # any failure to ping (refused, timeout, an HTTP error) means "does not answer"
        return False
    finally:
        client.close()


def containers_conf(state_dir: Path) -> Path:
    """The project's containers.conf for podman (see CONTAINERS_CONF), written under the state directory."""
    path = state_dir / "containers" / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != CONTAINERS_CONF:
        path.write_text(CONTAINERS_CONF)
    return path


def podman_env(state_dir: Path) -> dict[str, str]:
    """The environment every podman command of the tests runs with."""
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf(state_dir))}


@contextmanager
def podman_service(state_dir: Path, timeout: float = 30.0) -> Iterator[str]:
    """``podman system service`` on a socket under the state directory, for as long as the block runs."""
    socket_path = state_dir / "containers" / "podman.sock"
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    docker_host = f"unix://{socket_path}"
    log = (state_dir / "containers" / "podman-service.log").open("ab")
    process = subprocess.Popen(
        ["podman", "system", "service", "--time", "0", docker_host],
        env=podman_env(state_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (socket_path.exists() and _api_answers(docker_host)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ContainerError(f"podman's API service did not answer on {socket_path}; see {log.name}")
            time.sleep(0.2)
        yield docker_host
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        socket_path.unlink(missing_ok=True)


@contextmanager
def _testcontainers_on(engine: Engine) -> Iterator[None]:
    """Point testcontainers at the engine: its DOCKER_HOST, no Ryuk (its image cannot be pulled everywhere), and
    ports reached on the engine's host."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as config

    saved = (os.environ.get("DOCKER_HOST"), config.ryuk_disabled, config.connection_mode_override)
    os.environ["DOCKER_HOST"] = engine.docker_host
    config.ryuk_disabled = True
    config.connection_mode_override = ConnectionMode.docker_host
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved[0]
        config.ryuk_disabled, config.connection_mode_override = saved[1], saved[2]


def _remove_leftovers(engine: Engine) -> None:
    """Remove containers an earlier, killed test session left behind (nothing reaps them without Ryuk)."""
    import docker

    client = docker.DockerClient(base_url=engine.docker_host, timeout=30)
    try:
        for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
            owner = int(container.labels.get(TEST_LABEL, "0") or 0)
            if owner and not Path(f"/proc/{owner}").exists():
                container.remove(force=True)
    finally:
        client.close()


@contextmanager
def container_engine(state_dir: Path) -> Iterator[Engine]:
    """A Docker engine that answers (``DOCKER_HOST`` or the default socket), else podman's API served here."""
    candidates = [os.environ.get("DOCKER_HOST", ""), "unix:///var/run/docker.sock"]
    for docker_host in filter(None, candidates):
        socket_missing = docker_host.startswith("unix://") and not Path(docker_host.removeprefix("unix://")).exists()
        if not socket_missing and _api_answers(docker_host):
            engine = Engine(docker_host, "docker")
            with _testcontainers_on(engine):
                _remove_leftovers(engine)
                yield engine
            return
    if shutil.which("podman") is None:
        raise ContainerError("no Docker engine answers (DOCKER_HOST, /var/run/docker.sock) and podman is not installed")
    with podman_service(state_dir) as docker_host:
        engine = Engine(docker_host, "podman")
        with _testcontainers_on(engine):
            _remove_leftovers(engine)
            yield engine


def ensure_image(engine: Engine, image: str) -> None:
    """Have the image in the engine's store, pulling it if needed; ContainerError with the engine's reason if it
    cannot be had."""
    import docker

    client = docker.DockerClient(base_url=engine.docker_host, timeout=300)
    try:
        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        # The pull's stream carries the reason (podman answers 200 and reports a failed pull only in the stream).
        repository, tag = docker.utils.parse_repository_tag(image)
        reasons: list[str] = []
        try:
            for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if isinstance(event, dict) and event.get("error"):
                    reasons.append(str(event["error"]))
            client.images.get(image)
        except docker.errors.DockerException as error:
            reasons.append(str(error))
            raise ContainerError(f"{engine.kind} cannot pull {image}: {reasons[0]}") from None
    finally:
        client.close()


# --- The local Kafka image: a Debian base with the host's Java, plus the broker's Maven jars ------------------


def host_java_major() -> str:
    """The host's Java feature version ("17"), from ``java -version``: the image runs the Java the stack runs."""
    try:
        result = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ContainerError("java is not installed: the local Kafka image uses the host's Java version") from None
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    if match is None:
        raise ContainerError(f"cannot read the Java version from: {result.stderr.strip()}")
    return match.group(1)


def digest_of(*parts: str | bytes) -> str:
    """A short, stable digest of an image's inputs: its tag, so a changed input builds a new image."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


def base_build_command(java_major: str, target: Path) -> list[str]:
    """mmdebstrap's command for the base: minimal Debian with a headless JRE, docs and locales left out."""
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        f"--include=openjdk-{java_major}-jre-headless",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        DEBIAN_SUITE,
        str(target),
        *DEBIAN_MIRRORS,
    ]


def _podman(state_dir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=podman_env(state_dir), capture_output=True, text=True, timeout=timeout, check=False
    )


def _image_exists(state_dir: Path, tag: str) -> bool:
    return _podman(state_dir, "image", "exists", tag, timeout=60).returncode == 0


def ensure_local_base(state_dir: Path) -> str:
    """The Debian + JRE base image, imported into podman from a tarball mmdebstrap builds once."""
    java_major = host_java_major()
    cache = state_dir / "containers"
    tag = f"localhost/ibstream-test/jre:{digest_of(*base_build_command(java_major, Path('-')))}"
    if _image_exists(state_dir, tag):
        return tag
    tarball = cache / f"jre-{tag.rsplit(':', 1)[1]}.tar"
    if not tarball.exists():
        if shutil.which("mmdebstrap") is None:
            raise ContainerError("mmdebstrap is not installed: it builds the local Kafka image's Debian base")
        partial = tarball.with_suffix(".partial.tar")
        result = subprocess.run(
            base_build_command(java_major, partial), capture_output=True, text=True, timeout=1800, check=False
        )
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ContainerError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
        partial.rename(tarball)
    result = _podman(state_dir, "import", str(tarball), tag)
    if result.returncode != 0:
        raise ContainerError(f"podman import {tarball} failed:\n{result.stderr[-2000:]}")
    return tag


def _build_on_base(state_dir: Path, tag: str, base: str, sources: dict[str, Path], containerfile: str) -> str:
    """``podman build`` of ``containerfile`` FROM the local base, its context holding ``sources`` (context path →
    file or folder); skipped when the tag (a digest of the inputs) is already in the store."""
    if _image_exists(state_dir, tag):
        return tag
    context = state_dir / "containers" / "build-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    try:
        for name, source in sources.items():
            if source.is_dir():
                shutil.copytree(source, context / name)
            else:
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, context / name)
        (context / "Containerfile").write_text(containerfile)
        result = _podman(state_dir, "build", "--build-arg", f"BASE={base}", "-t", tag, str(context))
    finally:
        shutil.rmtree(context, ignore_errors=True)
    if result.returncode != 0:
        raise ContainerError(f"podman build of {tag} failed:\n{result.stderr[-3000:]}")
    return tag


def ensure_local_kafka_image(state_dir: Path) -> str:
    """The Kafka image built from the local stack's Maven jars on the local base; built once per input digest."""
    from tooling.stack import resolve_classpath

    base = ensure_local_base(state_dir)
    jars = [Path(jar) for jar in resolve_classpath(state_dir / "maven").split(os.pathsep) if jar]
    containerfile = (KAFKA_IMAGE_DIR / "Containerfile").read_text()
    files = [KAFKA_IMAGE_DIR / "run-kafka", KAFKA_LOG4J]
    tag = "localhost/ibstream-test/kafka:" + digest_of(
        base, containerfile, *(f"{jar.name}:{jar.stat().st_size}" for jar in jars), *(p.read_bytes() for p in files)
    )
    sources = {f"libs/{jar.name}": jar for jar in jars} | {path.name: path for path in files}
    return _build_on_base(state_dir, tag, base, sources, containerfile)


# Apicurio's runnable distribution (the runner jar, lib/, meta/), run as the local stack runs it.
REGISTRY_CONTAINERFILE = """ARG BASE
FROM ${{BASE}}
COPY app/ /opt/apicurio/
WORKDIR /opt/apicurio
EXPOSE 8080
ENTRYPOINT ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dquarkus.http.host=0.0.0.0", \
  "-Dquarkus.http.port=8080", "-jar", "/opt/apicurio/{runner}"]
"""


def ensure_local_registry_image(state_dir: Path) -> str:
    """Apicurio Registry's image built from the distribution the local stack fetches from Maven Central."""
    from tooling.stack import APICURIO_VERSION, resolve_apicurio

    base = ensure_local_base(state_dir)
    runner = resolve_apicurio(state_dir / "maven")
    containerfile = REGISTRY_CONTAINERFILE.format(runner=runner.name)
    tag = "localhost/ibstream-test/apicurio:" + digest_of(base, APICURIO_VERSION, containerfile)
    return _build_on_base(state_dir, tag, base, {"app": runner.parent}, containerfile)


def kafka_image(engine: Engine, state_dir: Path) -> str:
    """The Kafka image to run, in the engine's store: ``IBSTREAM_TEST_KAFKA_IMAGE``, built here when ``local``."""
    image = configured_image("IBSTREAM_TEST_KAFKA_IMAGE", DEFAULT_KAFKA_IMAGE)
    if image != LOCAL_IMAGE:
        ensure_image(engine, image)
        return image
    if engine.kind != "podman":
        raise ContainerError("IBSTREAM_TEST_KAFKA_IMAGE=local builds with podman; this engine is Docker")
    return ensure_local_kafka_image(state_dir)


# --- Containers -------------------------------------------------------------------------------------------------


def kafka_environment(advertised_host: str, port: int, cluster_id: str) -> dict[str, str]:
    """One KRaft node (broker + controller) as apache/kafka's image reads it, with the local stack's single-node
    settings: no auto-created topics, internal topics without replicas, no rebalance delay."""
    return {
        "CLUSTER_ID": cluster_id,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{advertised_host}:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "10",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "10",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
        "KAFKA_MIN_INSYNC_REPLICAS": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx512m",
    }


def _container(image: str, **env: str) -> DockerContainer:
    from testcontainers.core.container import DockerContainer

    return DockerContainer(image, labels={TEST_LABEL: str(os.getpid())}).with_envs(**env)


def _wait_until(container: DockerContainer, ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        container.reload()
        if container.status in {"exited", "dead"} or time.monotonic() > deadline:
            stdout, stderr = container.get_logs()
            tail = (stdout + stderr).decode(errors="replace")[-3000:]
            raise ContainerError(f"{what} did not come up within {timeout:.0f}s ({container.status}):\n{tail}")
        time.sleep(0.5)


@contextmanager
def kafka_container(engine: Engine, image: str, timeout: float = 240.0) -> Iterator[str]:
    """A single-node KRaft broker in a container; yields its bootstrap address once it answers metadata. (The
    timeout is generous: on a loaded 2-core machine a broker's first start has taken over two minutes.)"""
    from ibstream.kafka.clients import broker_answers
    from tooling.processes import free_port

    port = free_port()
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    bootstrap = f"{engine.host}:{port}"
    client_settings = load_settings(kafka_bootstrap_servers=bootstrap)
    container = _container(image, **kafka_environment(engine.host, port, cluster_id)).with_bind_ports(port, port)
    with container:
        _wait_until(container, lambda: broker_answers(client_settings), timeout, f"Kafka ({image})")
        yield bootstrap


@dataclass(frozen=True)
class ClickHouseServer:
    """A ClickHouse server's HTTP endpoint and the user the tests connect as."""

    url: str
    username: str
    password: str


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


@contextmanager
def clickhouse_container(engine: Engine, image: str, timeout: float = 120.0) -> Iterator[ClickHouseServer]:
    """ClickHouse server over HTTP (port 8123) with a password user (recent images refuse a passwordless default
    user over the network)."""
    env = {
        "CLICKHOUSE_USER": "ibstream",
        "CLICKHOUSE_PASSWORD": "ibstream",
        "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT": "1",
    }
    with _container(image, **env).with_exposed_ports(8123) as container:
        url = f"http://{engine.host}:{container.get_exposed_port(8123)}"
        _wait_until(container, lambda: _http_ok(f"{url}/ping"), timeout, f"ClickHouse ({image})")
        yield ClickHouseServer(url, env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"])


@contextmanager
def registry_container(engine: Engine, image: str, timeout: float = 240.0) -> Iterator[str]:
    """Apicurio Registry (in-memory) in a container; yields its Confluent-compatible API's URL once it answers."""
    with _container(image).with_exposed_ports(8080) as container:
        url = f"http://{engine.host}:{container.get_exposed_port(8080)}/apis/ccompat/v7"
        _wait_until(container, lambda: _http_ok(f"{url}/subjects"), timeout, f"the schema registry ({image})")
        yield url


def kafka_test_image(engine: Engine, state_dir: Path) -> str:
    """``kafka_image`` for a fixture: a test that cannot have it is skipped with the reason (failed under CI)."""
    from tests.tools import require_tool

    try:
        return kafka_image(engine, state_dir)
    except ContainerError as error:
        require_tool(f"{error} (IBSTREAM_TEST_KAFKA_IMAGE=local builds one from the Maven jars with podman)")
        raise


def registry_test_image(engine: Engine, state_dir: Path) -> str:
    """The registry image (``IBSTREAM_TEST_REGISTRY_IMAGE``; ``local``: built here) in the engine's store, else
    skipped with the reason (failed under CI)."""
    from tests.tools import require_tool

    image = configured_image("IBSTREAM_TEST_REGISTRY_IMAGE", DEFAULT_REGISTRY_IMAGE)
    try:
        if image != LOCAL_IMAGE:
            ensure_image(engine, image)
            return image
        if engine.kind != "podman":
            raise ContainerError("IBSTREAM_TEST_REGISTRY_IMAGE=local builds with podman; this engine is Docker")
        return ensure_local_registry_image(state_dir)
    except ContainerError as error:
        require_tool(f"{error} (IBSTREAM_TEST_REGISTRY_IMAGE=local builds one from Maven Central with podman)")
        raise


def prebuild_local_images(state_dir: Path) -> None:
    """Build the images configured as ``local`` now, before the first test: a first build on a fresh machine takes
    minutes (mmdebstrap), more than a test's timeout. A failure is left for the fixture to report with its test."""
    if shutil.which("podman") is None:
        return
    builds = {
        "IBSTREAM_TEST_KAFKA_IMAGE": ensure_local_kafka_image,
        "IBSTREAM_TEST_REGISTRY_IMAGE": ensure_local_registry_image,
    }
    for variable, build in builds.items():
        if configured_image(variable, "") == LOCAL_IMAGE:
            try:
                build(state_dir)
            except (IbstreamError, OSError, subprocess.SubprocessError):
                continue
