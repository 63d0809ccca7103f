"""One UAT session: the demo's pieces (topics, deployables as processes, API tokens) with per-session settings,
ibsim flags, a market-time schedule of actions and evidence read from the session's warehouse afterwards.

The harness composes :class:`tooling.demo.Demo` rather than changing it: the demo owns prefixes, ports, the
shared environment and the approve-as-a-trader loop; a session adds its settings (risk limits, approval mode,
market data type), ibsim's flags (partial fills, delayed-only, 24h) and where its market clock starts.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibstream.config import Settings, load_settings
from ibstream.exceptions import IbstreamError
from ibstream.market_hours import EXCHANGE_TZ
from tooling.demo import Demo, DemoConfig, get_json, post_json, session_start
from tooling.progress import current as progress
from tooling.uat.model import Evidence


class UatError(IbstreamError):
    """A UAT session could not run; the message says which step failed."""


@dataclass(frozen=True)
class SessionPlan:
    """How one session runs: clock, approval, settings and simulator flags."""

    name: str
    speed: float
    start: dt.time  # New York time the simulated clock starts at
    minutes: float  # simulated minutes the session lasts
    # manual: the harness approves every waiting run as a trader; policy: the rules decide; none: manual mode in
    # which nobody approves (the desk session trades only its own crafted orders).
    approve: str = "manual"
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "SPY", "QQQ")
    sim_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    gateway: str | None = None  # HOST:PORT of a real paper gateway instead of ibsim
    # Once every deployable is up, jump ibsim's clock forward to this New York time (if it is not there yet):
    # startup takes wall seconds, which are simulated hours at 600x, so the clock starts early and is set
    # to the scenario's start when the pipeline is ready.
    advance_to: dt.time | None = None


def http_json(url: str, token: str | None = None, timeout: float = 3.0) -> tuple[int, Any]:
    """(status, body) of a GET; an HTTP error's JSON body is returned with its status, not raised."""
    try:
        return 200, get_json(url, token, timeout)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None


