"""The triage drill: each runbook's fault injected into one running pipeline, and the runbook followed with only the
alerts, /metrics and the JSON logs — no SQL, no code (issue 26, item 4).

One pipeline (the demo's processes: ibsim, producer, streams, Agent0, execution, API with the embedded sink), policy
approvals at a low confidence so orders flow, and a real Prometheus that scrapes every deployable each second and
evaluates ops/alerts/ibstream.rules.yaml. The faults run in sequence; for each, the drill of ops/runbooks/drill.yaml
says which alert must become active (pending counts: its condition holds and only its ``for`` is still running),
which metrics and log events the runbook sends the operator to, and the cause they must lead to. Each step below
asks Prometheus or greps the logs exactly as the runbook tells the operator to.

The stall of one symbol starts first and is judged last among the market faults: the stale-feed alert needs more than
60 s without a tick, and the other drills run meanwhile (their faults do not touch that symbol's feed).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ibstream.config import load_settings
from tests.e2e.drill_support import (
    Drill,
    Prometheus,
    drill_plan,
    environment_ready,
    find_logs,
    gap_burst,
    log_records,
    place_foreign_order,
    produce_raw,
    wait_for,
)
from tests.tools import require_tool
from tooling.demo import Demo, DemoConfig, post_json

#: Startup of every process on a loaded machine plus the drill (the stale-feed alert alone needs a minute).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STALLED = "MSFT"
#: An IB client id no deployable uses (producer 11, execution 21): "someone in TWS or another program".
FOREIGN_CLIENT_ID = 77
#: Records in the first lag burst: eight times the alert's 10,000, so the sink's progress report (every 5 s) sees the
#: partition behind: a sink that never pauses to measure lag (its lookups go on their own client) drained 40,000 in
#: under 5 s here, and each burst that drains unseen costs the drill the alert's 15 s wait.
BURST = 80_000
#: The stale-feed alert's threshold (seconds without a tick) plus a margin for a scrape and an evaluation.
STALE_FOR = 64.0


class DrillDemo(Demo):
    """The demo's processes with many orders flowing: policy approvals at a low confidence, as chaos runs them."""

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "IBSTREAM_APPROVAL_MODE": "policy",
            "IBSTREAM_ORCHESTRATION_MIN_CONFIDENCE": "0.3",
            "IBSTREAM_APPROVAL_POLICY_MIN_CONFIDENCE": "0.3",
            "IBSTREAM_APPROVAL_POLICY_MAX_NOTIONAL": "50000",
            "IBSTREAM_RISK_MAX_ORDERS_PER_MINUTE": "120",
            "IBSTREAM_IB_RECONNECT_BASE_SECONDS": "0.2",
        }


@dataclass
class Pipeline:
    demo: DrillDemo
    prometheus: Prometheus
    plan: dict[str, Drill]


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require_tool(environment_ready())
    directory = tmp_path_factory.mktemp("drill")
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, state_dir=directory)
    # 60x: the regular session lasts 390 wall seconds after the clock is released, the whole drill with a margin.
    config = DemoConfig(speed=60.0, approve="policy", fault_at=None, live_view=False, directory=directory / "demo")
    demo = DrillDemo(config, settings)
    prometheus = Prometheus(demo, directory / "prometheus")
    try:
        demo.prepare()
        demo.start_processes()
        prometheus.start()
        wait_for("Prometheus scrapes every deployable", prometheus.all_targets_up, 30)
        wait_for("the feed flows for every symbol", demo._feed_flowing, 60)
        yield Pipeline(demo, prometheus, drill_plan())
    finally:
        demo.group.stop_all()


