"""Running the deployables as real processes (demo, UAT, end-to-end and chaos tests): start `ibstream …`
commands with their own environment and log file, wait until their health endpoint answers, stop them gracefully
or kill them hard, restart them.

Children get their own session, so a Ctrl-C in the terminal reaches only the orchestrator, which then stops them
in order instead of all of them dying at once mid-write.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ibstream.exceptions import IbstreamError


class ProcessError(IbstreamError):
    """A managed process failed to start, become healthy or stop."""


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


@dataclass
class ManagedProcess:
    """One child process and how to reach it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """The processes of one run; ``stop_all`` stops them in reverse start order."""

    log_dir: Path
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def ibstream(
        self, name: str, *arguments: str, env: dict[str, str] | None = None, health_url: str | None = None
    ) -> ManagedProcess:
        """Start `ibstream <arguments>` with this interpreter (no PATH lookup)."""
        return self.start(name, [sys.executable, "-m", "ibstream.cli", *arguments], env=env, health_url=health_url)

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, health_url: str | None = None
    ) -> ManagedProcess:
        if name in self.processes and self.processes[name].alive():
            raise ProcessError(f"{name} is already running (pid {self.processes[name].pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        managed = self.processes.get(name) or ManagedProcess(
            name, argv, {**self.base_env, **(env or {})}, self.log_dir / f"{name}.log", health_url
        )
        self.processes[name] = managed
        self._spawn(managed)
        return managed

    def _spawn(self, managed: ManagedProcess) -> None:
        with managed.log_file.open("ab") as log:
            managed.process = subprocess.Popen(
                managed.argv,
                env=managed.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        managed.starts += 1

    def wait_healthy(self, name: str, timeout: float = 60.0, path: str | None = None) -> None:
        """Wait until the process's health URL (or ``path`` on the same host) answers 200."""
        managed = self.processes[name]
        if managed.health_url is None:
            raise ProcessError(f"{name} has no health URL")
        url = managed.health_url if path is None else managed.health_url.rsplit("/", 1)[0] + path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not managed.alive():
                raise ProcessError(
                    f"{name} exited with {managed.process.returncode if managed.process else '?'}:\n"
                    f"{managed.log_tail()}"
                )
            if http_status(url) == 200:
                return
            time.sleep(0.2)
        raise ProcessError(f"{name} not healthy at {url} within {timeout:.0f}s:\n{managed.log_tail()}")

    def signal(self, name: str, signum: int) -> None:
        managed = self.processes[name]
        if managed.alive() and managed.process is not None:
            os.killpg(managed.process.pid, signum)

    def kill(self, name: str) -> None:
        """SIGKILL: a crash, no clean-up."""
        managed = self.processes[name]
        if managed.process is None:
            return
        self.signal(name, signal.SIGKILL)
        managed.process.wait(10)

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        managed = self.processes.get(name)
        if managed is None or managed.process is None:
            return None
        if managed.alive():
            self.signal(name, signal.SIGTERM)
            try:
                managed.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(name, signal.SIGKILL)
                managed.process.wait(10)
        return managed.process.returncode

    def restart(self, name: str) -> ManagedProcess:
        managed = self.processes[name]
        if managed.alive():
            self.stop(name)
        self._spawn(managed)
        return managed

    def stop_all(self, timeout: float = 20.0) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name, timeout)
