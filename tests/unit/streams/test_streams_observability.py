"""What streams reports: Agent0 calls by outcome and the circuit alert, the kill-switch alert and risk metrics from
the risk agent, run outcomes and stage latencies. Read back from the Prometheus exposition, as a scrape sees them
(the registry is process-wide, so every assertion is on the change a test caused)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ibstream import telemetry
from ibstream.config import load_settings
from ibstream.contracts import Alert, RiskDecision, order_intents
from ibstream.contracts.enums import AlertState, ControlCommandKind, RunState, Severity, TradingState
from ibstream.risk import RiskView
from streams import orchestration as orch
from streams.app import build_app
from streams.observability import RunClock, StreamsAlerts
from streams.orchestration.agent0_client import Agent0Client, PlanningError
from tests.unit.ibstream.test_risk import NOW, kill, quote
from tests.unit.ibstream.test_risk import state as trading_state
from tests.unit.streams.test_streams_agents import CODEC, RecordingDeadLetters, RecordingEmitter, make_intent
from tests.unit.streams.test_streams_orchestration import PLAN, SIGNAL
from tests.unit.streams.test_streams_orchestration_agent import RecordingBus
from tooling.demo import metric_sum, parse_prometheus


def _metric(name: str, **labels: str) -> float:
    telemetry.configure_metrics("test")
    body, _ = telemetry.prometheus_exposition()
    return metric_sum(parse_prometheus(body.decode()), name, **labels)


@pytest.mark.asyncio
async def test_agent0_calls_are_counted_by_outcome_and_the_open_circuit_is_alerted_until_it_closes(
    tmp_path: Path,
) -> None:
    now = [0.0]
    statuses = iter([503, 503, 200])
    transport = httpx.MockTransport(
        lambda _: (
            httpx.Response(status, json={"plan": PLAN.model_dump(mode="json")})
            if (status := next(statuses)) == 200
            else httpx.Response(status, text="down")
        )
    )
    breaker = orch.CircuitBreaker(2, 10.0, clock=lambda: now[0])
    agent0 = Agent0Client(
        "http://agent0", timeout=1, max_attempts=2, backoff_seconds=0, breaker=breaker, transport=transport
    )
    emitter = RecordingEmitter()
    built = build_app(
        load_settings(kafka_topic_prefix="unit."),
        enabled=("orchestration",),
        data_dir=tmp_path,
        emitter=emitter,
        dead_letters=RecordingDeadLetters(),
        with_feed=False,
        planner=agent0,
        commands=RecordingBus(),
    )
    assert built.orchestrator is not None
    before = {
        outcome: _metric("ibstream_agent0_requests_total", outcome=outcome)
        for outcome in ("http_5xx", "circuit_open", "ok")
    }
    ok_latency = _metric("ibstream_agent0_request_seconds_count", outcome="ok")
    raised = _metric("ibstream_alerts_raised_total", kind="agent0_circuit_open", component="streams")

    with pytest.raises(PlanningError):
        await agent0.plan(SIGNAL)  # two 5xx: the breaker opens
    await built.orchestrator.sync_circuit_alert()
    await built.orchestrator.sync_circuit_alert()  # still open: raised once
    with pytest.raises(PlanningError, match="circuit open"):
        await agent0.plan(SIGNAL)
    fired = emitter.of(Alert)
    assert [(a.kind, a.state, a.component) for a in fired] == [("agent0_circuit_open", AlertState.FIRING, "streams")]
    assert _metric("ibstream_alerts_firing", kind="agent0_circuit_open", component="streams") == 1

    now[0] = 10.0  # half-open: one trial call, which succeeds and closes the circuit
    assert await agent0.plan(SIGNAL) == PLAN
    await built.orchestrator.sync_circuit_alert()
    assert [a.state for a in emitter.of(Alert)] == [AlertState.FIRING, AlertState.RESOLVED]
    assert _metric("ibstream_alerts_firing", kind="agent0_circuit_open", component="streams") == 0

    assert _metric("ibstream_agent0_requests_total", outcome="http_5xx") - before["http_5xx"] == 2
    assert _metric("ibstream_agent0_requests_total", outcome="circuit_open") - before["circuit_open"] == 1
    assert _metric("ibstream_agent0_requests_total", outcome="ok") - before["ok"] == 1
    assert _metric("ibstream_agent0_request_seconds_count", outcome="ok") - ok_latency == 1
    assert _metric("ibstream_alerts_raised_total", kind="agent0_circuit_open", component="streams") - raised == 1
    await agent0.close()


@pytest.mark.asyncio
async def test_the_risk_agent_alerts_a_kill_switch_before_deciding_and_counts_checks_and_decisions(
    tmp_path: Path,
) -> None:
    emitter = RecordingEmitter()
    settings = load_settings(kafka_topic_prefix="unit.", risk_quote_max_age_seconds=1e9)
    built = build_app(
        settings,
        enabled=("risk",),
        data_dir=tmp_path,
        emitter=emitter,
        dead_letters=RecordingDeadLetters(),
        with_feed=False,
    )
    view = built.view
    assert view is not None
    view.apply_quote(quote())
    view.apply_control(kill(ControlCommandKind.KILL_SWITCH_ON, "all"))
    view.ready.set()
    built.app.finalize()
    built.app.flow_control.resume()
    rejected_by_switch = _metric("ibstream_risk_checks_total", check="kill_switch", passed="false")
    refused = _metric("ibstream_risk_decisions_total", approved="false")
    approved = _metric("ibstream_risk_decisions_total", approved="true")
    latencies = _metric("ibstream_risk_intent_to_decision_seconds_count")
    topic = "unit." + order_intents.TOPIC.name
    async with built.agents["risk"].test_context() as agent:
        await agent.put(key=b"o-1", value=CODEC.encode(topic, make_intent("o-1")))
        view.apply_control(kill(ControlCommandKind.KILL_SWITCH_OFF, "all"))
        await agent.put(key=b"o-2", value=CODEC.encode(topic, make_intent("o-2")))

    kinds = [type(record).__name__ for _, record in emitter.sent if isinstance(record, Alert | RiskDecision)]
    assert kinds == ["Alert", "RiskDecision", "Alert", "RiskDecision"]  # each alert precedes the intent it judged
    alerts = emitter.of(Alert)
    assert [(a.kind, a.state, a.alert_id) for a in alerts] == [
        ("kill_switch", AlertState.FIRING, "kill_switch:account"),  # every account-wide spelling is one scope
        ("kill_switch", AlertState.RESOLVED, "kill_switch:account"),  # every account-wide spelling is one scope
    ]
    assert [d.approved for d in emitter.of(RiskDecision)] == [False, True]
    assert _metric("ibstream_risk_checks_total", check="kill_switch", passed="false") - rejected_by_switch == 1
    assert _metric("ibstream_risk_decisions_total", approved="false") - refused == 1
    assert _metric("ibstream_risk_decisions_total", approved="true") - approved == 1
    assert _metric("ibstream_risk_intent_to_decision_seconds_count") - latencies == 2


def test_run_outcomes_and_stage_latencies_come_from_the_run_records() -> None:
    clock = RunClock()
    runs_done = _metric("ibstream_orchestration_runs_total", state="completed")
    planned = {
        name: _metric(f"ibstream_orchestration_stage_seconds_{name}", stage="triggered_to_planned")
        for name in ("count", "sum")
    }
    submitted = {
        name: _metric(f"ibstream_orchestration_stage_seconds_{name}", stage="planned_to_submitted")
        for name in ("count", "sum")
    }
    run = orch.trigger(SIGNAL).model_copy(update={"time": NOW})
    steps = [
        (RunState.PLANNING, 1),
        (RunState.PLANNED, 2),
        (RunState.AWAITING_APPROVAL, 3),
        (RunState.APPROVED, 60),
        (RunState.SUBMITTED, 62),
        (RunState.COMPLETED, 90),
    ]
    clock.observe(run)
    for state, seconds in steps:
        run = orch.advance(run, state, actor="test", plan=PLAN).model_copy(
            update={"time": NOW + timedelta(seconds=seconds)}
        )
        clock.observe(run)
        clock.observe(run)  # a redelivered record measures nothing twice, except the final count (at-least-once)
    assert _metric("ibstream_orchestration_stage_seconds_count", stage="triggered_to_planned") - planned["count"] == 1
    assert _metric("ibstream_orchestration_stage_seconds_sum", stage="triggered_to_planned") - planned["sum"] == 2
    assert _metric("ibstream_orchestration_stage_seconds_count", stage="planned_to_submitted") - submitted["count"] == 1
    assert _metric("ibstream_orchestration_stage_seconds_sum", stage="planned_to_submitted") - submitted["sum"] == 60
    assert _metric("ibstream_orchestration_runs_total", state="completed") - runs_done == 2


def test_a_reducing_or_halted_scope_alerts_until_it_is_active_again() -> None:
    view = RiskView()
    alerts = StreamsAlerts()
    view.apply_control(trading_state("AAPL", TradingState.REDUCING, sequence=10))
    view.apply_undecodable_control(b"trading_state:MSFT", "unknown enum symbol", NOW)
    view.apply_control(kill(ControlCommandKind.KILL_SWITCH_ON, "SPY"))  # alerted as kill_switch, not twice
    fired = alerts.sync_trading_states(view.trading_states_restricted())
    assert [(a.alert_id, a.severity, a.state) for a in fired] == [
        ("trading_state:AAPL", Severity.WARNING, AlertState.FIRING),
        ("trading_state:MSFT", Severity.CRITICAL, AlertState.FIRING),
    ]
    assert alerts.sync_trading_states(view.trading_states_restricted()) == []  # no repeat while unchanged
    view.apply_control(trading_state("AAPL", TradingState.ACTIVE, sequence=11))
    resolved = alerts.sync_trading_states(view.trading_states_restricted())
    assert [(a.alert_id, a.state) for a in resolved] == [("trading_state:AAPL", AlertState.RESOLVED)]
