"""Observability of the whole pipeline as real processes: every deployable's /metrics and one order's trace.

The demo harness runs ibsim at 600x through producer, streams, Agent0, execution and the API with the embedded
sink, the demo trader approving runs through the API. Before stopping, each deployable's /metrics is scraped: the
metrics the dashboard and alert rules rely on must be there with values the session makes plausible, and every
label a sample carries must be one the README's metric table documents. Afterwards the shared spans file must hold
one trace that follows an order from the producer's bar through streams (signal, run, intent, decision) to
execution (place, ack, fill), every span's parent inside the trace.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import load_settings
from ibstream.risk import CHECKS
from tests.unit.ibstream.test_metrics_table import documented_labels
from tooling.demo import Demo, DemoConfig, metric_sum, parse_prometheus

pytestmark = pytest.mark.integration

Samples = list[tuple[str, dict[str, str], float]]
#: Wall seconds the session may take to produce a filled order (typically 10-15 s after startup).
SESSION_SECONDS = 60.0
#: Wall seconds for in-flight records to settle after the producer stopped.
SETTLE_SECONDS = 3.0
#: Labels the exporter or Prometheus add to every sample, not ours to document.
_AMBIENT_LABELS = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url", "le", "job", "instance"}


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse_prometheus(response.read().decode())


def _labels_of(samples: Samples, name: str) -> list[dict[str, str]]:
    return [labels for sample, labels, _ in samples if sample == name]


def _summary(samples: Samples) -> dict[str, float]:
    """Totals of every ibstream_ series (histograms by their count), for assertion messages."""
    totals: dict[str, float] = defaultdict(float)
    for name, labels, value in samples:
        if name.startswith("ibstream_") and not name.endswith(("_bucket", "_sum")):
            shown = ",".join(f"{key}={labels[key]}" for key in sorted(set(labels) - _AMBIENT_LABELS))
            totals[f"{name}{{{shown}}}"] += value
    return dict(totals)


def _base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _filled_trace(spans_file: Path) -> bool:
    """Whether a fill's span has been written yet (the trace test needs one)."""
    return spans_file.exists() and '"execution.order filled"' in spans_file.read_text()


def _run(tmp_path: Path, kafka_bootstrap: str) -> Session:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, state_dir=tmp_path)
    # A whole day of simulated session, but the test stops as soon as an order filled: how long that takes
    # depends on the machine (deployables joining their groups, strategies warming up), not on a fixed length.
    # Signals stay actionable two market hours (12 wall seconds at 600x), as in the UAT's 600x sessions: on two
    # loaded cores a signal can take seconds to reach orchestration, and then the approval has to come back.
    config = DemoConfig(
        speed=600.0, fault_at=None, live_view=False, directory=tmp_path / "demo", signal_expiry_seconds=7200
    )
    demo = Demo(config, settings)
    spans_file = Path(demo.env()["IBSTREAM_SPANS_FILE"])
    try:
        demo.prepare()
        demo.start_processes()
        deadline = time.monotonic() + SESSION_SECONDS
        while not _filled_trace(spans_file):
            assert time.monotonic() < deadline, f"no order filled within {SESSION_SECONDS} s: {demo.events}"
            for name, managed in demo.group.processes.items():
                assert managed.alive(), f"{name} died:\n{managed.log_tail()}"
            # The demo trader's approvals, more often than the demo's one-second loop: the sooner a run is
            # approved, the sooner the test ends.
            demo.approve_waiting_runs()
            time.sleep(0.25)
        # Scraped while the rest still runs: first the producer, then, once no new bar can start work and
        # what is in flight settled, the others, so each one's counters are read at rest.
        scraped = {"producer": _scrape(demo.ports["producer"])}
        demo.group.stop("producer")
        time.sleep(SETTLE_SECONDS)
        scraped.update({name: _scrape(demo.ports[name]) for name in ("streams", "agent0", "execution", "api")})
        demo.stop_pipeline()
    finally:
        demo.group.stop_all()
    spans = [json.loads(line) for line in spans_file.read_text().splitlines() if line.strip()]
    return scraped, spans