def test_the_triage_drill_follows_every_runbook_to_its_cause(pipeline: Pipeline) -> None:
    demo = pipeline.demo
    stalled_at = time.monotonic()
    post_json(f"{demo.control}/faults/stall", {"symbol": STALLED})
    followed = []
    for runbook, drill_step in (
        ("dlq.md", _dlq),
        ("consumer-lag.md", _consumer_lag),
        ("order-failures.md", _order_failures),
        ("stale-data.md", lambda p, d: _stale_feed(p, d, stalled_at)),
        ("reconciliation-mismatch.md", _disconnect_and_reconciliation),
    ):
        for name, managed in demo.group.processes.items():
            assert managed.alive(), f"{name} died before the {runbook} drill:\n{managed.log_tail()}"
        started = time.monotonic()
        drill_step(pipeline, pipeline.plan[runbook])
        followed.append(runbook)
        print(f"drill {runbook}: followed to its cause in {time.monotonic() - started:.1f}s", flush=True)
    followed.append("ib-disconnect.md")  # drilled together with the reconciliation (its reconnect reconciles)
    assert sorted(followed) == sorted(pipeline.plan), "every drill of ops/runbooks/drill.yaml was run"


# --- the drills, one per runbook -------------------------------------------------------------------------------


def _alert(pipeline: Pipeline, drill: Drill, timeout: float, **labels: str) -> dict[str, str]:
    """The drill's alert active in Prometheus with ``labels`` (pending or firing); its labels."""

    def active() -> dict[str, str] | None:
        for alert in pipeline.prometheus.alerts(drill.alert):
            if all(alert["labels"].get(key) == value for key, value in labels.items()):
                found: dict[str, str] = alert["labels"]
                return found
        return None

    return wait_for(f"{drill.runbook}: {drill.alert} {labels} active", active, timeout)


def _dlq(pipeline: Pipeline, drill: Drill) -> None:
    demo, prometheus = pipeline.demo, pipeline.prometheus
    rng = random.Random(26)
    poison = [bytes(rng.randrange(256) for _ in range(24)) for _ in range(3)]
    produce_raw(demo.bootstrap, demo.prefix + "md.bars.5s.v1", poison, b"drill-poison")
    # Alert → which topic and which deployable dead-lettered.
    labels = _alert(pipeline, drill, 30, topic="md.bars.5s.v1")
    # Metric: ibstream_dlq_records_total says the error kind.
    kinds = {
        series["kind"]
        for series, value in prometheus.values(f'{drill.metrics[0]}{{topic="md.bars.5s.v1"}}')
        if value > 0
    }
    assert kinds == {"decode"}, kinds
    # Log: the dead-letter line names the record (partition, offset) and the error text.
    lines = find_logs(demo, drill.logs[0], dead_lettered_by=labels["component"], error_kind="decode")
    assert len(lines) == len(poison), (labels, lines)
    assert all(record["topic"] == demo.prefix + "md.bars.5s.v1" for _, record in lines), lines
    # The cause: the bytes are not our framing (another serializer or tool wrote them), not a schema we lack.
    assert all("not Avro single-object encoded" in str(record["error"]) for _, record in lines), lines
    # Each line names its record (partition and offset) for the redrive or the replay.
    assert len({(record["partition"], record["offset"]) for _, record in lines}) == len(poison), lines


def _consumer_lag(pipeline: Pipeline, drill: Drill) -> None:
    demo, prometheus = pipeline.demo, pipeline.prometheus
    topic = demo.prefix + "md.gaps.v1"
    labels = _burst_until_lag_alert(pipeline, drill, topic)
    # Metric: one partition behind, the others not: a burst or a stuck partition, not the whole sink.
    lags = {series["partition"]: value for series, value in prometheus.values(f'{drill.metrics[0]}{{topic="{topic}"}}')}
    assert sum(1 for lag in lags.values() if lag > 10_000) == 1 and labels["partition"] in lags, lags
    # Metric: the sink is inserting (rows climb): it drains, it is not stuck.
    inserted = f"sum(increase({drill.metrics[1]}[30s]))"
    wait_for("the sink inserts rows", lambda: any(v > 0 for _, v in prometheus.values(inserted)), 30)
    # Logs: no insert failure and no DLQ loop on the topic, so the cause is the burst itself.
    assert not find_logs(demo, drill.logs[0]), find_logs(demo, drill.logs[0])[:3]
    assert not find_logs(demo, drill.logs[1], topic=topic)
    # Verify (the runbook's last step): lag back under the limit.
    under = f'max({drill.metrics[0]}{{topic="{topic}"}}) < 10000'
    wait_for("the burst drained", lambda: prometheus.values(under), 180, 1.0)


