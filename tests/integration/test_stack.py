"""`ibstream stack up|down|status` on its own ports and state dir: idempotent up, down stops only its broker."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ibstream.config import load_settings
from tooling.stack import KafkaStack, StackError

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_up_is_idempotent_and_down_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    settings = load_settings(state_dir=tmp_path, stack_kafka_port=port, stack_controller_port=_free_port())
    stack = KafkaStack(settings)
    assert not stack.status().running
    try:
        first = stack.up()
        assert first.running and first.pid is not None
        second = stack.up()
        assert second.pid == first.pid  # reports the running broker instead of starting another
        assert (tmp_path / "kafka" / "broker.log").stat().st_size > 0
        assert (tmp_path / "kafka" / "data" / "meta.properties").exists()
    finally:
        assert stack.down()
    assert not stack.status().running
    assert not stack.down()  # nothing of ours left to stop


def test_down_ignores_a_pid_file_pointing_at_someone_else(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, stack_kafka_port=_free_port(), stack_controller_port=_free_port())
    stack = KafkaStack(settings)
    (tmp_path / "kafka").mkdir(parents=True)
    (tmp_path / "kafka" / "broker.pid").write_text(str(os.getpid()))  # our own pytest process: not a broker
    assert stack.status().pid is None
    assert not stack.down()
    assert os.getpid()  # still alive


def test_up_refuses_a_port_taken_by_another_process(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = load_settings(state_dir=tmp_path, stack_kafka_port=port, stack_controller_port=_free_port())
        with pytest.raises(StackError, match="IBSTREAM_STACK_KAFKA_PORT"):
            KafkaStack(settings).up()


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    """One random cluster id in 64 starts with "-" (base64url); kafka-storage must not read it as an option."""
    import base64

    from tooling.stack import resolve_classpath

    settings = load_settings(state_dir=tmp_path, stack_kafka_port=_free_port(), stack_controller_port=_free_port())
    stack = KafkaStack(settings)
    stack.dir.mkdir(parents=True, exist_ok=True)
    stack._write_config()
    dashed = base64.urlsafe_b64encode(b"\xf8" + bytes(15)).rstrip(b"=").decode()
    assert dashed.startswith("-")
    stack._format_storage(resolve_classpath(stack.dir.parent / "maven"), cluster_id=dashed)
    assert f"cluster.id={dashed}" in (stack.data_dir / "meta.properties").read_text()
