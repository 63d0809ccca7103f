"""Shared fixtures: a real Kafka broker for the session, fresh topics per test, the schema registry.

Broker, in order of preference:
* ``IBSTREAM_TEST_BOOTSTRAP=host:port`` — an existing cluster (users' CI, a staging cluster);
* ``IBSTREAM_TEST_DOCKER=1`` — a container (``IBSTREAM_TEST_KAFKA_IMAGE``, default apache/kafka) through Docker or,
  where none answers, podman's API socket (``tests/containers.py``); the registry likewise (Apicurio's image);
* otherwise the project's own local stack (Maven jars, KRaft), on test-only ports and a test-only state dir.

``clickhouse_server`` is a ClickHouse server container (``IBSTREAM_TEST_CLICKHOUSE_IMAGE``) for the warehouse tests
that run on both backends; where no engine or image can be had those cases are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ibstream.config import PROJECT_ROOT, Settings, load_settings

if TYPE_CHECKING:
    from tests.containers import ClickHouseServer, Engine

#: Test files that run in the second lane (``IBSTREAM_TEST_LANES=2 ops/dev test``: two pytest-xdist
#: workers): the chaos campaigns and the 3-node cluster tests, which bring their own brokers and
#: mostly wait, and the producer's and execution's integration tests (real sockets, generous waits, no market clock),
#: about 13 minutes in all on a fresh 2-core machine. Beside them the main lane runs the unit tests and the other
#: integration tests (about as long); the timing-sensitive end-to-end tests (UAT's 600x market clock, the demo-based
#: ones, the triage drill) run last, when this lane is done.
SECOND_LANE = (
    "tests/chaos/test_chaos.py",
    "tests/integration/test_cluster.py",
    "tests/integration/test_producer.py",
    "tests/integration/test_producer_connectivity.py",
    "tests/integration/test_execution.py",
)
#: How much lower the second lane's CPU priority is (``os.nice``; the main lane keeps the default, 0).
LANE_NICENESS = 10
#: The main lane's order: the fast unit tests, then integration, then end to end.
LANE_ORDER = ("tests/unit/", "tests/integration/", "tests/chaos/", "tests/e2e/")


def _lane_environment() -> None:
    """Each pytest-xdist worker past the first gets its own broker ports and test state dir (+100 per worker), so
    its session broker, registry and the clusters placed relative to them (+2 … +25) never meet the first worker's.
    Set in the environment, so the test modules that read it and the processes tests start agree; a nested pytest
    (same worker name) does not shift again."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or worker == "gw0" or os.environ.get("IBSTREAM_TEST_LANE") == worker:
        return
    shift = 100 * int(worker.removeprefix("gw"))
    base_state = Path(os.environ.get("IBSTREAM_TEST_STATE_DIR", PROJECT_ROOT / ".state" / "test"))
    os.environ["IBSTREAM_TEST_KAFKA_PORT"] = str(int(os.environ.get("IBSTREAM_TEST_KAFKA_PORT", "29092")) + shift)
    os.environ["IBSTREAM_TEST_REGISTRY_PORT"] = str(int(os.environ.get("IBSTREAM_TEST_REGISTRY_PORT", "28081")) + shift)
    os.environ["IBSTREAM_TEST_STATE_DIR"] = str(base_state / f"lane-{worker}")
    os.environ["IBSTREAM_TEST_LANE"] = worker
    # The second lane's campaigns are built for a starved machine (they wait for recovery, then judge correctness),
    # while the main lane holds timing-bound tests (the UAT's market clock, ibsim's pacing window): on two cores
    # the second lane yields the CPU when both want it. Its processes inherit the niceness.
    os.nice(LANE_NICENESS)


_lane_environment()

TEST_STATE = Path(os.environ.get("IBSTREAM_TEST_STATE_DIR", PROJECT_ROOT / ".state" / "test"))
TEST_KAFKA_PORT = int(os.environ.get("IBSTREAM_TEST_KAFKA_PORT", "29092"))
TEST_REGISTRY_PORT = int(os.environ.get("IBSTREAM_TEST_REGISTRY_PORT", "28081"))


def _use_containers() -> bool:
    return os.environ.get("IBSTREAM_TEST_DOCKER") == "1"


