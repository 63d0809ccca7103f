"""A chaos campaign: the whole pipeline as processes on a private Kafka broker, a seeded fault schedule, the
independent checker at the end, and a report.

The broker is always our own (free loopback ports, a temporary state directory): the campaign SIGSTOPs and kills it,
which must never happen to a broker other people's tests use. With ``brokers`` 3 it is a cluster of our own
(`KafkaCluster`, topics at replication 3 with min ISR 2) and the cluster faults join the catalogue: the node leading
a partition of a stage's topic SIGKILLed mid-flow, and rolling restarts; the single-broker faults (pause, restart)
then act on node 1. The deployables and ibsim are started through the
demo's pieces (`Demo`), with the chaos environment on top: policy approvals at a low confidence so many orders
flow, and ibsim pushing quotes at the requested rate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition

from ibstream.config import load_settings
from ibstream.contracts import TOPICS, Gap, bars, gaps, order_intents, quotes, routed_orders
from ibstream.contracts.serde import DecodeError, SchemaStore, SingleObjectCodec
from ibstream.exceptions import IbstreamError
from tooling.chaos.checker import Checker, InvariantResult, read_topic
from tooling.chaos.report import recovery_against_targets
from tooling.chaos.schedule import LEADER_KILL_TOPICS, Fault, build_schedule, fault_catalogue
from tooling.demo import Demo, DemoConfig, get_json, post_json, session_close
from tooling.processes import free_port, http_status
from tooling.progress import current as current_progress
from tooling.stack import KafkaCluster, KafkaStack, StackError, port_open

#: ibsim's default universe: ten symbols share the quote rate.
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "AMZN", "GOOGL", "NVDA", "TSLA", "META", "SPY", "QQQ", "IWM")
#: Deployables in the order they are stopped at the end: sources first, the sink (inside api) last.
STOP_ORDER = ("producer", "streams", "agent0", "execution")
RECOVERY_TIMEOUT = 60.0
#: The streams worker's static group membership id (one worker per campaign), kept across its restarts.
STREAMS_INSTANCE_ID = "chaos-streams-0"
#: The probes ask partition leaders for watermarks without subscribing, and librdkafka does not refresh their
#: leaders on NOT_LEADER_FOR_PARTITION: on a cluster, after a leader kill, a probe kept asking the old leader (back,
#: but no longer leading) until the 5-minute default refresh, and the campaign saw no progress. Refresh often.
PROBE_METADATA = {"topic.metadata.refresh.interval.ms": 2000}
#: How long a leader kill waits for another node to lead the partition before it restarts the killed one anyway.
FAILOVER_TIMEOUT = 45.0
#: ibsim (IB) order statuses after which an order can no longer fill.
IB_TERMINAL = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


def working_entry(order: dict[str, Any]) -> bool:
    """An ibsim order (control endpoint JSON) that is an entry — no parent — and can still trade."""
    return order.get("status") not in IB_TERMINAL and not int((order.get("request") or {}).get("parent_id") or 0)


@dataclass
class ChaosConfig:
    minutes: float = 10.0
    rate: float = 2000.0  # quotes per second across the universe
    seed: int = 1
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    kinds: list[str] | None = None  # fault kinds (default: the whole catalogue)
    max_faults: int | None = None  # at most this many faults, the schedule's first (default: as many as fit)
    speed: float | None = None  # simulated seconds per wall second (default: the run stays inside one session)
    directory: Path | None = None
    #: Extra environment of the execution process (test hooks), and hooks for its first start only.
    execution_env: dict[str, str] = field(default_factory=dict)
    execution_first_start_env: dict[str, str] = field(default_factory=dict)
    json_path: Path | None = None
    broker_heap: str = "384m"
    #: 1: a single broker; 3: a KRaft cluster (replication 3, min ISR 2) and the cluster faults.
    brokers: int = 1
    #: The cluster's first port (node n: broker port + 2(n-1), controller the next); None: free ports.
    broker_port: int | None = None

    @property
    def duration(self) -> float:
        return self.minutes * 60.0

    def sim_speed(self) -> float:
        if self.speed is not None:
            return self.speed
        # Stay inside one regular session (6.5 h of market time) with a margin for start-up and the check.
        session = 6.5 * 3600
        return round(min(60.0, 0.85 * session / (self.duration + 90.0)), 1)

    @property
    def tick_interval(self) -> float:
        return len(self.symbols) / self.rate


@dataclass
class FaultOutcome:
    fault: Fault
    injected_at: float  # seconds since the campaign started
    restored_at: float | None = None
    recovered_at: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def recovery_seconds(self) -> float | None:
        if self.recovered_at is None or self.restored_at is None:
            return None
        return round(self.recovered_at - self.restored_at, 2)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.fault.to_json(),
            "injected_at": round(self.injected_at, 2),
            "restored_at": None if self.restored_at is None else round(self.restored_at, 2),
            "recovered_at": None if self.recovered_at is None else round(self.recovered_at, 2),
            "recovery_seconds": self.recovery_seconds,
            "error": self.error,
            "notes": self.notes,
        }


class ChaosError(IbstreamError):
    """The campaign itself could not go on (not a finding about the pipeline)."""


class ChaosDemo(Demo):
    """The demo's process layout with the chaos environment: aggressive policy approvals and a quote rate."""

    chaos: ChaosConfig

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "IBSTREAM_APPROVAL_MODE": "policy",
            # Low thresholds so many signals become runs and many runs become orders: order safety needs traffic.
            "IBSTREAM_ORCHESTRATION_MIN_CONFIDENCE": "0.3",
            "IBSTREAM_APPROVAL_POLICY_MIN_CONFIDENCE": "0.3",
            "IBSTREAM_APPROVAL_POLICY_MAX_NOTIONAL": "50000",
            "IBSTREAM_RISK_MAX_ORDERS_PER_MINUTE": "120",
            "IBSTREAM_IB_RECONNECT_BASE_SECONDS": "0.2",
        }

    startup_timeout = 120.0

    def sim_args(self) -> list[str]:
        return [
            "--seed",
            str(self.chaos.seed),
            "--tick-interval",
            f"{self.chaos.tick_interval:.6f}",
            "--log-level",
            "INFO",
        ]

    def process_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        env = super().process_env(name, env)
        if name == "streams":
            # Static membership, as a supervisor (a pod's container restart) gives it: the worker restarted after
            # kill_streams takes its partitions straight back instead of waiting out the killed member's 15 s session.
            return {**env, "IBSTREAM_STREAMS_INSTANCE_ID": STREAMS_INSTANCE_ID}
        return env

    def execution_env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, **self.chaos.execution_env, **self.chaos.execution_first_start_env}

    def on_started(self) -> None:
        # First-start-only hooks (e.g. a crash point) must not follow the process into its restarts.
        for key in self.chaos.execution_first_start_env:
            self.group.processes["execution"].env.pop(key, None)


