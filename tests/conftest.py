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

TEST_STATE = Path(os.environ.get("IBSTREAM_TEST_STATE_DIR", PROJECT_ROOT / ".state" / "test"))
TEST_KAFKA_PORT = int(os.environ.get("IBSTREAM_TEST_KAFKA_PORT", "29092"))
TEST_REGISTRY_PORT = int(os.environ.get("IBSTREAM_TEST_REGISTRY_PORT", "28081"))


def _use_containers() -> bool:
    return os.environ.get("IBSTREAM_TEST_DOCKER") == "1"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Container tests with images built here (``IBSTREAM_TEST_*_IMAGE=local``): build them before the first test,
    outside the per-test timeout (the first build takes minutes); later runs find them built."""
    selected = any(item.path.name == "test_testcontainers.py" for item in session.items)
    if _use_containers() or selected:
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