def _burst_until_lag_alert(pipeline: Pipeline, drill: Drill, topic: str) -> dict[str, str]:
    """Bursts on one md.gaps.v1 partition, each twice the last, until the lag alert is active. The sink measures lag
    every 5 s: on a quiet machine it drained a 40k burst (~6 s) before the alert could see it, under load it took
    minutes — so the burst grows to what this machine needs."""
    size, deadline = BURST, time.monotonic() + 150
    while True:
        gap_burst(pipeline.demo.bootstrap, pipeline.demo.prefix, size)
        try:
            return _alert(pipeline, drill, 15, topic=topic)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            size = min(size * 2, 4 * BURST)


def _order_failures(pipeline: Pipeline, drill: Drill) -> None:
    demo, prometheus = pipeline.demo, pipeline.prometheus
    message = "Order rejected - reason:drill: insufficient buying power"

    def rejecting() -> list[dict[str, str]] | None:
        # Keep ibsim rejecting the next placeOrder calls (a bracket takes three) until the alert fires.
        pending = int(demo.sim_state().get("faults", {}).get("pending_rejections", 0))
        for _ in range(max(0, 6 - pending)):
            post_json(f"{demo.control}/faults/reject_next_order", {"code": 201, "message": message})
        return [alert["labels"] for alert in prometheus.alerts(drill.alert)] or None

    wait_for(f"{drill.alert} fires", rejecting, 150, 1.0)
    # The rejections still pending are cleared after the stale-feed drill (clearing them now would end its stall).
    # Metric: rejected outcomes, not errors (errors would mean our side failed to place).
    outcomes = {series["outcome"]: value for series, value in prometheus.values(drill.metrics[0])}
    assert outcomes.get("rejected", 0) >= 5, outcomes
    # Every outcome's series exists from execution's start (at 0 until it happens): increase() sees the first one.
    assert set(outcomes) >= {"filled", "cancelled", "rejected", "error"}, outcomes
    # Log: each rejected order's line carries IB's code and message: the cause is at IB (201: margin, permissions).
    rejected = find_logs(demo, drill.logs[0], broker_code=201)
    assert rejected and {name for name, _ in rejected} == {"execution"}, rejected[:3]
    assert all(record.get("order_id") for _, record in rejected)
    assert any(record.get("broker_message") == message for _, record in rejected), rejected[:3]
    # From a rejected order's line to what led to it (the README's "follow a trace from a log line"): its trace_id
    # finds streams' lines of the same trace — the signal, the run, the intent for the same order.
    traced = [record for _, record in rejected if record.get("trace_id")]
    assert traced, f"no rejected order's line carries a trace_id: {rejected[:3]}"
    trace_id, order_id = traced[-1]["trace_id"], traced[-1]["order_id"]
    upstream = [(name, record) for name, record in log_records(demo) if record.get("trace_id") == trace_id]
    assert "streams" in {name for name, _ in upstream}, upstream
    assert any(record.get("order_id") == order_id for name, record in upstream if name == "streams"), upstream


