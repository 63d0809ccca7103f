"""The demo's broker: it uses the broker it started (on the configured port, or free ports when that one is taken,
so two demos with their own state directories run side by side) and stops it at its end; a broker it found running
is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibstream.config import load_settings
from ibstream.kafka.clients import create_admin
from tooling.demo import Demo, DemoConfig
from tooling.processes import free_port
from tooling.stack import KafkaStack, port_open

pytestmark = pytest.mark.integration


def _demo(state_dir: Path, kafka_port: int, controller_port: int) -> Demo:
    # No kafka_bootstrap_servers: as a user who only set IBSTREAM_STACK_KAFKA_PORT / IBSTREAM_STATE_DIR.
    settings = load_settings(state_dir=state_dir, stack_kafka_port=kafka_port, stack_controller_port=controller_port)
    return Demo(DemoConfig(live_view=False, directory=state_dir / "demo"), settings)


def _topics(broker_of: Demo, prefix: str) -> set[str]:
    """Topics under ``prefix`` on the broker ``broker_of`` uses."""
    settings = load_settings(kafka_bootstrap_servers=broker_of.bootstrap)
    return {name for name in create_admin(settings).list_topics(timeout=10).topics if name.startswith(prefix)}


def test_two_demos_with_their_own_state_dirs_each_use_and_stop_their_own_broker(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    first = _demo(tmp_path / "one", port, controller)
    second = _demo(tmp_path / "two", port, controller)  # same configured port: the first demo holds it
    second.prefix = "demo-second."
    try:
        first.prepare()
        assert first.bootstrap == f"127.0.0.1:{port}"
        assert first.env()["IBSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{port}"
        second.prepare()
        assert second.started_stack is not None and second.bootstrap != first.bootstrap
        assert second.env()["IBSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == second.bootstrap
        # Each demo's topics are on its own broker only.
        assert _topics(first, first.prefix) and not _topics(first, second.prefix)
        assert _topics(second, second.prefix) and not _topics(second, first.prefix)
        second_port = int(second.bootstrap.rsplit(":", 1)[1])
    finally:
        first.stop_started_broker()
        second.stop_started_broker()
    assert not port_open("127.0.0.1", port) and not port_open("127.0.0.1", second_port)
    assert first.started_stack is None and second.started_stack is None


def test_a_broker_already_running_for_the_state_dir_is_used_and_left_running(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    stack = KafkaStack(load_settings(state_dir=tmp_path, stack_kafka_port=port, stack_controller_port=controller))
    stack.up()
    try:
        demo = _demo(tmp_path, port, controller)
        demo.prepare()
        assert demo.bootstrap == stack.bootstrap and demo.started_stack is None
        demo.stop_started_broker()
        assert stack.status().running
    finally:
        stack.down()
