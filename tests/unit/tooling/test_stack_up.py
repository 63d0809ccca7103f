"""``KafkaStack.up`` stops a broker that did not answer in time, so a late one cannot hold the port afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ibstream.config import load_settings
from tooling.stack import KafkaStack, StackError


def test_a_broker_that_does_not_answer_in_time_is_stopped_before_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = KafkaStack(load_settings(state_dir=tmp_path))
    # A process that would go on running, standing in for a broker that has not answered yet.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stopped: list[bool] = []

    def down(timeout: float = 30.0) -> bool:
        process.kill()
        process.wait(5)
        stopped.append(True)
        return True

    monkeypatch.setattr(stack, "launch", lambda cluster_id=None: process)
    monkeypatch.setattr(stack, "_answers_metadata", lambda: False)
    monkeypatch.setattr(stack, "down", down)
    try:
        with pytest.raises(StackError, match="did not answer within 1s"):
            stack.up(timeout=1.0)
        assert stopped == [True]
        assert process.poll() is not None
    finally:
        if process.poll() is None:
            process.kill()