def _stale_feed(pipeline: Pipeline, drill: Drill, stalled_at: float) -> None:
    demo, prometheus = pipeline.demo, pipeline.prometheus
    time.sleep(max(0.0, stalled_at + STALE_FOR - time.monotonic()))
    _alert(pipeline, drill, 30, symbol=STALLED)
    # Metric: only the stalled symbol is old; the others tick, and the IB session is up: not a disconnect.
    ages = {series["symbol"]: value for series, value in prometheus.values(drill.metrics[0])}
    assert ages[STALLED] > 60 and all(age < 60 for symbol, age in ages.items() if symbol != STALLED), ages
    connected = {series["job"]: value for series, value in prometheus.values(drill.metrics[1])}
    assert connected.get("producer") == 1, connected
    # Log: the producer's warning for the symbol (the runbook's jq on .symbol) is its stale-feed alert.
    lines = find_logs(demo, drill.logs[0], symbol=STALLED, alert_id=f"stale_feed:{STALLED}")
    assert [name for name, _ in lines] and {name for name, _ in lines} == {"producer"}, lines
    post_json(f"{demo.control}/faults/resume", {"symbol": STALLED})


def _disconnect_and_reconciliation(pipeline: Pipeline, drill: Drill) -> None:
    demo, prometheus = pipeline.demo, pipeline.prometheus
    post_json(f"{demo.control}/faults/clear", {})  # the order drill's pending rejections would refuse this order
    foreign = place_foreign_order(demo.ports["sim"], FOREIGN_CLIENT_ID)
    assert foreign["status"] in ("Submitted", "PreSubmitted"), foreign
    reconnects = f"sum({pipeline.plan['ib-disconnect.md'].metrics[1]})"
    before = sum(value for _, value in prometheus.values(reconnects))
    post_json(f"{demo.control}/faults/refuse_connections", {"seconds": 8, "drop_existing": True})
    _ib_disconnect(pipeline, pipeline.plan["ib-disconnect.md"], before)
    # The reconnect reconciled: the foreign order is a finding.
    labels = _alert(pipeline, drill, 60)
    assert labels["component"] == "execution", labels
    # Metric: which finding (the kind names it: an order we did not place).
    kinds = {series["kind"] for series, value in prometheus.values(f"{drill.metrics[0]} > 0")}
    assert "unexplained_order" in kinds, kinds
    # Logs: the alert line names the kind; the reconciliation line the order, its client id and orderRef.
    fired = [r for _, r in find_logs(demo, drill.logs[0]) if str(r.get("alert_id", "")).startswith("unexplained_")]
    assert fired, "no 'alert firing' line for the unexplained order"
    found = find_logs(demo, drill.logs[1], kind="unexplained_order")
    assert found and {name for name, _ in found} == {"execution"}, found
    text = str(found[-1][1]["event"])
    assert f"client {FOREIGN_CLIENT_ID}, id {foreign['order_id']}" in text and "orderRef ''" in text, text


def _ib_disconnect(pipeline: Pipeline, drill: Drill, reconnects_before: float) -> None:
    demo, prometheus = pipeline.demo, pipeline.prometheus
    # Alert (pending: its `for: 1m` is still running) for both deployables that hold an IB session.
    for job in ("producer", "execution"):
        _alert(pipeline, drill, 20, job=job)
    # Metric: which deployables lost the session (both: the gateway, not one client's problem).
    dipped = {series["job"] for series, _ in prometheus.values(f"min_over_time({drill.metrics[0]}[30s]) == 0")}
    assert dipped >= {"producer", "execution"}, dipped
    # Log: the drop, then the retries; the retry's error says the gateway refuses connections.
    dropped = find_logs(demo, drill.logs[0])
    assert {name for name, _ in dropped} >= {"producer", "execution"}, dropped
    retries = wait_for("a connect retry logged", lambda: find_logs(demo, drill.logs[1]), 20)
    assert any("refused" in str(record.get("error", "")).lower() for _, record in retries), retries[:3]
    # Verify: connected again on both, and the producer counted the reconnect.
    reconnected = f"min({drill.metrics[0]}) == 1"
    wait_for("both deployables reconnected", lambda: prometheus.values(reconnected), 60)
    reconnects = f"sum({drill.metrics[1]}) > {reconnects_before}"
    wait_for("the producer counted the reconnect", lambda: prometheus.values(reconnects), 20)
