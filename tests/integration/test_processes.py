"""The process supervisor on a real child: ibsim started as `ibstream sim`, health-checked, killed, restarted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tooling.processes import ProcessError, ProcessGroup, free_port, http_status

pytestmark = pytest.mark.integration


def test_start_health_kill_restart_stop(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    control = free_port()
    health = f"http://127.0.0.1:{control}/health"
    sim = group.ibstream("ibsim", "sim", "--port", str(free_port()), "--control-port", str(control), health_url=health)
    try:
        group.wait_healthy("ibsim", timeout=30)
        first_pid = sim.pid
        group.kill("ibsim")
        assert not sim.alive() and sim.process is not None and sim.process.returncode == -9
        assert http_status(health) is None
        group.restart("ibsim")
        group.wait_healthy("ibsim", timeout=30)
        assert sim.pid != first_pid and sim.starts == 2
    finally:
        group.stop_all()
    assert not sim.alive()
    assert "ibsim listening" in sim.log_file.read_text()


def test_a_child_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    group.ibstream("broken", "sim", "--no-such-flag", health_url="http://127.0.0.1:1/health")
    with pytest.raises(ProcessError, match="no-such-flag"):
        group.wait_healthy("broken", timeout=20)
    group.stop_all()