class Session:
    """A running session. Use ``start()``, drive it, then ``finish()`` (always, e.g. in ``finally``)."""

    def __init__(self, plan: SessionPlan, settings: Settings, directory: Path, session_id: str) -> None:
        self.plan = plan
        self.settings = settings
        config = DemoConfig(
            speed=plan.speed,
            symbols=plan.symbols,
            approve="policy" if plan.approve == "policy" else "manual",
            fault_at=None,
            live_view=False,
            directory=directory,
        )
        self.demo = Demo(config, settings)
        # Unique per UAT session and plan: sessions may run concurrently within one second.
        self.demo.prefix = f"uat{session_id}.{plan.name}."
        self.demo.start = dt.datetime.combine(session_start(full_day=True).date(), plan.start, tzinfo=EXCHANGE_TZ)
        self.demo.end = self.demo.start + dt.timedelta(minutes=plan.minutes)
        self.log: list[str] = []
        self.actions_done: set[str] = set()
        self.failure: str | None = None
        self.ready_at: dt.datetime | None = None
        self.pipeline_stopped = False
        self.awaiting = ""  # what the session waits for now (the progress line says it)

    # --- environment and processes ---

    def env(self) -> dict[str, str]:
        env = {**self.demo.env(), **self.plan.env}
        if self.plan.gateway:
            host, _, port = self.plan.gateway.rpartition(":")
            env.update({"IBSTREAM_IB_HOST": host, "IBSTREAM_IB_PORT": port, "IBSTREAM_MARKET_CLOCK": "wall"})
        return env

    @property
    def api(self) -> str:
        return self.demo.api

    @property
    def control(self) -> str:
        return self.demo.control

    def note(self, text: str) -> None:
        now = self.market_time()
        stamp = f"{now.astimezone(EXCHANGE_TZ):%H:%M:%S} NY" if now else "--:--:--"
        self.log.append(f"{stamp}  {text}")
        # An event of the session: what it waited for before is over (the next wait says what comes).
        self.awaiting = ""
        progress().phase(f"session {self.plan.name} at {stamp}: {text.removeprefix(f'session {self.plan.name}: ')}")

    def waiting_for(self, what: str, doing: str = "") -> None:
        """Say on the progress line what the session waits for now (and what it is doing, if that changed)."""
        self.awaiting = what
        progress().phase(f"session {self.plan.name}: {doing}" if doing else f"session {self.plan.name}", what)

    def start(self) -> None:
        demo, env, ports = self.demo, self.env(), self.demo.ports
        demo.prepare()
        self.waiting_for("api, agent0 and streams healthy", "starting the deployables")
        # The deployables that do not talk to IB first, so ibsim's (fast) clock starts as late as possible.
        demo.group.ibstream("api", "run", "api", "--with-sink", env=env, health_url=f"{self.api}/health")
        for name in ("agent0", "streams"):
            demo.group.ibstream(
                name, "run", name, env=demo.process_env(name, env), health_url=f"http://127.0.0.1:{ports[name]}/health"
            )
        for name in ("api", "agent0", "streams"):
            demo.group.wait_healthy(name, 120)
        if not self.plan.gateway:
            self.waiting_for("ibsim healthy", "starting ibsim")
            start = demo.start.replace(tzinfo=None).isoformat(timespec="seconds")
            demo.group.ibstream(
                "ibsim",
                "sim",
                "--port",
                str(ports["sim"]),
                "--control-port",
                str(ports["control"]),
                "--speed",
                str(self.plan.speed),
                "--start",
                start,
                "--symbols",
                *self.plan.symbols,
                # The clock stands at the plan's start until every deployable is up (released below): at 600x a
                # slow start would otherwise eat the quarter hour before the open that market.open needs.
                "--hold-clock",
                *self.plan.sim_args,
                env=env,
                health_url=f"{self.control}/health",
            )
            demo.group.wait_healthy("ibsim", 30)
        self.waiting_for("execution and producer healthy (connected to IB)", "starting execution and producer")
        for name in ("execution", "producer"):
            demo.group.ibstream(
                name, "run", name, env=demo.process_env(name, env), health_url=f"http://127.0.0.1:{ports[name]}/health"
            )
        for name in ("execution", "producer"):
            demo.group.wait_healthy(name, 120)
        if not self.plan.gateway:
            self.sim("/clock/release", {})
        now = self.market_time()
        self.note(f"session {self.plan.name}: every deployable up (prefix {demo.prefix})")
        if self.plan.advance_to is not None and not self.plan.gateway and now is not None:
            target = self.at(self.plan.advance_to.isoformat(timespec="minutes"))
            if now < target:
                self.sim("/clock/advance", {"seconds": (target - now).total_seconds()})
                self.note(f"ibsim clock advanced to {self.plan.advance_to:%H:%M}")
        self.ready_at = self.market_time()

    def alive_check(self) -> None:
        for name, managed in self.demo.group.processes.items():
            if not managed.alive():
                raise UatError(f"{self.plan.name}: {name} died:\n{managed.log_tail(15)}")

    def stop_pipeline(self) -> None:
        """Stop the deployables in order (the sink drains before the warehouse is released); ibsim stays up, so
        its books can be compared with what the pipeline recorded."""
        if not self.pipeline_stopped:
            self.pipeline_stopped = True
            self.demo.stop_pipeline()

    def finish(self) -> None:
        """Stop the pipeline, then ibsim (safe to call twice)."""
        try:
            self.stop_pipeline()
        finally:
            self.demo.group.stop_all()

    # --- clock and schedule ---

    def market_time(self) -> dt.datetime | None:
        if self.plan.gateway:
            return dt.datetime.now(dt.UTC)
        return self.demo.sim_time(self.demo.sim_state())

    def at(self, hhmm: str) -> dt.datetime:
        return dt.datetime.combine(self.demo.start.date(), dt.time.fromisoformat(hhmm), tzinfo=EXCHANGE_TZ)

    def run_until(
        self, until: dt.datetime, actions: Sequence[tuple[str, Callable[[], None]]] = (), wall_timeout: float = 300.0
    ) -> None:
        """Drive the session until market time ``until``: approve waiting runs (manual), run each scheduled
        action once its market time ("HH:MM" New York) has come, and fail fast if a process dies."""
        deadline = time.monotonic() + wall_timeout
        started = time.monotonic()
        self._await_schedule(until, actions)
        while True:
            now = self.market_time()
            if now is not None:
                for when, action in actions:
                    key = f"{when}:{getattr(action, '__name__', '')}"
                    if key not in self.actions_done and now >= self.at(when):
                        self.actions_done.add(key)
                        action()
                        self._await_schedule(until, actions)
                progress().status(
                    f"market {now.astimezone(EXCHANGE_TZ):%H:%M:%S} NY, {time.monotonic() - started:.0f}s of at most "
                    f"{wall_timeout:.0f}s"
                )
            self._tend()
            if now is not None and now >= until:
                return
            if time.monotonic() > deadline:
                raise UatError(f"{self.plan.name}: market time did not reach {until:%H:%M} within {wall_timeout:.0f}s")
            time.sleep(0.3)

    def run_until_seen(self, seen: Callable[[], bool], what: str, wall_timeout: float) -> float | None:
        """Keep the market running past the plan's end (approving waiting runs) until ``seen()``; the wall seconds it
        took, or None when ``wall_timeout`` passed first (the judge then fails the scenario with its own reason)."""
        started = time.monotonic()
        self.waiting_for(what, "running the market on")
        while not seen():
            if time.monotonic() - started > wall_timeout:
                return None
            self._tend()
            time.sleep(0.3)
        return time.monotonic() - started

    def _tend(self) -> None:
        """One turn of a running session: approve the runs waiting (manual approval), fail fast if a process died."""
        if self.plan.approve == "manual":
            self.demo.approve_waiting_runs()
        self.alive_check()

    def _await_schedule(self, until: dt.datetime, actions: Sequence[tuple[str, Callable[[], None]]]) -> None:
        pending = [
            f"{getattr(action, '__name__', 'action')} at {when} NY"
            for when, action in actions
            if f"{when}:{getattr(action, '__name__', '')}" not in self.actions_done
        ]
        what = f"market time {until.astimezone(EXCHANGE_TZ):%H:%M} NY" + (f" (next: {pending[0]})" if pending else "")
        self.waiting_for(what, "running the market day")

    # --- ibsim and API actions ---

    def sim(self, path: str, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            return get_json(f"{self.control}{path}", timeout=10)
        return post_json(f"{self.control}{path}", body, timeout=10)

    def token(self, role: str) -> str:
        # The demo mints tokens with `ibstream token` against this session's JWT secret.
        return self.demo._token(role)

    def api_get(self, path: str, role: str = "viewer") -> tuple[int, Any]:
        return http_json(f"{self.api}{path}", self.token(role))

    def api_post(self, path: str, body: dict[str, Any], role: str) -> Any:
        return post_json(f"{self.api}{path}", body, self.token(role))

    def producer_health(self) -> dict[str, Any]:
        # /ready carries the producer's snapshot (subscriptions, stale symbols) with 200 or 503.
        _, body = http_json(f"http://127.0.0.1:{self.demo.ports['producer']}/ready")
        return body if isinstance(body, dict) else {}

    # --- evidence ---

    def warehouse_evidence(self, queries: Sequence[tuple[str, str]]) -> dict[str, Evidence]:
        """Run queries against this session's warehouse in a child process.

        chDB lets one process open one data directory, and UAT sessions each have their own; a child per session
        keeps the orchestrating process free to record the campaign in its own warehouse. Call after ``finish``
        (the API held the directory while it ran). Tables are unqualified: the session database is the default.
        """
        payload = json.dumps([[name, sql] for name, sql in queries])
        self.waiting_for(f"{len(queries)} evidence queries on the session's warehouse", "reading the evidence")
        result = subprocess.run(
            [sys.executable, "-m", "tooling.uat.evidence", "--state-dir", str(self.demo.directory)],
            input=payload,
            capture_output=True,
            text=True,
            timeout=120,
            env={**self.demo.group.base_env, **self.env()},
        )
        if result.returncode != 0:
            raise UatError(f"{self.plan.name}: evidence queries failed:\n{result.stderr[-2000:]}")
        answers: dict[str, dict[str, Any]] = json.loads(result.stdout)
        errors = [
            f"{name}: {answer['rows'][0][0]}" for name, answer in answers.items() if answer["columns"] == ["error"]
        ]
        if errors:
            raise UatError(f"{self.plan.name}: evidence queries failed: {'; '.join(errors)}")
        return {
            name: Evidence(name, "warehouse", sql, answers[name]["columns"], answers[name]["rows"])
            for name, sql in queries
        }


def own_broker_settings(directory: Path) -> Settings:
    """Settings for a dedicated local broker on free ports (the broker-restart scenario stops it)."""
    from tooling.processes import free_port

    port = free_port()
    return load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        state_dir=directory,
        stack_kafka_port=port,
        stack_controller_port=free_port(),
        stack_kafka_heap="384m",
    )
