"""The package as a user gets it: the wheel built from this tree, a clean venv holding only that wheel and the locked
dependencies, and a short pipeline slice run by any launcher (that venv's `ibstream`, or the container image).

Builds are cached under ``.state/package/`` keyed by a digest of their inputs, so a warm machine reuses them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ibstream.config import PROJECT_ROOT, Settings
from ibstream.contracts.quotes import Quote
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from tooling.demo import session_start
from tooling.processes import ProcessGroup, free_port, http_status

from .kafka_helpers import consume_all

PACKAGE_STATE = PROJECT_ROOT / ".state" / "package"
#: What the wheel is built from: pyproject's package list and package data, plus the metadata files it reads.
WHEEL_INPUTS = ("pyproject.toml", "README.md", "avro", "ibstream", "producers", "streams", "consumers", "api", "ibsim",
                "tooling")  # fmt: skip
LOCK = PROJECT_ROOT / "requirements.lock"


def tree_digest(root: Path, entries: Iterable[str]) -> str:
    """sha256 over the relative path and content of every file under ``entries`` (links followed, caches skipped)."""
    digest = hashlib.sha256()
    for entry in entries:
        base = root / entry
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def run(argv: list[str], timeout: float = 900, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a build step; a failure raises with its output (what a CI log needs)."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result  # type: ignore[no-any-return]


def build_wheel() -> Path:
    """The ibstream wheel of this tree (``pip wheel`` from a copy of the wheel's inputs, so the checkout gets no
    build/ or egg-info), cached by the inputs' digest."""
    key = tree_digest(PROJECT_ROOT, WHEEL_INPUTS)[:16]
    out = PACKAGE_STATE / "wheels" / key
    wheels = sorted(out.glob("ibstream-*.whl")) if out.is_dir() else []
    if wheels:
        return wheels[0]
    source = PACKAGE_STATE / "src"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for entry in WHEEL_INPUTS:
        path = PROJECT_ROOT / entry
        if path.is_dir():
            # symlinks=True keeps ibstream/contracts/avro a link to ../../avro, as in the checkout.
            shutil.copytree(path, source / entry, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / entry)
    partial = out.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(partial), str(source)])
    shutil.rmtree(source, ignore_errors=True)
    partial.rename(out)
    prune_siblings(out)
    return sorted(out.glob("ibstream-*.whl"))[0]


def prune_siblings(keep: Path) -> None:
    """Drop the other cached versions next to ``keep`` (a venv is over 1 GB): only the current inputs' one stays."""
    for sibling in keep.parent.iterdir() if keep.parent.is_dir() else []:
        if sibling != keep:
            shutil.rmtree(sibling, ignore_errors=True)


def lock_key() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def wheelhouse() -> Path:
    """The locked wheels, downloaded once (hash-checked) for the clean venv and the image build alike."""
    directory = PACKAGE_STATE / "wheelhouse" / lock_key()
    if not directory.is_dir():
        partial = directory.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        pip = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
        ]
        run([*pip, "--dest", str(partial), "-r", str(LOCK)])
        partial.rename(directory)
        prune_siblings(directory)
    return directory


def clean_venv(wheel: Path) -> Path:
    """A venv with exactly the locked dependencies (hash-checked, from the wheelhouse) and the wheel, nothing from
    the checkout. The dependencies are cached by the lock's digest; the wheel is reinstalled when it changed."""
    venv = PACKAGE_STATE / "venvs" / lock_key()
    python = venv / "bin" / "python"
    if not (venv / ".deps-installed").is_file():
        prune_siblings(venv)
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:"]
        run([*pip, "--no-index", "--find-links", str(wheelhouse()), "-r", str(LOCK)])
        (venv / ".deps-installed").write_text(lock_key() + "\n")
    stamp = venv / ".wheel"
    if not stamp.is_file() or stamp.read_text() != wheel.name + wheel.parent.name:
        run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)])
        stamp.write_text(wheel.name + wheel.parent.name)
    return venv


