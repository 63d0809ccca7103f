"""The fault catalogue and a seeded schedule of faults (pure: no I/O).

The same seed, duration and kinds always give the same schedule, so a failing campaign can be replayed exactly
(`ibstream chaos --seed S` prints the schedule before it starts).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

#: Deployables the campaign runs as processes; "api" also hosts the embedded warehouse sink (chDB's one-process
#: rule), so killing it kills the sink mid-batch.
DEPLOYABLES = ("producer", "streams", "agent0", "execution", "api")

#: Every fault kind: what it does (printed with the schedule and in the report).
FAULT_KINDS: dict[str, str] = {
    **{f"kill_{name}": f"SIGKILL {name}, restart it after a short pause" for name in DEPLOYABLES},
    "broker_pause": "SIGSTOP the Kafka broker JVM (a long GC pause), SIGCONT after a few seconds",
    "broker_restart": "SIGKILL the Kafka broker, start it again on the same data directory",
    "ib_drop": "ibsim drops every API socket",
    "ib_connectivity_1101": "error 1100 then 1101 (data lost: subscriptions dropped server-side)",
    "ib_connectivity_1102": "error 1100 then 1102 (data maintained)",
    "ib_refuse": "ibsim drops every socket and refuses reconnects for a few seconds",
    "ib_reject_order": "the next placeOrder is rejected (error 201)",
    "ib_delay": "acks and fills are delayed for a while",
    "ib_gateway_restart": "gateway restart: sockets dropped, reconnects refused, nextValidId rolled back",
    "poison": "undecodable records written to input topics (must end in the DLQs, nowhere else)",
}

#: The cluster mode's faults (`ibstream chaos --brokers 3`): each leader kill SIGKILLs the node leading a partition of
#: the topic one stage of the pipeline writes or reads (the stage named in the kind), and restarts it on its data
#: after a pause long enough for another node to take over the partition.
LEADER_KILL_TOPICS: dict[str, str] = {
    "leader_kill_ingestion": "md.bars.5s.v1",
    "leader_kill_risk": "orders.intents.v1",
    "leader_kill_execution": "orders.routed.v1",
}
CLUSTER_FAULT_KINDS: dict[str, str] = {
    **{
        kind: f"SIGKILL the broker leading a partition of {topic}, restart it once another broker leads it"
        for kind, topic in LEADER_KILL_TOPICS.items()
    },
    "rolling_restart": "stop and restart every broker in turn, each once every partition is back in sync",
}


def fault_catalogue(brokers: int = 1) -> dict[str, str]:
    """The fault kinds a campaign on ``brokers`` brokers can inject: the cluster's own need more than one."""
    return {**FAULT_KINDS, **CLUSTER_FAULT_KINDS} if brokers > 1 else dict(FAULT_KINDS)


#: Catalogue topics that receive poison records (each is consumed by a deployable and by the sink).
POISON_TOPICS = ("md.bars.5s.v1", "orders.intents.v1", "orders.routed.v1", "signals.v1")


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: ``at`` wall seconds after the pipeline is up; ``params`` drawn from the seed."""

    index: int
    at: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        details = " ".join(f"{key}={value}" for key, value in sorted(self.params.items()))
        return f"#{self.index:02d} t+{self.at:6.1f}s {self.kind} {details}".rstrip()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _params(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind.startswith("kill_"):
        return {"down_seconds": round(rng.uniform(0.5, 3.0), 1)}
    if kind in LEADER_KILL_TOPICS:
        # The node stays down until another one leads the partition (~9 s: the controller's broker session
        # timeout), then for ``hold_seconds`` more, so the stage really runs on the new leader.
        return {"partition": 0, "hold_seconds": round(rng.uniform(2.0, 5.0), 1)}
    if kind == "broker_pause":
        return {"pause_seconds": round(rng.uniform(3.0, 8.0), 1)}
    if kind == "broker_restart":
        return {"down_seconds": round(rng.uniform(1.0, 4.0), 1)}
    if kind.startswith("ib_connectivity"):
        return {"outage_seconds": round(rng.uniform(1.0, 4.0), 1)}
    if kind == "ib_refuse":
        return {"seconds": round(rng.uniform(2.0, 6.0), 1)}
    if kind == "ib_delay":
        return {
            "ack_seconds": round(rng.uniform(0.2, 1.5), 1),
            "fill_seconds": round(rng.uniform(1.0, 4.0), 1),
            "hold_seconds": round(rng.uniform(5.0, 12.0), 1),
        }
    if kind == "ib_gateway_restart":
        return {"downtime_seconds": round(rng.uniform(1.0, 4.0), 1), "rollback": rng.randint(2, 6)}
    if kind == "poison":
        return {"topic": rng.choice(POISON_TOPICS), "count": rng.randint(1, 3), "salt": rng.randrange(1 << 30)}
    return {}


def build_schedule(
    seed: int,
    duration: float,
    kinds: list[str] | None = None,
    *,
    warmup: float | None = None,
    cooldown: float | None = None,
    spacing: float = 12.0,
    brokers: int = 1,
    limit: int | None = None,
) -> list[Fault]:
    """Faults spread over ``[warmup, duration - cooldown]`` wall seconds (default: up to 20 s and 25 s), at least
    ``spacing`` apart.

    Every kind in ``kinds`` (default: the whole catalogue of a campaign on ``brokers`` brokers) appears once, in a
    seeded order; if the window has room for more, further faults are drawn from the same kinds. Times are jittered
    inside their slot. ``limit`` keeps only the first faults of that schedule (each at the time it would have had):
    a fault as costly as a cluster node's restart under load (most of a minute) leaves room for no second one in a
    CI campaign, and one more would only push its end back.
    """
    known = fault_catalogue(brokers)
    chosen = list(kinds or known)
    unknown = [kind for kind in chosen if kind not in known]
    if unknown:
        cluster_only = [kind for kind in unknown if kind in CLUSTER_FAULT_KINDS]
        if cluster_only:
            raise ValueError(f"fault kinds {cluster_only} need a cluster: --brokers 3")
        raise ValueError(f"unknown fault kinds {unknown}; known: {sorted(known)}")
    if not chosen:
        return []
    # Short campaigns (CI) shrink the quiet lead-in and tail so a couple of minutes still hold several faults.
    warmup = min(20.0, 0.12 * duration) if warmup is None else warmup
    cooldown = min(25.0, 0.15 * duration) if cooldown is None else cooldown
    rng = random.Random(seed)
    window = max(0.0, duration - warmup - cooldown)
    slots = max(1, int(window // spacing))
    order = rng.sample(chosen, len(chosen))
    while len(order) < slots:
        order.append(rng.choice(chosen))
    order = order[:slots]
    slot = window / len(order) if order else 0.0
    faults = []
    for index, kind in enumerate(order):
        jitter = rng.uniform(0.0, max(0.0, slot - spacing * 0.75)) if slot > spacing * 0.75 else 0.0
        faults.append(Fault(index, round(warmup + index * slot + jitter, 1), kind, _params(kind, rng)))
    return faults if limit is None else faults[:limit]