def _flushed_print(*args: Any) -> None:
    # Flushed: the log is how a campaign shows it is alive when its output goes through a pipe (tee, CI).
    print(*args, flush=True)


class Campaign:
    """Runs one campaign; ``run()`` returns the report (also written as JSON)."""

    def __init__(self, config: ChaosConfig, log: Any = _flushed_print) -> None:
        self.config = config
        self.log = log
        self.directory = config.directory or Path(tempfile.mkdtemp(prefix="ibstream-chaos-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schedule = build_schedule(
            config.seed, config.duration, config.kinds, brokers=config.brokers, limit=config.max_faults
        )
        self.outcomes: list[FaultOutcome] = []
        self.unexpected_exits: list[dict[str, Any]] = []
        self.throughput: list[tuple[float, int, int]] = []  # (t, quotes, bars) high-water sums
        # The same, also sampled while a fault recovers (the throughput figures keep to the samples between faults,
        # as before; the timeline shows the dips).
        self.timeline_samples: list[tuple[float, int, int]] = []
        self.cpu_seconds: dict[str, dict[int, float]] = {}  # process name → pid → CPU seconds at its last sample
        self.poison: set[tuple[str, int, int]] = set()
        self.rng = random.Random(config.seed)
        self.t0 = time.monotonic()
        self.t0_wall = time.time()  # the same instant on the wall clock, to place records' UTC times on the timeline
        self.orders_routed_at: list[float] = []  # seconds since t0 of each routed order (from the checker's records)
        #: The single broker, or node 1 of the cluster (what the single-broker faults act on).
        self.stack: KafkaStack | None = None
        self.cluster: KafkaCluster | None = None
        self.demo: ChaosDemo | None = None
        self._probe: Consumer | None = None
        self._probes: dict[str, Consumer] = {}

    # --- set-up ---

    def now(self) -> float:
        return time.monotonic() - self.t0

    @property
    def bootstrap(self) -> str:
        assert self.stack is not None
        return self.cluster.bootstrap if self.cluster is not None else self.stack.bootstrap

    def start_kafka(self) -> None:
        """Our own broker, or with ``brokers`` > 1 our own cluster."""
        port, controller = free_port(), free_port()
        stack_settings = load_settings(
            state_dir=self.directory,
            stack_kafka_port=port,
            stack_controller_port=controller,
            stack_kafka_heap=self.config.broker_heap,
        )
        if self.config.brokers > 1:
            base = self.config.broker_port or free_port_run(2 * self.config.brokers)
            self.cluster = KafkaCluster(stack_settings, self.config.brokers, self.directory / "kafka-cluster", base)
            self.stack = self.cluster.nodes[1]
            self.log(f"chaos: starting a private {self.config.brokers}-broker Kafka cluster on {self.bootstrap}")
            self.cluster.up(timeout=180)
            return
        self.stack = KafkaStack(stack_settings, self.directory / "kafka")
        self.log(f"chaos: starting a private Kafka broker on {self.stack.bootstrap} ({self.directory / 'kafka'})")
        self.stack.up()

    def start(self) -> None:
        self.start_kafka()
        settings = load_settings(
            kafka_bootstrap_servers=self.bootstrap,
            kafka_topic_replication=self.config.brokers,
            state_dir=self.directory,
        )
        speed = self.config.sim_speed()
        demo = ChaosDemo(
            DemoConfig(
                speed=speed,
                symbols=self.config.symbols,
                approve="policy",
                fault_at=None,
                live_view=False,
                directory=self.directory / "run",
            ),
            settings,
        )
        demo.chaos = self.config
        self.demo = demo
        # A session that would run past the close starts earlier in the day instead (ibsim trades RTH only).
        # (Backfills the campaign waits for at the end need no open market: IB serves history after the close.)
        needed = dt.timedelta(seconds=(self.config.duration + 120) * speed)
        close = session_close(demo.start.date())
        demo.start = min(demo.start, close - needed)
        demo.prepare()
        self.log(
            f"chaos: speed {speed}x, {len(self.config.symbols)} symbols, {self.config.rate:.0f} quotes/s "
            f"(tick interval {self.config.tick_interval * 1000:.1f} ms), prefix {demo.prefix}"
        )
        demo.start_processes()
        # log_level 2: the probe keeps asking through broker faults; its connection-refused lines are expected noise.
        self._probe = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.sink_group,
                "enable.auto.commit": False,
                "log_level": 2,
                **PROBE_METADATA,
            }
        )
        self.log("chaos: every deployable is up")

    @property
    def sink_group(self) -> str:
        # The sink's consumer group (a deployment contract: `<prefix>ibstream.warehouse-sink`), read to know when
        # the warehouse has caught up and whether it is still making progress after a fault.
        assert self.demo is not None
        return f"{self.demo.prefix}ibstream.warehouse-sink"

    # --- probes ---

    def _high_sum(self, spec_name: str) -> int | None:
        assert self._probe is not None and self.demo is not None
        topic = self.demo.prefix + spec_name
        spec = next(s for s in TOPICS if s.name == spec_name)
        try:
            return sum(
                self._probe.get_watermark_offsets(TopicPartition(topic, p), timeout=2, cached=False)[1]
                for p in range(spec.partitions)
            )
        except Exception:
            return None

    def _committed_sum(self, spec_name: str, group: str | None = None) -> int | None:
        assert self.stack is not None and self.demo is not None
        topic = self.demo.prefix + spec_name
        spec = next(s for s in TOPICS if s.name == spec_name)
        probe = self._probe if group is None else self._group_probe(group)
        assert probe is not None
        try:
            found = probe.committed([TopicPartition(topic, p) for p in range(spec.partitions)], timeout=3)
        except Exception:
            return None
        return sum(max(tp.offset, 0) for tp in found)

    def _group_probe(self, group: str) -> Consumer:
        assert self.stack is not None
        if group not in self._probes:
            self._probes[group] = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": group,
                    "enable.auto.commit": False,
                    "log_level": 2,
                    **PROBE_METADATA,
                }
            )
        return self._probes[group]

    @property
    def streams_group(self) -> str:
        # Faust's consumer group (`<prefix><streams_app_id>`): its commits on the bars topic prove the signals agent
        # consumes again after a fault, which /health alone does not (a restarted worker waits for its rebalance).
        assert self.demo is not None
        return f"{self.demo.prefix}ibstream-streams"

    def sample_throughput(self) -> None:
        quotes_high, bars_high = self._high_sum(quotes.TOPIC.name), self._high_sum(bars.TOPIC.name)
        if quotes_high is not None and bars_high is not None:
            self.throughput.append((self.now(), quotes_high, bars_high))
            self.timeline_samples.append(self.throughput[-1])
        self.sample_cpu()

    def sample_for_timeline(self, bars_high: int) -> None:
        """A throughput sample while a fault recovers (only once every process answers: a watermark query to a
        broker that is down would hold up the recovery check), at most every 2 s."""
        if self.timeline_samples and self.now() - self.timeline_samples[-1][0] < 2.0:
            return
        quotes_high = self._high_sum(quotes.TOPIC.name)
        if quotes_high is not None:
            self.timeline_samples.append((self.now(), quotes_high, bars_high))

    def sample_cpu(self) -> None:
        """CPU seconds used so far by every process of the run (each pid's last reading; restarts add up): what
        bounds the throughput the campaign holds on this machine."""
        pids: dict[str, int | None] = {"campaign": os.getpid()}
        if self.cluster is not None:
            pids |= {f"kafka-{node}": stack.status().pid for node, stack in self.cluster.nodes.items()}
        elif self.stack is not None:
            pids["kafka"] = self.stack.status().pid
        if self.demo is not None:
            pids |= {name: managed.pid for name, managed in self.demo.group.processes.items() if managed.alive()}
        for name, pid in pids.items():
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                self.cpu_seconds.setdefault(name, {})[pid] = times.user + times.system

    def all_ready(self) -> bool:
        """Every deployable answers /ready with 200 (its own readiness: connected, consuming), or /health where it
        has no readiness probe."""
        assert self.demo is not None
        for name, managed in self.demo.group.processes.items():
            if managed.health_url is None:
                continue
            ready = managed.health_url.rsplit("/", 1)[0] + "/ready"
            status = 404 if name == "ibsim" else http_status(ready)
            if status == 404:  # no readiness probe (ibsim, Agent0): process health it is
                status = http_status(managed.health_url)
            if status != 200:
                return False
        return True

    def watch_processes(self) -> None:
        """A deployable that died without being killed by us is a finding; restart it so the campaign goes on."""
        assert self.demo is not None
        for name, managed in self.demo.group.processes.items():
            if managed.alive():
                continue
            code = managed.process.returncode if managed.process else None
            if name == "ibsim":
                # ibsim holds the ground truth (bars, orders, positions): a fresh one would make every check moot.
                raise ChaosError(
                    f"ibsim exited (code {code}) at t+{self.now():.1f}s: ground truth lost\n{managed.log_tail(30)}"
                )
            self.log(f"chaos: t+{self.now():.1f}s {name} exited on its own with {code}; restarting it")
            self.unexpected_exits.append(
                {"t": round(self.now(), 1), "process": name, "exit_code": code, "log_tail": managed.log_tail(15)}
            )
            self.demo.group.restart(name)

    def wait_recovered(self, outcome: FaultOutcome) -> None:
        """Recovered = every process ready again, and since the fault ended new bars reached Kafka, the warehouse sink
        and the streams app committed past them (data flows end to end, not just probes answering)."""

        def progress() -> tuple[int | None, ...]:
            name = bars.TOPIC.name
            return (self._high_sum(name), self._committed_sum(name), self._committed_sum(name, self.streams_group))

        before = tuple(value or 0 for value in progress())
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        now: tuple[int | None, ...] = (None, None, None)
        ready = False
        while time.monotonic() < deadline:
            self.watch_processes()
            self._status(f"{self.now() - (outcome.restored_at or self.now()):.0f}s since the fault ended")
            ready = self.all_ready()
            if ready:
                now = progress()
                if now[0] is not None:
                    self.sample_for_timeline(now[0])
                if all(value is not None and value > old for value, old in zip(now, before, strict=True)):
                    outcome.recovered_at = self.now()
                    return
            time.sleep(0.25)
        # What did not move, so a failed recovery points at its stage.
        stalled = [
            name
            for name, value, old in zip(("bars written", "sink commits", "streams commits"), now, before, strict=True)
            if value is None or value <= old
        ]
        outcome.notes.append(
            f"not recovered within {RECOVERY_TIMEOUT:.0f}s"
            + ("" if ready else " (not every deployable ready)")
            + (f" (no progress: {', '.join(stalled)})" if ready and stalled else "")
        )

    # --- faults ---

    def inject(self, fault: Fault) -> FaultOutcome:
        assert self.demo is not None and self.stack is not None
        outcome = FaultOutcome(fault, self.now())
        self.log(f"chaos: inject {fault.describe()}")
        reporter = current_progress()
        reporter.phase(f"fault #{fault.index:02d} {fault.kind} injected at t+{outcome.injected_at:.0f}s", "it to end")
        try:
            if fault.kind.startswith(("kill_", "broker_")):
                self._inject_process_fault(fault)
            elif fault.kind in LEADER_KILL_TOPICS or fault.kind == "rolling_restart":
                self._inject_cluster_fault(fault, outcome)
            elif fault.kind.startswith("ib_"):
                self._inject_gateway_fault(fault)
            elif fault.kind == "poison":
                p = fault.params
                self.inject_poison(p["topic"], p["count"], p["salt"], outcome)
            else:  # pragma: no cover - the schedule only draws catalogue kinds
                raise ValueError(f"unknown fault {fault.kind}")
        except Exception as error:
            outcome.error = f"{type(error).__name__}: {error}"
            self.log(f"chaos: fault {fault.index} failed to inject: {outcome.error}")
        outcome.restored_at = self.now()
        reporter.phase(
            f"fault #{fault.index:02d} {fault.kind} ended at t+{outcome.restored_at:.0f}s",
            f"recovery: every deployable ready and new bars through the sink and streams (at most "
            f"{RECOVERY_TIMEOUT:.0f}s)",
        )
        self.wait_recovered(outcome)
        self.log(
            f"chaos:   recovered in {outcome.recovery_seconds}s"
            if outcome.recovered_at is not None
            else f"chaos:   NOT recovered ({'; '.join(outcome.notes)})"
        )
        return outcome

    def _inject_process_fault(self, fault: Fault) -> None:
        """A deployable killed and restarted, or the broker paused or restarted; returns once it is back."""
        assert self.demo is not None and self.stack is not None
        group, p = self.demo.group, fault.params
        if fault.kind.startswith("kill_"):
            name = fault.kind.removeprefix("kill_")
            group.kill(name)
            time.sleep(p["down_seconds"])
            group.restart(name)
        elif fault.kind == "broker_pause":
            self.stack.signal_broker(signal.SIGSTOP)
            try:
                time.sleep(p["pause_seconds"])
            finally:
                self.stack.signal_broker(signal.SIGCONT)
        elif fault.kind == "broker_restart":
            self.stack.signal_broker(signal.SIGKILL)
            deadline = time.monotonic() + 30
            while self.stack.status().pid is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(p["down_seconds"])
            self.stack.up(timeout=120)
        else:  # pragma: no cover - the schedule only draws catalogue kinds
            raise ValueError(f"unknown fault {fault.kind}")

    def _inject_cluster_fault(self, fault: Fault, outcome: FaultOutcome) -> None:
        """A node of the cluster SIGKILLed while it leads a stage's partition, or every node restarted in turn;
        returns once every node is back."""
        assert self.demo is not None and self.cluster is not None
        cluster, p = self.cluster, fault.params
        if fault.kind in LEADER_KILL_TOPICS:
            topic = self.demo.prefix + LEADER_KILL_TOPICS[fault.kind]
            node = cluster.leader_of(topic, p["partition"])
            outcome.notes.append(f"node {node} led {topic}[{p['partition']}]")
            # Leadership is spread over the nodes: the killed one also leads partitions of the other stages' topics.
            led = {
                name: [part for part, leader in cluster.leaders(self.demo.prefix + name).items() if leader == node]
                for name in LEADER_KILL_TOPICS.values()
            }
            outcome.notes.append(f"node {node} also led " + "; ".join(f"{name} {parts}" for name, parts in led.items()))
            cluster.kill(node)
            successor = self._await_new_leader(topic, p["partition"], node, FAILOVER_TIMEOUT)
            outcome.notes.append(f"{topic}[{p['partition']}] led by node {successor}")
            time.sleep(p["hold_seconds"])
            cluster.restart(node, timeout=120)
            # The next fault starts from a whole cluster: a second node down before this one caught up would leave
            # partitions below min ISR, which refuses writes (the guarantee working, but not this fault).
            if not self._await_in_sync(60.0):
                outcome.notes.append(f"node {node} not back in sync within 60s")
            return
        for node, stack in cluster.nodes.items():
            # The next node goes down only once the last one caught up: two replicas out of sync at once would
            # leave partitions below min ISR, which refuses writes (the guarantee working, but not this fault).
            if not self._await_in_sync(60.0):
                outcome.notes.append(f"partitions still under-replicated before node {node} went down")
            stack.down()
            cluster.restart(node, timeout=120)
        self._await_in_sync(60.0)

    def _await_new_leader(self, topic: str, partition: int, old: int, timeout: float) -> int | None:
        """The node leading ``topic[partition]`` once it is no longer ``old`` (None: no failover in time)."""
        assert self.cluster is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(StackError):
                leader = self.cluster.leader_of(topic, partition, timeout=5)
                if leader != old:
                    return leader
            time.sleep(0.5)
        return None

    def _await_in_sync(self, timeout: float) -> bool:
        assert self.cluster is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cluster.in_sync():
                return True
            time.sleep(0.5)
        return False

    def _inject_gateway_fault(self, fault: Fault) -> None:
        """A fault of the simulated IB gateway, through ibsim's control API; returns once its duration is over."""
        assert self.demo is not None
        control, p = self.demo.control, fault.params
        if fault.kind == "ib_drop":
            post_json(f"{control}/faults/drop_connections", {})
        elif fault.kind.startswith("ib_connectivity_"):
            code = int(fault.kind.rsplit("_", 1)[1])
            post_json(f"{control}/faults/connectivity", {"outage_seconds": p["outage_seconds"], "restored_code": code})
            time.sleep(p["outage_seconds"])
        elif fault.kind == "ib_refuse":
            post_json(f"{control}/faults/refuse_connections", {"seconds": p["seconds"], "drop_existing": True})
            time.sleep(p["seconds"])
        elif fault.kind == "ib_reject_order":
            post_json(f"{control}/faults/reject_next_order", {"code": 201})
        elif fault.kind == "ib_delay":
            post_json(f"{control}/faults/delay", {"ack_seconds": p["ack_seconds"], "fill_seconds": p["fill_seconds"]})
            time.sleep(p["hold_seconds"])
            post_json(f"{control}/faults/delay", {"ack_seconds": 0, "fill_seconds": 0})
        elif fault.kind == "ib_gateway_restart":
            post_json(
                f"{control}/faults/restart", {"downtime_seconds": p["downtime_seconds"], "rollback": p["rollback"]}
            )
            time.sleep(p["downtime_seconds"])
        else:  # pragma: no cover - the schedule only draws catalogue kinds
            raise ValueError(f"unknown fault {fault.kind}")

    def inject_poison(self, topic: str, count: int, salt: int, outcome: FaultOutcome) -> None:
        """Undecodable records on an input topic: random bytes, and a well-framed record of an unknown schema."""
        assert self.stack is not None and self.demo is not None
        rng = random.Random(salt)
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all", "log_level": 2}
        )
        delivered: list[tuple[int, int]] = []
        errors: list[str] = []

        def report(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                delivered.append((message.partition(), message.offset()))

        for n in range(count):
            if n % 2 == 0:
                value = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            else:  # Avro single-object framing (C3 01) with a fingerprint no schema has
                value = b"\xc3\x01" + bytes(rng.randrange(256) for _ in range(8)) + b"\x02\x04xx"
            producer.produce(
                self.demo.prefix + topic, value=value, key=f"chaos-poison-{salt}-{n}".encode(), on_delivery=report
            )
        producer.flush(30)
        if errors or len(delivered) != count:
            raise RuntimeError(f"poison not delivered: {errors}")
        for partition, offset in delivered:
            self.poison.add((topic, partition, offset))
            outcome.notes.append(f"poison at {topic}/{partition}/{offset}")

    # --- the end ---

    def wait_sink_drained(self, timeout: float = 45.0) -> bool:
        """The sink has committed everything (or at least stopped moving for a while): safe to stop it."""
        last: tuple[int, ...] | None = None
        stable_since = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed = tuple(self._committed_sum(spec.name) or 0 for spec in TOPICS)
            highs = tuple(self._high_sum(spec.name) or 0 for spec in TOPICS)
            # Transactional topics end with a commit marker the sink never consumes: one offset of slack each.
            caught_up = all(
                high - done <= spec.partitions for spec, high, done in zip(TOPICS, highs, committed, strict=True)
            )
            if caught_up and committed == last and time.monotonic() - stable_since > 3:
                return True
            if committed != last:
                last, stable_since = committed, time.monotonic()
            time.sleep(1.0)
        return False

    #: IB paces backfills (60 requests per 10 minutes, counted across producer restarts): a campaign dense in gaps
    #: can end with backfills waiting for that window, which frees within its 10 minutes. Waiting stops as soon as
    #: every gap is closed, so a campaign whose backfills kept up does not wait at all.
    gap_drain_seconds = 660.0

    def wait_gaps_closed(self, timeout: float) -> bool:
        """Every gap in md.gaps.v1 is backfilled or unrecoverable, so the check sees the producer's final word."""
        assert self.stack is not None and self.demo is not None
        topic = self.demo.prefix + gaps.TOPIC.name
        codec = SingleObjectCodec(SchemaStore())
        started = time.monotonic()
        left: list[Gap] = []
        reported = -60.0
        current_progress().phase(
            "the end: load stops once gaps close", "every gap backfilled or given up (IB paces backfills)"
        )
        while time.monotonic() < started + timeout:
            records: list[Gap] = []
            for raw in read_topic(self.bootstrap, topic):
                with contextlib.suppress(DecodeError):  # poison, if the schedule aimed some here
                    records.append(codec.decode(topic, Gap, raw.value, raw.partition, raw.offset))
            left = gaps.unfinished(records)
            waited = time.monotonic() - started
            current_progress().status(f"{len(left)} gap(s) open after {waited:.0f}s of at most {timeout:.0f}s")
            if not left:
                if waited > 5:
                    self.log(f"chaos: every gap closed after {waited:.0f}s")
                return True
            if waited - reported >= 60:
                reported = waited
                self.log(f"chaos: {len(left)} gap(s) still open after {waited:.0f}s (backfills wait for IB's pacing)")
            time.sleep(2.0)
        self.log(
            f"chaos: {len(left)} gap(s) still open after {timeout:.0f}s: "
            f"{', '.join(sorted(gap.gap_id for gap in left)[:10])}"
        )
        return False

    def wait_streams_decided(self, timeout: float = 30.0) -> bool:
        """The streams group has committed every intent and stopped moving for 2 s (orchestration done emitting)."""
        name = order_intents.TOPIC.name
        last: int | None = None
        stable_since = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            high, done = self._high_sum(name), self._committed_sum(name, self.streams_group)
            if high is not None and done is not None and done >= high and high == last:
                if time.monotonic() - stable_since > 2:
                    return True
            elif high != last:
                last, stable_since = high, time.monotonic()
            time.sleep(0.5)
        return False

    def quiesce_orders(self, timeout: float = 30.0) -> None:
        """Freeze the order book before the check. A trading halt at ibsim first: nothing fills from then on, so
        ibsim's positions stay comparable with our records while the checker reads them. Then the global kill switch
        (through the API, as an operator would): execution cancels every working entry and keeps the protective
        legs of filled entries working — the checker verifies that every open position still has its stop."""
        assert self.demo is not None
        demo = self.demo
        try:
            post_json(f"{demo.control}/market/halt", {"halted": True})
            post_json(
                f"{demo.api}/v1/control/kill-switch",
                {"state": "on", "reason": "chaos campaign ends: freeze the book", "target": "global"},
                demo._token("admin"),
            )
        except Exception as error:
            self.log(f"chaos: trading halt or kill switch failed: {error}")
            return
        # Execution first works off its backlog of routed orders (under the kill switch it rejects them locally, so
        # each still gets its recorded end state); its group commits inside its transactions.
        routed = routed_orders.TOPIC.name
        group = f"{demo.prefix}ibstream-execution"
        deadline = time.monotonic() + timeout
        entries: list[Any] = []
        while time.monotonic() < deadline:
            high, done = self._high_sum(routed), self._committed_sum(routed, group)
            entries = [o for o in get_json(f"{demo.control}/orders") if working_entry(o)]
            if high is not None and done is not None and done >= high - 1 and not entries:
                time.sleep(3.0)  # let execution record the last cancels before it stops
                return
            time.sleep(0.5)
        self.log(f"chaos: execution backlog or {len(entries)} working entries left after the kill switch")

    def finish(self) -> tuple[list[InvariantResult], dict[str, int], float]:
        assert self.demo is not None and self.stack is not None
        demo, group = self.demo, self.demo.group
        state = demo.sim_state()
        sim_epoch = float(state.get("sim_epoch") or time.time())
        speed = self.config.sim_speed()
        # Bars completed before the producer stops, less what was still in flight (a wall second of market time).
        bars_until = sim_epoch - 5 - speed * 1.5
        self.wait_gaps_closed(self.gap_drain_seconds)
        group.stop("producer")
        current_progress().phase("the end: producer stopped", "risk to decide the last intents")
        # Intents orchestration emitted just before the stop must be decided, or the check would count them as
        # intents without a decision: risk works off orders.intents.v1 before streams stops.
        if not self.wait_streams_decided():
            self.log("chaos: risk did not catch up with orders.intents.v1 before streams stopped")
        for name in STOP_ORDER[1:3]:
            group.stop(name)
        current_progress().phase(
            "the end: freezing the book", "execution to cancel working entries under the kill switch"
        )
        self.quiesce_orders()
        group.stop("execution")
        current_progress().phase("the end: execution stopped", "the warehouse sink to drain")
        drained = self.wait_sink_drained()
        if not drained:
            self.log("chaos: the sink did not drain in time; warehouse counts may lag")
        group.stop("api")
        from ibstream.warehouse import Warehouse

        settings = load_settings(
            kafka_bootstrap_servers=self.bootstrap,
            kafka_topic_prefix=demo.prefix,
            state_dir=demo.directory,
            warehouse_dir=demo.directory / "warehouse",
        )
        started = time.monotonic()
        current_progress().phase(
            "the end: checking the invariants", "every topic read back, the warehouse and ibsim's books"
        )
        warehouse = Warehouse.open(settings, migrate=False)
        try:
            checker = Checker(settings, demo.control, self.config.symbols, self.poison, bars_until, warehouse)
            checker.load()
            results = checker.run()
        finally:
            warehouse.close()
        self.orders_routed_at = [round(order.routed_time.timestamp() - self.t0_wall, 2) for order in checker.routed]
        self.log(f"chaos: checked in {time.monotonic() - started:.1f}s")
        return results, checker.records_processed(), bars_until

    def run(self) -> dict[str, Any]:
        error: str | None = None
        results: list[InvariantResult] = []
        processed: dict[str, int] = {}
        try:
            self.log(f"chaos: fault schedule (seed {self.config.seed}, {self.config.minutes:.1f} min):")
            for fault in self.schedule:
                self.log(f"  {fault.describe()}")
            current_progress().phase(
                "starting a private Kafka broker, ibsim and every deployable", "every deployable healthy"
            )
            self.start()
            self.t0, self.t0_wall = time.monotonic(), time.time()
            pending = list(self.schedule)
            last_sample = -10.0
            self._await_next_fault(pending)
            while self.now() < self.config.duration:
                if self.now() - last_sample >= 2.0:
                    self.sample_throughput()
                    last_sample = self.now()
                self.watch_processes()
                if pending and self.now() >= pending[0].at:
                    self.outcomes.append(self.inject(pending.pop(0)))
                    self._await_next_fault(pending)
                    continue
                self._status(f"{len(self.outcomes)} of {len(self.schedule)} faults injected")
                time.sleep(0.25)
            for fault in pending:
                self.log(f"chaos: no time left for {fault.describe()}")
            self.sample_throughput()
            results, processed, _ = self.finish()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.log(f"chaos: campaign aborted: {error}\n{traceback.format_exc()}")
        finally:
            self.cleanup()
        report = self.report(results, processed, error)
        try:
            self.write_timeline(report)
        except Exception as exc:  # the picture must never cost the campaign its JSON report
            self.log(f"chaos: timeline not written: {type(exc).__name__}: {exc}")
        if self.config.json_path is not None:
            import json

            self.config.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.config.json_path.write_text(json.dumps(report, indent=2, default=str))
        return report

    def write_timeline(self, report: dict[str, Any]) -> None:
        """``report.html`` (next to the JSON report, or in the campaign's directory): the timeline of faults,
        recoveries and throughput above the text report's tables. Its path goes into the report as ``html``."""
        from tooling.chaos.report import render
        from tooling.chaos.timeline import render_html

        path = self.config.json_path.with_suffix(".html") if self.config.json_path else self.directory / "report.html"
        report["html"] = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(report, render(report)))

    def _await_next_fault(self, pending: list[Fault]) -> None:
        if pending:
            what = f"fault #{pending[0].index:02d} {pending[0].kind} at t+{pending[0].at:.0f}s"
        else:
            what = f"the end of the faulted window at t+{self.config.duration:.0f}s"
        current_progress().phase("load running", what)

    def _status(self, detail: str) -> None:
        current_progress().status(f"t+{self.now():.0f}s of {self.config.duration:.0f}s; {detail}")

    def cleanup(self) -> None:
        if self.demo is not None:
            self.demo.group.stop_all(timeout=10)
        if self._probe is not None:
            with contextlib.suppress(Exception):
                self._probe.close()
        for probe in self._probes.values():
            with contextlib.suppress(Exception):
                probe.close()
        if self.stack is not None:
            with contextlib.suppress(Exception):
                self.stack.signal_broker(signal.SIGCONT)  # never leave a paused broker behind
            if self.cluster is not None:
                self.cluster.down()
            else:
                self.stack.down()

    # --- report ---

    def report(self, results: list[InvariantResult], processed: dict[str, int], error: str | None) -> dict[str, Any]:
        recoveries = [o.recovery_seconds for o in self.outcomes if o.recovery_seconds is not None]
        by_kind: dict[str, list[float]] = {}
        for outcome in self.outcomes:
            if outcome.recovery_seconds is not None:
                by_kind.setdefault(outcome.fault.kind, []).append(outcome.recovery_seconds)
        rates = []
        for (t1, q1, b1), (t2, q2, b2) in zip(self.throughput, self.throughput[1:], strict=False):
            if t2 > t1:
                rates.append(((q2 - q1) / (t2 - t1), (b2 - b1) / (t2 - t1)))
        quote_rates = [r[0] for r in rates]
        violations = [v for result in results for v in result.violations]
        not_recovered = [o for o in self.outcomes if o.recovered_at is None]
        invariants = [
            {
                "name": r.name,
                "description": r.description,
                "checked": r.checked,
                "violations": len(r.violations),
                "ok": r.ok,
            }
            for r in results
        ]
        if self.unexpected_exits:
            invariants.append(
                {
                    "name": "deployables_stay_up",
                    "description": "no deployable exits unless killed",
                    "checked": len(self.outcomes),
                    "violations": len(self.unexpected_exits),
                    "ok": False,
                }
            )
        if not_recovered:
            invariants.append(
                {
                    "name": "recovers_after_every_fault",
                    "checked": len(self.outcomes),
                    "description": f"data flows end to end within {RECOVERY_TIMEOUT:.0f}s of a fault",
                    "violations": len(not_recovered),
                    "ok": False,
                }
            )
        ok = error is None and bool(results) and all(item["ok"] for item in invariants)
        return {
            "ok": ok,
            "error": error,
            "seed": self.config.seed,
            "brokers": self.config.brokers,
            "minutes": self.config.minutes,
            "rate_target": self.config.rate,
            "speed": self.config.sim_speed(),
            "symbols": list(self.config.symbols),
            "directory": str(self.directory),
            "prefix": self.demo.prefix if self.demo else None,
            "replay": f"ibstream chaos --minutes {self.config.minutes:g} --rate {self.config.rate:g} "
            f"--seed {self.config.seed}"
            + (f" --brokers {self.config.brokers}" if self.config.brokers > 1 else "")
            + (f" --faults {','.join(self.config.kinds)}" if self.config.kinds else "")
            + (f" --max-faults {self.config.max_faults}" if self.config.max_faults is not None else ""),
            "faults": [o.to_json() for o in self.outcomes],
            # The timeline's raw series: (t, quotes, bars) high watermarks, exits, orders routed (t since t0).
            "throughput_samples": [[round(t, 2), q, b] for t, q, b in self.timeline_samples],
            "unexpected_exits": [
                {"t": e["t"], "process": e["process"], "exit_code": e["exit_code"]} for e in self.unexpected_exits
            ],
            "orders_routed_at": self.orders_routed_at,
            "faults_by_kind": {kind: len(values) for kind, values in sorted(by_kind.items())},
            "recovery_seconds": {
                "p50": round(statistics.median(recoveries), 2) if recoveries else None,
                "max": round(max(recoveries), 2) if recoveries else None,
                "by_kind": {
                    k: {"p50": round(statistics.median(v), 2), "max": round(max(v), 2)}
                    for k, v in sorted(by_kind.items())
                },
            },
            # kill_streams against its 5 s target (tooling.chaos.report.RECOVERY_TARGETS), shown in both reports.
            "recovery_targets": recovery_against_targets(by_kind),
            "throughput": {
                "quotes_per_second_avg": round(statistics.mean(quote_rates), 1) if quote_rates else None,
                "quotes_per_second_p50": round(statistics.median(quote_rates), 1) if quote_rates else None,
                "quotes_per_second_min": round(min(quote_rates), 1) if quote_rates else None,
                "bars_per_second_avg": round(statistics.mean(r[1] for r in rates), 2) if rates else None,
            },
            # Cores each process kept busy on average over the faulted window (1.0 = one core all the time).
            "cpu_cores": {
                name: round(sum(by_pid.values()) / max(self.config.duration, 1.0), 2)
                for name, by_pid in sorted(self.cpu_seconds.items(), key=lambda item: -sum(item[1].values()))
            },
            "machine_cores": os.cpu_count(),
            "records_processed": processed,
            "records_total": sum(v for k, v in processed.items()),
            "invariants": invariants,
            "violations": [{"invariant": v.invariant, "id": v.id, "detail": v.detail} for v in violations]
            + [
                {
                    "invariant": "deployables_stay_up",
                    "id": e["process"],
                    "detail": f"exit {e['exit_code']} at t+{e['t']}s: {e['log_tail'][-600:]}",
                }
                for e in self.unexpected_exits
            ]
            + [
                {
                    "invariant": "recovers_after_every_fault",
                    "id": f"fault #{o.fault.index}",
                    "detail": f"{o.fault.kind}: {'; '.join(o.notes)}",
                }
                for o in not_recovered
            ],
            "catalogue": fault_catalogue(self.config.brokers),
        }


def free_port_run(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive loopback ports that nothing listens on (a cluster's nodes)."""
    for _ in range(attempts):
        base = free_port()
        if base + count <= 65535 and not any(port_open("127.0.0.1", base + n) for n in range(count)):
            return base
    raise ChaosError(f"found no {count} consecutive free ports for the cluster; pass broker_port")


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the campaign stops the processes and the broker it
    # started: they run in their own sessions and would otherwise outlive us.
    raise KeyboardInterrupt(f"signal {signum}")


def run_campaign(config: ChaosConfig) -> dict[str, Any]:
    from tooling.chaos.report import render
    from tooling.progress import Progress, use

    signal.signal(signal.SIGTERM, _terminate)
    with use(Progress.to_stderr("chaos")):  # live progress on stderr; stdout keeps the log and the report
        report = Campaign(config).run()
    print(render(report))
    if report.get("html"):
        print(f"timeline of faults, recoveries and throughput: {report['html']}")
    return report


__all__ = ["Campaign", "ChaosConfig", "ChaosDemo", "run_campaign"]
