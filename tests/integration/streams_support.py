"""Helpers for the streams integration tests: a Faust worker as a real subprocess, Agent0 on a real socket, produce,
read back."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from confluent_kafka import Consumer

from ibstream.config import PROJECT_ROOT, Settings, load_settings
from ibstream.contracts import Record, TopicSpec
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import consumer_config, create_producer
from ibstream.kafka.records import RecordProducer
from tests.integration.kafka_helpers import tracked, untrack

R = TypeVar("R", bound=Record)
CODEC = SingleObjectCodec(SchemaStore())
#: The JWT secret Agent0 verifies tokens with in these tests; workers present a service-role token signed with it.
AGENT0_SECRET = "streams-agent0-secret-" + "q" * 32


def agent0_settings(**overrides: Any) -> Settings:
    """Settings Agent0 (and a token issued for it) use in these tests."""
    return load_settings(api_jwt_secret=AGENT0_SECRET, **overrides)


def service_token(settings: Settings | None = None) -> str:
    """A service-role token, as streams' orchestration presents to Agent0."""
    from datetime import timedelta

    from api.auth import Role, issue_token

    return issue_token(settings or agent0_settings(), Role.SERVICE, "streams", timedelta(hours=1))


def settings_env(settings: Settings, **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "IBSTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "PYTHONUNBUFFERED": "1",
            "IBSTREAM_STREAMS_HEALTH_PORT": "0",  # any free port: tests run several workers at once
            "IBSTREAM_AGENT0_TOKEN": service_token(),
            # A stalled input partition is read again after 15 s instead of 60 (streams.stalls): inside the waits of
            # these tests, so a restart that loses a record (see wait_ready) heals and its error line is in the log.
            "IBSTREAM_STREAMS_STALL_SECONDS": "15",
        }
    )
    env.update({f"IBSTREAM_{key.upper()}": str(value) for key, value in extra.items()})
    return env


class StreamsWorker:
    """``python -m streams.app`` in a subprocess, logs to a file, stopped with SIGTERM (then killed)."""

    def __init__(self, settings: Settings, tmp_path: Path, agents: str, name: str = "w1", **env: Any) -> None:
        self.log_path = tmp_path / f"{name}.log"
        self.data_dir = tmp_path / f"{name}-data"
        self._env = settings_env(settings, state_dir=tmp_path, **env)
        self._agents = agents
        self.process: subprocess.Popen[bytes] | None = None
        self._ready_before = 0

    def start(self) -> StreamsWorker:
        self._ready_before = self.log().count("Worker ready")  # the log file is appended to by a restart
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.app",
                "--agents",
                self._agents,
                "--data-dir",
                str(self.data_dir),
                "--loglevel",
                "info",
            ],
            cwd=PROJECT_ROOT,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up (no commit, no LeaveGroup)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 120.0) -> StreamsWorker:
        """Until this start of the worker has joined its group and recovered its tables (Faust's "Worker ready").

        For a restart test whose subject is the state carried over: its next input then meets a worker in its steady
        state. A record produced while a restarted worker was still joining was, now and then under CI's load, never
        processed (in the outcomes, risk-account and trading-states restarts; ``streams.stalls`` now reads such a
        record again), which is not what those tests are about; ``test_streams_recovery`` keeps a record sent during
        the start."""
        deadline = time.monotonic() + timeout
        while self.log().count("Worker ready") <= self._ready_before:
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, f"not ready in {timeout} s: {self.log()[-3000:]}"
            time.sleep(0.2)
        return self

    def diagnosis(self, limit: int = 12_000) -> str:
        """For a failed assertion: the log since the worker was last ready (the recovery tables before it fill a short
        tail), and where our own code waits: the stacks that pass through it, of the threads and asyncio tasks mode's
        worker dumps on SIGUSR1 (an agent blocked on a send shows there)."""
        before = len(self.log())
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2.0)
        text = self.log()
        ready = text.rfind("Worker ready", 0, before)
        events = text[ready if ready >= 0 else 0 : before]
        tasks = re.split(r"\n(?=Stack for )", text[before:])
        frames = [
            "\n".join(line for line in task.splitlines() if line.lstrip().startswith("File "))
            for task in tasks
            if task.startswith("Stack for <Task") and "/streams/" in task
        ]
        return (events[-limit // 2 :] + "\n--- asyncio tasks in streams/ code:\n" + "\n\n".join(frames))[-limit:]


def log_records(log: str) -> list[dict[str, Any]]:
    """The JSON records of a worker's log, in order (Faust's terminal codes may precede one; other lines are
    skipped)."""
    found = []
    for line in log.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            found.append(json.loads(line[start:]))
        except ValueError:
            continue
    return found


def producer(settings: Settings) -> RecordProducer:
    return RecordProducer(create_producer(settings, "events", **{"linger.ms": 0}), CODEC, settings.kafka.topic_prefix)


class TopicReader:
    """A consumer kept open across polls, decoding one topic's records."""

    def __init__(self, settings: Settings, spec: TopicSpec[R]) -> None:
        self._spec = spec
        self.topic = settings.kafka.topic_prefix + spec.name
        self._consumer = tracked(
            Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False}))
        )
        self._consumer.subscribe([self.topic])
        self.records: list[Any] = []
        self.arrivals: list[float] = []

    def poll_until(self, done: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.records) and time.monotonic() < deadline:
            message = self._consumer.poll(0.05)
            if message is None or message.error():
                continue
            self.records.append(
                CODEC.decode(self.topic, self._spec.record, message.value(), message.partition(), message.offset())
            )
            self.arrivals.append(time.monotonic())
        return self.records

    def wait_for(self, count: int, timeout: float) -> list[Any]:
        return self.poll_until(lambda records: len(records) >= count, timeout)

    def close(self) -> None:
        untrack(self._consumer)


def free_port() -> int:
    """A loopback port nobody listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent0Server:
    """The real Agent0 app (``api.agent0.create_app``, SQLite plan store) on uvicorn in a thread, on a real socket,
    verifying tokens signed with ``AGENT0_SECRET``. ``runs`` is its run lookup (by default: no run is known)."""

    def __init__(self, tmp_path: Path, port: int | None = None, runs: Callable[[str, str], Any] | None = None) -> None:
        from api.agent0 import PlanStore, create_app

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lookup = runs if runs is not None else (lambda run_id, token: None)
        app = create_app(agent0_settings(), PlanStore(tmp_path / "agent0.sqlite"), lookup)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, name="agent0", daemon=True)

    def start(self) -> Agent0Server:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self._server.started, "Agent0 did not start within 10 s"
        return self

    def stop(self) -> None:
        """Close the socket: from now on a connection is refused."""
        self._server.should_exit = True
        self._thread.join(10)
