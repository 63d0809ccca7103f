"""`ibstream demo`: one simulated trading session through the whole pipeline, on embedded defaults.

It starts the local Kafka broker, ibsim with an accelerated clock, and every deployable as its own process (as in
production): producer, streams, Agent0, execution, and the API with the embedded warehouse sink. A live terminal
view follows the session from the open to the close; the demo acts as the trader and approves runs through the API,
drops the gateway's connections once mid-session to show recovery, and ends with a summary read from the
warehouse, which it leaves in place for `ibstream audit`. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ibstream.config import Settings, get_settings, load_settings
from ibstream.exceptions import IbstreamError
from ibstream.kafka.clients import broker_answers, create_admin
from ibstream.kafka.topics import catalogue, ensure_topics
from ibstream.market_hours import EXCHANGE_TZ, latest_session
from tooling.processes import ProcessGroup, free_port
from tooling.stack import KafkaStack, port_open

DEMO_SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

if TYPE_CHECKING:
    from ibstream.warehouse import Warehouse

#: Each recorded order with its parent leg's final status (the summary counts them; the demo test checks each).
_PARENT_FINAL_STATUS = (
    "SELECT order_id, argMax(status, event_time) AS status FROM DB.orders_events_v1 FINAL WHERE leg = 'parent' "
    "GROUP BY order_id"
)


class DemoError(IbstreamError):
    """The demo could not run; the message says which part failed."""


# --- small HTTP and metrics helpers --------------------------------------------------------------------------


def get_json(url: str, token: str | None = None, timeout: float = 3.0) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict[str, Any], token: str | None = None, timeout: float = 5.0) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        try:
            samples.append((match.group(1), labels, float(match.group(3))))
        except ValueError:
            continue
    return samples


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample, sample_labels, value in samples
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def histogram_quantile(samples: list[tuple[str, dict[str, str], float]], name: str, quantile: float) -> float | None:
    """The quantile of a Prometheus histogram (all label sets summed), interpolated inside its bucket."""
    buckets: dict[float, float] = {}
    for sample, labels, value in samples:
        if sample == f"{name}_bucket":
            bound = math.inf if labels.get("le") == "+Inf" else float(labels.get("le", "nan"))
            buckets[bound] = buckets.get(bound, 0.0) + value
    if not buckets or buckets.get(math.inf, 0.0) == 0:
        return None
    total = buckets[math.inf]
    rank = quantile * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in sorted(buckets):
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            span = count - previous_count
            return previous_bound + (bound - previous_bound) * ((rank - previous_count) / span if span else 1.0)
        previous_bound, previous_count = bound, count
    return None


def session_start(today: dt.date | None = None, *, full_day: bool = False) -> dt.datetime:
    """The open (New York) of the most recent trading day on or before ``today`` (the exchange's calendar: no
    weekends or holidays). With ``full_day``, the most recent day that closes at the regular 16:00 (no half day):
    what a plan with fixed times of day (a UAT session near the close) needs."""
    day = today or dt.datetime.now(EXCHANGE_TZ).date()
    session = latest_session(day)
    while full_day and session.early_close:
        session = latest_session(session.day - dt.timedelta(days=1))
    return session.open.astimezone(EXCHANGE_TZ)


def session_close(day: dt.date) -> dt.datetime:
    """The close (New York) of the trading day ``day``, or of the last one before it."""
    return latest_session(day).close.astimezone(EXCHANGE_TZ)


# --- the run -------------------------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    speed: float = 120.0
    symbols: tuple[str, ...] = DEMO_SYMBOLS
    approve: str = "manual"  # the demo approves through the API as a trader; "policy" lets the rules decide
    fault_at: dt.time | None = dt.time(11, 0)  # gateway connections dropped once (None: no fault)
    keep: bool = False
    live_view: bool = True
    directory: Path | None = None
    session_minutes: float | None = None  # shorter session (tests): minutes of simulated time from the open
    signal_expiry_seconds: int = 1800  # market seconds a signal stays actionable (approval window)


@dataclass
class Demo:
    config: DemoConfig
    settings: Settings = field(default_factory=get_settings)

    def __post_init__(self) -> None:
        self.directory = self.config.directory or (self.settings.state_dir / "demo")
        self.prefix = f"demo{dt.datetime.now(dt.UTC).strftime('%Y%m%d%H%M%S')}."
        self.group = ProcessGroup(self.directory / "logs")
        self.ports = {
            name: free_port()
            for name in ("sim", "control", "producer", "execution", "agent0", "api", "streams", "sink")
        }
        self.jwt_secret = secrets.token_urlsafe(48)
        self.tokens: dict[str, str] = {}
        self.start = session_start()
        minutes = self.config.session_minutes
        close = session_close(self.start.date())
        self.end = min(close, self.start + dt.timedelta(minutes=minutes)) if minutes else close
        self.approved: set[str] = set()
        self.fault_done = self.config.fault_at is None
        self._feed_ready_since: float | None = None
        self.events: list[str] = []
        self.metrics: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        #: The brokers every process of this demo uses: the one it started, or the one the settings name.
        self.bootstrap = self.settings.kafka.bootstrap_servers
        #: The broker this demo started (stopped at its end unless ``keep``); None when it used a running one.
        self.started_stack: KafkaStack | None = None

    def note(self, event: str) -> None:
        """An event for the live view's panel; printed as it happens when there is no live view (no terminal)."""
        self.events.append(event)
        if not self.config.live_view:
            print(event, flush=True)

    # env shared by every deployable
    def env(self) -> dict[str, str]:
        return {
            "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "IBSTREAM_KAFKA_TOPIC_PREFIX": self.prefix,
            # Topics the deployables create themselves (Faust's changelogs) get the catalogue's replication: on a
            # cluster, a changelog with one replica would stop streams whenever its broker is down.
            "IBSTREAM_KAFKA_TOPIC_REPLICATION": str(self.settings.kafka.topic_replication),
            "IBSTREAM_STATE_DIR": str(self.directory),
            "IBSTREAM_WAREHOUSE_DIR": str(self.directory / "warehouse"),
            "IBSTREAM_IB_PORT": str(self.ports["sim"]),
            "IBSTREAM_SYMBOLS": ",".join(self.config.symbols),
            "IBSTREAM_TRADING_HOURS": "rth",
            # ibsim's clock runs faster than the wall: quote ages and expiries follow the producer's market time.
            "IBSTREAM_MARKET_CLOCK": "feed",
            # Signals stay actionable 30 market minutes (15 wall seconds at 120x) so a person could approve them.
            "IBSTREAM_SIGNAL_EXPIRY_SECONDS": str(self.config.signal_expiry_seconds),
            # ibsim pushes quotes every 0.1 wall seconds, which is 12 market seconds at 120x: judge freshness
            # as half a wall second of market time, so the stale-quote gate stays meaningful at any speed.
            "IBSTREAM_RISK_QUOTE_MAX_AGE_SECONDS": str(max(10.0, self.config.speed * 0.5)),
            "IBSTREAM_STALE_AFTER_SECONDS": "5",
            "IBSTREAM_HEARTBEAT_SECONDS": "2",
            "IBSTREAM_IB_RECONNECT_CAP_SECONDS": "2",
            "IBSTREAM_APPROVAL_MODE": "policy" if self.config.approve == "policy" else "manual",
            "IBSTREAM_AGENT0_URL": f"http://127.0.0.1:{self.ports['agent0']}",
            "IBSTREAM_AGENT0_PORT": str(self.ports["agent0"]),
            # Agent0 asks the API whether a plan's run is approved (POST /v1/execute).
            "IBSTREAM_AGENT0_API_URL": f"http://127.0.0.1:{self.ports['api']}",
            "IBSTREAM_PRODUCER_HEALTH_PORT": str(self.ports["producer"]),
            "IBSTREAM_EXECUTION_HEALTH_PORT": str(self.ports["execution"]),
            "IBSTREAM_STREAMS_HEALTH_PORT": str(self.ports["streams"]),
            "IBSTREAM_SINK_HEALTH_PORT": str(self.ports["sink"]),
            "IBSTREAM_API_PORT": str(self.ports["api"]),
            "IBSTREAM_API_JWT_SECRET": self.jwt_secret,
            "IBSTREAM_SPANS_FILE": str(self.directory / "spans.jsonl"),
        }

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def console(self) -> str:
        """The operator console's charts page (the session's bars, signals, entries, stops, fills and P&L)."""
        return f"{self.api}/console/#/charts"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.ports['control']}"

    def _token(self, role: str) -> str:
        if role not in self.tokens:
            result = subprocess.run(
                [sys.executable, "-m", "ibstream.cli", "token", "--role", role, "--subject", f"demo-{role}"],
                env={**self.group.base_env, **self.env()},
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            self.tokens[role] = result.stdout.strip()
        return self.tokens[role]

    # --- lifecycle ---

    def prepare(self) -> None:
        if self.directory.exists():
            # A demo is a fresh session each time; the previous one's warehouse is replaced.
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        self.bootstrap = self._choose_broker()
        # The demo's own settings, security included (a broker with SASL needs its operator's principal here).
        own = self.settings.with_overrides(kafka_bootstrap_servers=self.bootstrap, kafka_topic_prefix=self.prefix)
        ensure_topics(create_admin(own), catalogue(self.prefix), replication=own.kafka.topic_replication)
        self.note(f"topics created under prefix {self.prefix}")

    def _choose_broker(self) -> str:
        """The brokers named by ``IBSTREAM_KAFKA_BOOTSTRAP_SERVERS`` when it is set and they answer; otherwise the
        local broker of this state directory: already running, or started now (on the configured port, or on free
        ports when another process holds it, so two demos with their own ``IBSTREAM_STATE_DIR`` run side by side).
        """
        configured = self.settings.kafka.bootstrap_servers
        if "bootstrap_servers" in self.settings.kafka.model_fields_set:
            if broker_answers(self.settings):
                self.note(f"using the Kafka broker at {configured}")
                return configured
            self.note(f"no Kafka broker answers at {configured}: starting the local one")
        stack = KafkaStack(self.settings)
        status = stack.status()
        if status.running:
            self.note(f"using the local Kafka broker already running on {status.bootstrap}")
            return status.bootstrap
        if port_open(stack.host, stack.port) or port_open(stack.host, stack.controller_port):
            stack = KafkaStack(
                self.settings.with_overrides(stack_kafka_port=free_port(), stack_controller_port=free_port())
            )
        status = stack.up()
        self.started_stack = stack
        self.note(f"started the local Kafka broker on {status.bootstrap} (state {stack.dir})")
        return status.bootstrap

    def stop_started_broker(self) -> None:
        """Stop the broker this demo started, and say so (a broker it found running is left alone)."""
        if self.started_stack is None:
            return
        stopped = self.started_stack.down()
        if stopped:
            print(f"stopped the Kafka broker this demo started on {self.started_stack.bootstrap}")
        self.started_stack = None

    #: How long each deployable may take to answer its health check at startup.
    startup_timeout = 90.0

    def sim_args(self) -> list[str]:
        """ibsim options beyond port, speed, start and symbols (a campaign adds its seed and tick rate)."""
        return []

    def process_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """A deployable's environment: streams also gets the service-role token Agent0 requires (only streams)."""
        if name == "streams":
            return {**env, "IBSTREAM_AGENT0_TOKEN": self._token("service")}
        return env

    def execution_env(self, env: dict[str, str]) -> dict[str, str]:
        """The execution process's environment at its first start (a campaign adds its hooks)."""
        return env

    def deployable_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """One deployable's environment at its first start: the shared one (a run with Kafka identities gives each
        deployable its own principal here)."""
        return self.execution_env(env) if name == "execution" else self.process_env(name, env)

    def start_processes(self) -> None:
        env = self.env()
        start = self.start.replace(tzinfo=None).isoformat(timespec="seconds")
        self.group.ibstream(
            "ibsim",
            "sim",
            "--port",
            str(self.ports["sim"]),
            "--control-port",
            str(self.ports["control"]),
            "--speed",
            str(self.config.speed),
            "--start",
            start,
            "--hold-clock",
            "--symbols",
            *self.config.symbols,
            *self.sim_args(),
            env=env,
            health_url=f"{self.control}/health",
        )
        self.group.wait_healthy("ibsim", 30)
        self.group.ibstream(
            "api", "run", "api", "--with-sink", env=self.deployable_env("api", env), health_url=f"{self.api}/health"
        )
        for name in ("agent0", "streams", "execution"):
            self.group.ibstream(
                name,
                "run",
                name,
                env=self.deployable_env(name, env),
                health_url=f"http://127.0.0.1:{self.ports[name]}/health",
            )
        # Everything downstream is healthy before the producer starts: no order routes (nor a campaign's first-start
        # crash hook fires) while startup still waits for a slow API on a loaded machine.
        for name in ("api", "agent0", "streams", "execution"):
            self.group.wait_healthy(name, self.startup_timeout)
        self.group.ibstream(
            "producer",
            "run",
            "producer",
            env=self.deployable_env("producer", env),
            health_url=f"http://127.0.0.1:{self.ports['producer']}/health",
        )
        self.group.wait_healthy("producer", self.startup_timeout)
        # The session starts now: however long startup took on a loaded machine, no deployable missed the open.
        post_json(f"{self.control}/clock/release", {})
        self.on_started()

    def on_started(self) -> None:
        """Every deployable is up: tell the user where the console is."""
        self.note("all deployables up")
        token_file = self.directory / "trader.token"
        token_file.write_text(self._token("trader") + "\n")
        token_file.chmod(0o600)
        self.note(f"console (charts, approvals, orders): {self.console}  sign-in token: {token_file}")

    def sim_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = get_json(f"{self.control}/state")
            return state
        except (OSError, ValueError):
            return {}

    def sim_time(self, state: dict[str, Any]) -> dt.datetime | None:
        raw = state.get("sim_time") or state.get("time") or state.get("now")
        if raw is None:
            return None
        if isinstance(raw, int | float):
            return dt.datetime.fromtimestamp(raw, dt.UTC)
        try:
            return dt.datetime.fromisoformat(str(raw))
        except ValueError:
            return None

    def scrape(self) -> None:
        for name in ("producer", "execution", "api"):
            port = self.ports[name]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    self.metrics[name] = parse_prometheus(response.read().decode())
            except (OSError, ValueError):
                continue

    def approve_waiting_runs(self) -> None:
        if self.config.approve != "manual":
            return
        try:
            page = get_json(f"{self.api}/v1/runs?state=awaiting_approval&limit=50", self._token("viewer"))
        except (OSError, ValueError, urllib.error.HTTPError):
            return
        for run in page.get("items", []):
            run_id = run.get("run_id")
            if not run_id or run_id in self.approved:
                continue
            try:
                post_json(
                    f"{self.api}/v1/runs/{run_id}/approve", {"reason": "demo trader approves"}, self._token("trader")
                )
                self.approved.add(run_id)
            except (OSError, ValueError, urllib.error.HTTPError) as error:
                self.note(f"approve {run_id[:8]} failed: {error}")

    def _feed_flowing(self) -> bool:
        """The producer is ready with ticks for every symbol, and has been for a wall second (a bar has landed)."""
        try:
            snapshot = get_json(f"http://127.0.0.1:{self.ports['producer']}/ready")
        except (OSError, ValueError):
            self._feed_ready_since = None
            return False
        ticking = set(snapshot.get("tick_age_seconds", {})) >= set(self.config.symbols)
        if not ticking or snapshot.get("stale_symbols"):
            self._feed_ready_since = None
            return False
        if self._feed_ready_since is None:
            self._feed_ready_since = time.monotonic()
        return time.monotonic() - self._feed_ready_since >= 1.0

    def maybe_inject_fault(self, now: dt.datetime | None) -> None:
        if self.fault_done or now is None or self.config.fault_at is None:
            return
        # The drop shows recovery only for symbols that already had bars: at high speed a slow start can reach the
        # fault time before the producer's last subscription delivers, and a symbol with no bar yet has no gap.
        if now.astimezone(EXCHANGE_TZ).time() >= self.config.fault_at and self._feed_flowing():
            post_json(f"{self.control}/faults/drop_connections", {})
            self.fault_done = True
            self.note(f"{now.astimezone(EXCHANGE_TZ):%H:%M} gateway dropped every connection (fault)")

    def run_session(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        with (
            Live(self.render(None, {}), console=console, refresh_per_second=2, transient=False)
            if self.config.live_view
            else _NoLive() as live
        ):
            while True:
                state = self.sim_state()
                now = self.sim_time(state)
                self.maybe_inject_fault(now)
                self.approve_waiting_runs()
                self.scrape()
                live.update(self.render(now, state))
                for name, managed in self.group.processes.items():
                    if not managed.alive():
                        raise DemoError(f"{name} died:\n{managed.log_tail()}")
                if now is not None and now >= self.end:
                    break
                time.sleep(1.0)
        # Give the last fills and records a moment to land after the close.
        time.sleep(5)

    def render(self, now: dt.datetime | None, state: dict[str, Any]) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        progress = 0.0
        if now is not None:
            progress = max(0.0, min(1.0, (now - self.start).total_seconds() / (self.end - self.start).total_seconds()))
        header = Table.grid(padding=(0, 2))
        header.add_row(
            f"[bold]ibstream demo[/] {self.start:%Y-%m-%d}",
            f"market {now.astimezone(EXCHANGE_TZ):%H:%M:%S} NY" if now else "market …",
            f"speed {self.config.speed:g}×",
            ProgressBar(total=1.0, completed=progress, width=40),
        )
        producer = self.metrics.get("producer", [])
        execution = self.metrics.get("execution", [])
        stages = Table(title="pipeline", expand=True)
        for column in ("stage", "figures"):
            stages.add_column(column)
        stages.add_row(
            "IB feed",
            f"connected={metric_sum(producer, 'ibstream_ib_connected'):.0f}  "
            f"reconnects={metric_sum(producer, 'ibstream_ib_reconnects_total'):.0f}",
        )
        stages.add_row("quotes", f"{metric_sum(producer, 'ibstream_quotes_published_total'):,.0f} published")
        stages.add_row(
            "bars",
            f"live {metric_sum(producer, 'ibstream_bars_published_total', source='live'):,.0f}  "
            f"backfill {metric_sum(producer, 'ibstream_bars_published_total', source='backfill'):,.0f}",
        )
        stages.add_row(
            "gaps",
            f"backfilled {metric_sum(producer, 'ibstream_gaps_total', state='backfilled'):.0f}  "
            f"unrecoverable {metric_sum(producer, 'ibstream_gaps_total', state='unrecoverable'):.0f}",
        )
        stages.add_row("approvals", f"{len(self.approved)} runs approved by the demo trader ({self.config.approve})")
        outcomes = {
            labels.get("outcome", "?"): value
            for name, labels, value in execution
            if name == "ibstream_execution_orders_total"
        }
        stages.add_row("orders", "  ".join(f"{k}={v:.0f}" for k, v in sorted(outcomes.items())) or "none yet")
        latency = histogram_quantile(execution, "ibstream_execution_intent_to_ack_seconds", 0.5)
        stages.add_row("intent→ack p50", f"{latency * 1000:.1f} ms" if latency is not None else "–")
        log = Table(title="events", expand=True, show_header=False)
        log.add_column("event")
        for event in self.events[-6:]:
            log.add_row(event)
        return Group(header, stages, log)

    def ibsim_orders(self) -> list[dict[str, Any]]:
        """ibsim's order book: every order ever placed at the simulated broker."""
        orders: list[dict[str, Any]] = get_json(f"{self.control}/orders")
        return orders

    def stop_pipeline(self) -> None:
        # Order matters: stop the sources first, then let the sink drain, then release the warehouse.
        for name in ("producer", "streams", "agent0", "execution"):
            self.group.stop(name)
        time.sleep(3)
        self.group.stop("api")

    def _warehouse(self) -> tuple[Warehouse, str]:
        """The demo's embedded warehouse (opened, migrated) and its database name."""
        from ibstream.warehouse import Warehouse

        settings = load_settings(
            state_dir=self.directory, warehouse_dir=self.directory / "warehouse", kafka_topic_prefix=self.prefix
        )
        return Warehouse.open(settings), settings.warehouse.database

    def recorded_parent_orders(self) -> dict[str, str]:
        """Every order the warehouse recorded, by order id, with its parent leg's final status."""
        warehouse, database = self._warehouse()
        try:
            rows = warehouse.query(_PARENT_FINAL_STATUS.replace("DB.", f"{database}.")).rows
        finally:
            # chDB holds one directory per process: left open, no other embedded warehouse could open after this.
            warehouse.close()
        return {str(order_id): str(status) for order_id, status in rows}

    def summary(self) -> dict[str, Any]:
        warehouse, database = self._warehouse()

        def one(sql: str) -> list[tuple[Any, ...]]:
            try:
                return warehouse.query(sql.replace("DB.", f"{database}.")).rows
            except Exception as error:  # a missing table or column must not hide the rest of the summary
                return [("error", str(error)[:120])]

        figures: dict[str, Any] = {
            "quotes": one("SELECT count() FROM DB.md_quotes_v1 FINAL"),
            "bars_by_source": one("SELECT source, count() FROM DB.md_bars_5s_v1 FINAL GROUP BY source ORDER BY source"),
            "gaps_by_final_state": one(
                "SELECT state, count() FROM (SELECT gap_id, argMax(state, updated_time) AS state "
                "FROM DB.md_gaps_v1 FINAL GROUP BY gap_id) GROUP BY state ORDER BY state"
            ),
            "signals_by_strategy": one(
                "SELECT strategy, count() FROM DB.signals_v1 FINAL GROUP BY strategy ORDER BY strategy"
            ),
            "runs_by_final_state": one(
                "SELECT state, count() FROM (SELECT run_id, argMax(state, time) AS state "
                "FROM DB.orchestration_runs_v1 FINAL GROUP BY run_id) GROUP BY state ORDER BY state"
            ),
            "orders_by_final_status": one(
                f"SELECT status, count() FROM ({_PARENT_FINAL_STATUS}) GROUP BY status ORDER BY status"
            ),
            "fills": one("SELECT count(), sum(quantity), sum(commission) FROM DB.executions_v1 FINAL"),
            "risk_rejections_by_check": one(
                "SELECT check.name, count() FROM DB.risk_decisions_v1 FINAL ARRAY JOIN checks AS check "
                "WHERE NOT check.passed GROUP BY check.name ORDER BY count() DESC"
            ),
            "realized_pnl": one("SELECT sum(realized_pnl) FROM DB.executions_v1 FINAL"),
            "intent_to_decision_ms_p50_p99": one(
                "SELECT quantile(0.5)(d), quantile(0.99)(d) FROM (SELECT dateDiff('microsecond', intent_time, "
                "decided_time) / 1000 AS d FROM DB.risk_decisions_v1 FINAL)"
            ),
            "sink_lag_ms_p50_p99": one(
                "SELECT quantile(0.5)(d), quantile(0.99)(d) FROM (SELECT dateDiff('microsecond', _kafka_ts, "
                "_inserted_at) / 1000 AS d FROM DB.md_quotes_v1 FINAL)"
            ),
        }
        execution = self.metrics.get("execution", [])
        for quantile in (0.5, 0.99):
            value = histogram_quantile(execution, "ibstream_execution_intent_to_ack_seconds", quantile)
            figures[f"intent_to_ack_p{int(quantile * 100)}_ms"] = round(value * 1000, 2) if value else None
        figures["approved_by_demo"] = len(self.approved)
        warehouse.close()
        return figures

    def print_summary(self, figures: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"session summary ({self.start:%Y-%m-%d}, prefix {self.prefix})")
        table.add_column("figure")
        table.add_column("value")
        for name, text in summary_rows(figures):
            table.add_row(name, text)
        console = Console()
        console.print(table)
        console.print(
            f"Warehouse kept in {self.directory / 'warehouse'}; explore it with\n"
            f"  IBSTREAM_WAREHOUSE_DIR={self.directory / 'warehouse'} ibstream audit order-trail\n"
            f"Logs: {self.group.log_dir}"
        )
        console.print(
            "Charts of the session in the operator console (bars, signals, entries, stops, fills, P&L)"
            + ("" if self.config.keep else "; they need the API: run `ibstream demo --keep` to keep it open")
            + ":"
        )
        for what, url in console_chart_urls(self.api, self.config.symbols):
            console.print(f"  {what:16} {url}", soft_wrap=True, highlight=False)
        (self.directory / "summary.json").write_text(json.dumps(figures, indent=2, default=str))

    def keep_running(self) -> None:
        self.group.ibstream("api", "run", "api", "--with-sink", env=self.env(), health_url=f"{self.api}/health")
        self.group.wait_healthy("api", 60)
        print(
            f"Charts and the rest of the operator console: {self.console}\n"
            f"  sign in with this trader token: {self._token('trader')}\n"
            f"API documentation: {self.api}/docs\nCtrl-C to stop everything."
        )
        while True:
            time.sleep(1)


def console_chart_urls(api: str, symbols: Sequence[str], interval_seconds: int = 60) -> list[tuple[str, str]]:
    """(what, URL) of the operator console's pages that chart a session: the charts page per symbol (its price with
    signals, entries, stops, targets and fills, and the P&L pane; hash route ``#/charts?symbol=…&interval=…`` of
    api/console/static/js/app.js), then positions and orders."""
    base = f"{api}/console/"
    links = [
        (f"{symbol} chart", f"{base}#/charts?symbol={urllib.parse.quote(symbol)}&interval={interval_seconds}")
        for symbol in symbols
    ]
    return [*links, ("positions", f"{base}#/positions"), ("orders", f"{base}#/orders")]


#: Per figure: the label of each column of its rows (a figure without an entry is one value).
SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {
    "quotes": ("quotes",),
    "bars_by_source": ("source", "bars"),
    "gaps_by_final_state": ("state", "gaps"),
    "signals_by_strategy": ("strategy", "signals"),
    "runs_by_final_state": ("state", "runs"),
    "orders_by_final_status": ("status", "orders"),
    "fills": ("fills", "shares", "commissions $"),
    "risk_rejections_by_check": ("check", "rejections"),
    "realized_pnl": ("realized P&L $",),
    "intent_to_decision_ms_p50_p99": ("p50 ms", "p99 ms"),
    "sink_lag_ms_p50_p99": ("p50 ms", "p99 ms"),
}


def summary_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, text) rows of the summary table, every number labelled: a grouped figure reads ``live: 1,200``,
    a row of several figures ``fills 186 · shares 13,980.00 · commissions $ 186.00``."""
    rows = []
    for name, value in figures.items():
        if isinstance(value, list):
            text = "; ".join(_labelled_row(SUMMARY_COLUMNS.get(name, ()), row) for row in value) or "none"
        else:
            text = _fmt(value)
        rows.append((name.replace("_", " "), text))
    return rows


def _labelled_row(columns: tuple[str, ...], row: tuple[Any, ...] | list[Any]) -> str:
    cells = [_fmt(cell) for cell in row]
    if len(row) == 2 and row[0] == "error":
        return f"error: {cells[1]}"
    if len(columns) != len(cells):
        return " ".join(cells)
    if len(columns) == 2 and not isinstance(row[0], int | float):
        return f"{cells[0]}: {cells[1]}"  # a group (source, state, check …) and its count
    return " · ".join(f"{label} {cell}" for label, cell in zip(columns, cells, strict=True))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: Any) -> None:
        return None


def run_demo(config: DemoConfig) -> dict[str, Any]:
    demo = Demo(config)
    try:
        demo.prepare()
        demo.start_processes()
        demo.run_session()
        demo.stop_pipeline()
        figures = demo.summary()
        demo.print_summary(figures)
        if config.keep:
            demo.keep_running()
        return figures
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process")
        return {}
    finally:
        demo.group.stop_all()
        demo.stop_started_broker()
