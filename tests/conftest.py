"""Shared fixtures: a real Kafka broker for the session, fresh topics per test, the schema registry.

Broker, in order of preference:
* ``IBSTREAM_TEST_BOOTSTRAP=host:port`` — an existing cluster (users' CI, a staging cluster);
* ``IBSTREAM_TEST_DOCKER=1`` and a Docker engine that answers — testcontainers' Kafka;
* otherwise the project's own local stack (Maven jars, KRaft), on test-only ports and a test-only state dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import PROJECT_ROOT, Settings, load_settings

TEST_STATE = Path(os.environ.get("IBSTREAM_TEST_STATE_DIR", PROJECT_ROOT / ".state" / "test"))
TEST_KAFKA_PORT = int(os.environ.get("IBSTREAM_TEST_KAFKA_PORT", "29092"))
TEST_REGISTRY_PORT = int(os.environ.get("IBSTREAM_TEST_REGISTRY_PORT", "28081"))


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return result.returncode == 0


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
def kafka_bootstrap() -> Iterator[str]:
    """A running broker for the whole session."""
    existing = os.environ.get("IBSTREAM_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    if os.environ.get("IBSTREAM_TEST_DOCKER") == "1" and _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
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
def registry_url() -> Iterator[str]:
    """A Confluent-compatible schema registry (Apicurio from Maven Central, in-memory) for the session."""
    existing = os.environ.get("IBSTREAM_TEST_REGISTRY_URL")
    if existing:
        yield existing
        return
    from tooling.stack import RegistryStack

    registry = RegistryStack(_stack_settings())
    was_running = registry.status().running
    yield registry.up().url
    if not was_running:
        registry.down()