def _lane_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return next((rank for rank, prefix in enumerate(LANE_ORDER) if path.startswith(prefix)), len(LANE_ORDER))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist (``IBSTREAM_TEST_LANES=2``), the main lane's order, ``LANE_ORDER`` (a stable sort: each directory
    keeps its own order); every worker computes the same order, which xdist requires. In one process the order is
    pytest's own (chaos, end to end, integration, unit), the one CI has run green many times."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        items.sort(key=_lane_rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Two lanes under ``--dist loadscope`` (``IBSTREAM_TEST_LANES=2 ops/dev test``): the ``SECOND_LANE`` files are
    one scope, everything else the other, and xdist hands each scope whole to one worker: the larger (main) to gw0,
    whose ports and state are the unshifted ones (``_lane_environment``). xdist orders its workers as they come up,
    so they are put in name order first; otherwise the main lane can land on gw1 (it did in a CI run) and skip the
    container image prebuild. (xdist's own ``loadgroup`` marks do nothing under pytest 9: the group never reaches
    the scheduler.) Any other ``--dist`` mode is xdist's own."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "second" if nodeid.split("::", 1)[0] in SECOND_LANE else "main"

        def schedule(self) -> None:
            # The initial assignment walks ``assigned_work`` in order, one scope (largest first) per worker.
            self.assigned_work = dict(sorted(self.assigned_work.items(), key=lambda item: item[0].gateway.id))
            super().schedule()

    return LaneScheduling(config, log)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Container tests with images built here (``IBSTREAM_TEST_*_IMAGE=local``): build them before the first test,
    outside the per-test timeout (the first build takes minutes); later runs find them built."""
    selected = any(item.path.name == "test_testcontainers.py" for item in session.items)
    # Every xdist worker collects every test; the container tests are in the main lane, which gw0 runs
    # (``pytest_xdist_make_scheduler``), so only it builds.
    second_lane = "IBSTREAM_TEST_LANE" in os.environ
    if (_use_containers() or selected) and not second_lane:
        from tests.containers import prebuild_local_images

        prebuild_local_images(TEST_STATE)


def _stack_settings(**overrides: Any) -> Settings:
    return load_settings(
        state_dir=TEST_STATE,
        stack_kafka_port=TEST_KAFKA_PORT,
        stack_controller_port=TEST_KAFKA_PORT + 1,
        stack_registry_port=TEST_REGISTRY_PORT,
        kafka_bootstrap_servers=f"127.0.0.1:{TEST_KAFKA_PORT}",
        **overrides,
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """A running broker for the whole session."""
    existing = os.environ.get("IBSTREAM_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    if _use_containers():
        from tests.containers import kafka_container, kafka_test_image

        engine = request.getfixturevalue("container_engine")
        with kafka_container(engine, kafka_test_image(engine, TEST_STATE)) as bootstrap:
            yield bootstrap
        return
    from tooling.stack import KafkaStack

    stack = KafkaStack(_stack_settings())
    was_running = stack.status().running
    status = stack.up()
    yield status.bootstrap
    if not was_running and os.environ.get("IBSTREAM_TEST_KEEP_BROKER") != "1":
        stack.down()


@pytest.fixture
def settings_factory(kafka_bootstrap: str) -> Callable[..., Settings]:
    """Settings pointing at the test broker; keyword arguments override any setting."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"kafka_bootstrap_servers": kafka_bootstrap, "state_dir": TEST_STATE}
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def topic_prefix(settings_factory: Callable[..., Settings]) -> Iterator[str]:
    """A fresh copy of the whole topic catalogue (and DLQs) for one test, deleted afterwards."""
    from ibstream.kafka.clients import create_admin
    from ibstream.kafka.topics import catalogue, delete_topics, ensure_topics

    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = settings_factory()
    admin = create_admin(settings)
    layouts = catalogue(prefix)
    ensure_topics(admin, layouts)
    yield prefix
    delete_topics(admin, [layout.name for layout in layouts])


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], topic_prefix: str) -> Settings:
    """Settings for one test: the test broker and the test's own topics."""
    return settings_factory(kafka_topic_prefix=topic_prefix)


@pytest.fixture(scope="session")
def registry_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Confluent-compatible schema registry (Apicurio from Maven Central, in-memory) for the session."""
    existing = os.environ.get("IBSTREAM_TEST_REGISTRY_URL")
    if existing:
        yield existing
        return
    if _use_containers():
        from tests.containers import registry_container, registry_test_image

        engine = request.getfixturevalue("container_engine")
        with registry_container(engine, registry_test_image(engine, TEST_STATE)) as url:
            yield url
        return
    from tooling.stack import RegistryStack

    registry = RegistryStack(_stack_settings())
    was_running = registry.status().running
    yield registry.up().url
    if not was_running:
        registry.down()


@pytest.fixture(scope="session")
def available_container_engine() -> Iterator[Engine | str]:
    """Docker where one answers, else podman's API socket served for the session (``tests/containers.py``); where
    neither exists, the reason instead."""
    from tests.containers import ContainerError, container_engine

    stack = contextlib.ExitStack()
    try:
        engine: Engine | str = stack.enter_context(container_engine(TEST_STATE))
    except ContainerError as error:
        engine = str(error)
    with stack:
        yield engine


@pytest.fixture(scope="session")
def container_engine(available_container_engine: Engine | str) -> Engine:
    """The container engine; a test that needs one is skipped with the reason where none exists (failed under
    ``CI``: our CI has podman, so a missing engine there is a missing install step)."""
    from tests.tools import require_tool

    if isinstance(available_container_engine, str):
        require_tool(available_container_engine)
        raise AssertionError("unreachable: require_tool skips or fails")
    return available_container_engine


@pytest.fixture(scope="session")
def clickhouse_server(available_container_engine: Engine | str) -> Iterator[ClickHouseServer]:
    """A ClickHouse server container (``IBSTREAM_TEST_CLICKHOUSE_IMAGE``, default clickhouse/clickhouse-server) for
    the session. Optional everywhere (embedded chDB is the default backend): skipped with the reason where no engine
    exists or the image cannot be had (here: nothing can be pulled)."""
    from tests.containers import (
        DEFAULT_CLICKHOUSE_IMAGE,
        ContainerError,
        clickhouse_container,
        configured_image,
        ensure_image,
    )

    engine = available_container_engine
    if isinstance(engine, str):
        pytest.skip(f"no ClickHouse server to test against: {engine}")
    image = configured_image("IBSTREAM_TEST_CLICKHOUSE_IMAGE", DEFAULT_CLICKHOUSE_IMAGE)
    try:
        ensure_image(engine, image)
    except ContainerError as error:
        pytest.skip(f"no ClickHouse server to test against: {error}")
    with clickhouse_container(engine, image) as server:
        yield server