Session = tuple[dict[str, Samples], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def session(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Session:
    return _run(tmp_path_factory.mktemp("observability"), kafka_bootstrap)


def test_every_deployable_exposes_its_metrics(session: Session) -> None:
    scraped, _ = session
    producer, streams, agent0, execution, api = (
        scraped[name] for name in ("producer", "streams", "agent0", "execution", "api")
    )

    # The session stops at the first fill, so volumes vary with the machine's load: every symbol quoted is the fact.
    for symbol in DemoConfig().symbols:
        assert metric_sum(producer, "ibstream_quotes_published_total", symbol=symbol) > 0, symbol
    assert metric_sum(producer, "ibstream_quotes_published_total") > 20
    assert metric_sum(producer, "ibstream_bars_published_total", source="live") > 100
    assert metric_sum(producer, "ibstream_ib_connected") == 1
    assert metric_sum(producer, "ibstream_feed_ingest_lag_seconds_count") > 0
    assert {labels["symbol"] for labels in _labels_of(producer, "ibstream_feed_staleness_seconds")}

    signals = metric_sum(streams, "ibstream_signals_total")
    assert signals >= 1
    assert all(labels["strategy"] and labels["symbol"] for labels in _labels_of(streams, "ibstream_signals_total"))
    planned = metric_sum(streams, "ibstream_orchestration_stage_seconds_count", stage="triggered_to_planned")
    submitted = metric_sum(streams, "ibstream_orchestration_stage_seconds_count", stage="planned_to_submitted")
    assert 1 <= submitted <= planned <= signals, json.dumps(_summary(streams), indent=0)
    agent0_ok = metric_sum(streams, "ibstream_agent0_requests_total", outcome="ok")
    assert agent0_ok >= planned
    assert metric_sum(streams, "ibstream_agent0_request_seconds_count", outcome="ok") == agent0_ok
    # Agent0's own count of plans it answered: at least every plan orchestration received.
    assert metric_sum(agent0, "ibstream_agent0_plans_total", outcome="planned") >= agent0_ok
    decisions = metric_sum(streams, "ibstream_risk_decisions_total")
    assert decisions >= 1 and metric_sum(streams, "ibstream_risk_intent_to_decision_seconds_count") == decisions
    checks = {labels["check"] for labels in _labels_of(streams, "ibstream_risk_checks_total")}
    # Every decision runs every check once.
    assert len(checks) == len(CHECKS) and {"kill_switch", "stale_quote", "max_position"} <= checks, checks
    assert metric_sum(streams, "ibstream_risk_checks_total") == decisions * len(CHECKS)
    assert metric_sum(streams, "ibstream_risk_checks_total", check="kill_switch", passed="true") == decisions

    assert metric_sum(execution, "ibstream_ib_connected") == 1
    outcomes = metric_sum(execution, "ibstream_execution_orders_total")
    assert outcomes >= 1 and metric_sum(execution, "ibstream_execution_orders_total", outcome="filled") >= 1
    assert metric_sum(execution, "ibstream_execution_placed_total", leg="parent") >= outcomes
    assert metric_sum(execution, "ibstream_execution_intent_to_ack_seconds_count") >= 1

    assert metric_sum(api, "ibstream_api_requests_total") >= 1
    assert metric_sum(api, "ibstream_api_commands_total") >= 1  # the demo trader's approvals
    assert metric_sum(api, "ibstream_warehouse_rows_inserted_total") > 100
    assert metric_sum(api, "ibstream_sink_lag_seconds_count") > 0


def test_every_label_is_documented(session: Session) -> None:
    scraped, _ = session
    documented = documented_labels()
    seen: dict[str, set[str]] = defaultdict(set)
    for samples in scraped.values():
        for name, labels, _ in samples:
            if name.startswith("ibstream_"):
                seen[_base(name)].update(set(labels) - _AMBIENT_LABELS)
    assert seen, "no ibstream_ metric scraped"
    undocumented = {
        name: sorted(labels - documented.get(name, set()))
        for name, labels in seen.items()
        if name not in documented or labels - documented[name]
    }
    assert not undocumented, f"metrics or labels missing from the README metric table: {undocumented}"


def test_one_trace_follows_an_order_across_processes(session: Session) -> None:
    _, spans = session
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["trace_id"]].append(span)
    filled = [trace for trace in by_trace.values() if any(span["name"] == "execution.order filled" for span in trace)]
    assert filled, f"no trace reached a fill; span names: {sorted({span['name'] for span in spans})}"
    trace = max(filled, key=len)
    names = {span["name"] for span in trace}
    services = {span["service"] for span in trace}
    assert {"ibstream-producer", "ibstream-streams", "ibstream-agent0", "ibstream-execution"} <= services, services
    assert {
        "producer.bar",
        "signals.bar",
        "orchestration.route",
        "orchestration.command",
        "agent0.request",
        "agent0.plan",
        "risk.decide",
        "execution.place",
        "execution.order acknowledged",
        "execution.order filled",
    } <= names, names
    ids = {span["span_id"] for span in trace}
    roots = [span for span in trace if span["parent_id"] is None]
    assert [root["name"] for root in roots] == ["producer.bar"]
    orphans = [span["name"] for span in trace if span["parent_id"] is not None and span["parent_id"] not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
    # Agent0's plan is a child of its HTTP server span, which continues orchestration's agent0.request span.
    by_id = {span["span_id"]: span for span in trace}
    plan = next(span for span in trace if span["name"] == "agent0.plan")
    server = by_id[plan["parent_id"]]
    assert server["name"] == "POST /v1/plan" and server["service"] == "ibstream-agent0", server
    assert by_id[server["parent_id"]]["name"] == "agent0.request"
    # Kafka spans carry the messaging semantic conventions, with the record's real topic, offset and key.
    by_name = {span["name"]: span["attributes"] for span in trace}
    published = by_name["producer.bar"]
    assert published["messaging.system"] == "kafka" and published["messaging.operation"] == "publish"
    assert published["messaging.destination.name"].endswith("md.bars.5s.v1")
    assert published["messaging.kafka.message.key"] == published["symbol"]
    for name, topic in (
        ("signals.bar", "md.bars.5s.v1"),
        ("risk.decide", "orders.intents.v1"),
        ("execution.place", "orders.routed.v1"),
    ):
        consumed = by_name[name]
        assert consumed["messaging.system"] == "kafka" and consumed["messaging.operation"] == "process", name
        assert consumed["messaging.destination.name"].endswith(topic), (name, consumed)
        assert isinstance(consumed["messaging.kafka.message.offset"], int), (name, consumed)
        assert consumed["messaging.destination.partition.id"].isdigit(), (name, consumed)
    assert by_name["execution.place"]["messaging.kafka.message.key"] == by_name["execution.place"]["order_id"]
    for name in ("signals.bar", "risk.decide", "execution.place"):
        assert by_name[name]["messaging.consumer.group.name"], name
    # The filled order's own spans, in causal order: bar published, decided, placed, filled.
    order_id = next(span["attributes"]["order_id"] for span in trace if span["name"] == "execution.order filled")
    first: dict[str, int] = {}
    for span in sorted(trace, key=lambda span: span["start"]):
        if span["name"] == "producer.bar" or span["attributes"].get("order_id") == order_id:
            first.setdefault(span["name"], span["start"])
    assert first["producer.bar"] < first["risk.decide"] < first["execution.place"] < first["execution.order filled"]