def clean_env() -> dict[str, str]:
    """This environment without anything that would put the checkout on a child's import path."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


#: (name, `ibstream` arguments, the setting naming its health port) of every deployable the slice runs, in start order.
DEPLOYABLES = (
    ("api", ["run", "api"], "IBSTREAM_API_PORT"),
    ("sink", ["run", "sink"], "IBSTREAM_SINK_HEALTH_PORT"),
    ("agent0", ["run", "agent0"], "IBSTREAM_AGENT0_PORT"),
    ("streams", ["run", "streams"], "IBSTREAM_STREAMS_HEALTH_PORT"),
    ("execution", ["run", "execution"], "IBSTREAM_EXECUTION_HEALTH_PORT"),
    ("producer", ["run", "producer"], "IBSTREAM_PRODUCER_HEALTH_PORT"),
)

#: Builds the argv that runs `ibstream <arguments>` as process ``name`` with environment ``env``.
Launch = Callable[[str, list[str], dict[str, str]], list[str]]


@dataclass
class PipelineSlice:
    """ibsim and every deployable, each started through ``launch``, on a test's broker and topics: all healthy, the
    console served, and quotes from ibsim on Kafka that this tree's schemas decode."""

    launch: Launch
    settings: Settings
    group: ProcessGroup
    #: Settings of one process on top of the shared ones (e.g. its own state directory).
    own_env: Callable[[str], dict[str, str]] = lambda name: {}
    symbols: tuple[str, ...] = ("SPY",)
    ports: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        for name in ("sim", "control", *(name for name, _, _ in DEPLOYABLES)):
            self.ports.setdefault(name, free_port())
        env = {
            "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka.bootstrap_servers,
            "IBSTREAM_KAFKA_TOPIC_PREFIX": self.settings.kafka.topic_prefix,
            "IBSTREAM_IB_PORT": str(self.ports["sim"]),
            "IBSTREAM_SYMBOLS": ",".join(self.symbols),
            "IBSTREAM_TRADING_HOURS": "rth",
            "IBSTREAM_MARKET_CLOCK": "feed",
            "IBSTREAM_HEARTBEAT_SECONDS": "2",
            "IBSTREAM_AGENT0_URL": f"http://127.0.0.1:{self.ports['agent0']}",
            "IBSTREAM_AGENT0_API_URL": f"http://127.0.0.1:{self.ports['api']}",
            "IBSTREAM_API_JWT_SECRET": "package-slice-secret-of-at-least-32-bytes!",
            "IBSTREAM_LOG_LEVEL": "INFO",
        }
        env.update({setting: str(self.ports[name]) for name, _, setting in DEPLOYABLES})
        return env

    def health_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/health"

    def start(self, *, timeout: float = 180.0) -> None:
        env = self.env()
        start = session_start().replace(tzinfo=None).isoformat(timespec="seconds")
        sim = ["sim", "--port", str(self.ports["sim"]), "--control-port", str(self.ports["control"])]
        sim += ["--speed", "10", "--start", start, "--symbols", *self.symbols]
        sim_env = {**env, **self.own_env("ibsim")}
        self.group.start(
            "ibsim", self.launch("ibsim", sim, sim_env), env=sim_env, health_url=self.health_url("control")
        )
        self.group.wait_healthy("ibsim", timeout)
        token = self.token("service", env)
        for name, arguments, _ in DEPLOYABLES:
            own = {**env, **self.own_env(name), **({"IBSTREAM_AGENT0_TOKEN": token} if name == "streams" else {})}
            self.group.start(name, self.launch(name, arguments, own), env=own, health_url=self.health_url(name))
        for name, _, _ in DEPLOYABLES:
            self.group.wait_healthy(name, timeout)

    def token(self, role: str, env: dict[str, str]) -> str:
        argv = self.launch("token", ["token", "--role", role, "--subject", f"slice-{role}"], env)
        result = run(argv, timeout=120, env={**self.group.base_env, **env})
        return result.stdout.strip().splitlines()[-1]

    def check(self, *, timeout: float = 120.0) -> None:
        """The console's page is served (package data of api) and ibsim's quotes reach Kafka, written by the
        producer with the packaged schemas and decoded here with the checkout's."""
        assert http_status(f"http://127.0.0.1:{self.ports['api']}/console/") == 200
        topic = f"{self.settings.kafka.topic_prefix}md.quotes.v1"
        deadline = time.monotonic() + timeout
        messages = []
        while not messages and time.monotonic() < deadline:
            messages = consume_all(self.settings, topic, expected=3, timeout=10)
            for name in self.group.processes:
                assert self.group.processes[name].alive(), f"{name} died:\n{self.group.processes[name].log_tail()}"
        assert messages, f"no quotes on {topic} within {timeout:.0f}s:\n{self.group.processes['producer'].log_tail()}"
        codec = SingleObjectCodec(SchemaStore())
        quotes = [codec.decode(topic, Quote, m.value(), m.partition(), m.offset()) for m in messages]
        assert {quote.symbol for quote in quotes} <= set(self.symbols), quotes
