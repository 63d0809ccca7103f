"""Run state machine, approval policy and circuit breaker (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ibstream import ids
from ibstream.contracts import (
    Bar,
    ControlCommand,
    OrchestrationRun,
    OrderEvent,
    Plan,
    Record,
    RiskCheck,
    RiskDecision,
    Signal,
)
from ibstream.contracts.enums import (
    ApprovalMode,
    ControlCommandKind,
    ExecutionSource,
    MarketDataSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    RunState,
    Side,
    SignalStatus,
)
from streams import orchestration as orch
from streams import signals
from streams.orchestration.agent0_client import Agent0Client, PlanningError

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SIGNAL = Signal(
    signal_id="sig-1",
    symbol="AAPL",
    strategy="donchian_breakout",
    side=Side.BUY,
    confidence=0.9,
    entry=100.0,
    stop=98.0,
    take_profit=104.0,
    bar_start=T0,
    created_time=T0,
    expiry_time=T0 + timedelta(minutes=5),
    features={},
)
PLAN = Plan(
    plan_id="p",
    side=Side.BUY,
    quantity=50,
    order_type=OrderType.LMT,
    limit_price=100.0,
    stop_loss=98.0,
    take_profit=104.0,
    rationale="test",
)

HAPPY = [
    RunState.PLANNING,
    RunState.PLANNED,
    RunState.AWAITING_APPROVAL,
    RunState.APPROVED,
    RunState.SUBMITTED,
    RunState.COMPLETED,
]


def test_happy_path_and_intent_id_from_run_id() -> None:
    run = orch.trigger(SIGNAL)
    assert run.run_id == ids.run_id("sig-1")
    for state in HAPPY:
        run = orch.advance(run, state, actor="t", plan=PLAN if state is RunState.PLANNED else None)
    assert run.state is RunState.COMPLETED and run.previous_state is RunState.SUBMITTED and run.plan == PLAN
    intent = orch.intent_for(run, PLAN)
    assert intent.order_id == ids.order_id(run.run_id)


@pytest.mark.parametrize(
    ("path", "to"),
    [
        ([], RunState.APPROVED),  # triggered cannot skip planning
        ([RunState.PLANNING], RunState.SUBMITTED),
        ([RunState.PLANNING, RunState.PLANNED, RunState.AWAITING_APPROVAL], RunState.PLANNING),  # backwards
        ([RunState.PLANNING, RunState.PLANNED, RunState.APPROVED, RunState.SUBMITTED], RunState.REJECTED),
        (
            [RunState.PLANNING, RunState.PLANNED, RunState.APPROVED, RunState.SUBMITTED, RunState.COMPLETED],
            RunState.FAILED,
        ),  # final
    ],
)
def test_invalid_transitions_are_refused(path: list[RunState], to: RunState) -> None:
    run = orch.trigger(SIGNAL)
    for state in path:
        run = orch.advance(run, state, actor="t")
    with pytest.raises(orch.InvalidTransitionError):
        orch.advance(run, to, actor="t", reason="because")


def test_failures_need_a_reason() -> None:
    with pytest.raises(orch.InvalidTransitionError, match="reason"):
        orch.advance(orch.trigger(SIGNAL), RunState.FAILED, actor="t")


def test_policy_rules() -> None:
    policy = orch.ApprovalPolicy(min_confidence=0.8, max_notional=10_000)
    assert policy.approves(SIGNAL, PLAN)[0]
    assert not policy.approves(SIGNAL.model_copy(update={"confidence": 0.7}), PLAN)[0]
    big = PLAN.model_copy(update={"quantity": 101})
    ok, reason = policy.approves(SIGNAL, big)
    assert not ok and "notional" in reason


def test_breaker_opens_after_n_failures_half_opens_and_closes() -> None:
    now = [0.0]
    breaker = orch.CircuitBreaker(failures=3, reset_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.before_call()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(orch.CircuitOpenError):
        breaker.before_call()
    now[0] = 10.0
    assert breaker.state == "half_open"
    breaker.before_call()
    breaker.failure()  # the trial failed: open again for a full period
    assert breaker.state == "open"
    now[0] = 20.0
    breaker.before_call()
    breaker.success()
    assert breaker.state == "closed"


# --- the run lifecycle ---

NOW = T0 + timedelta(seconds=30)
MANUAL = orch.OrchestrationConfig(0.6, ApprovalMode.MANUAL, orch.ApprovalPolicy(0.8, 10_000))
POLICY = orch.OrchestrationConfig(0.6, ApprovalMode.POLICY, orch.ApprovalPolicy(0.8, 10_000))


def command(kind: ControlCommandKind, target: str, actor: str = "alice", reason: str = "looks right") -> ControlCommand:
    return ControlCommand(
        command_id=f"c-{kind}-{target}",
        command=kind,
        target=target,
        reason=reason,
        actor=actor,
        parameters={},
        issued_time=NOW,
    )


class FakePlanner:
    def __init__(self, plan: Plan | None = PLAN, error: str = "") -> None:
        self.plan_to_give, self.error, self.calls = plan, error, 0

    async def plan(self, signal: Signal) -> Plan:
        self.calls += 1
        if self.error:
            raise PlanningError(self.error)
        assert self.plan_to_give is not None
        return self.plan_to_give


async def opened(
    config: orch.OrchestrationConfig = MANUAL, signal: Signal = SIGNAL, planner: FakePlanner | None = None
) -> tuple[list[OrchestrationRun], orch.Step]:
    reported: list[OrchestrationRun] = []

    async def report(run: OrchestrationRun) -> None:
        reported.append(run)

    step = await orch.open_run(
        signal,
        actor="orchestration",
        reason="confident",
        planner=planner or FakePlanner(),
        config=config,
        now=NOW,
        report=report,
    )
    return reported, step


def states(step: orch.Step) -> list[RunState]:
    return [run.state for run in step.runs]


def statuses(step: orch.Step) -> list[tuple[SignalStatus | None, SignalStatus]]:
    return [(t.from_status, t.to_status) for t in step.transitions]


@pytest.mark.asyncio
async def test_manual_approve_submits_one_intent_then_fill_completes() -> None:
    reported, step = await opened()
    assert [r.state for r in reported] == [RunState.TRIGGERED, RunState.PLANNING]
    assert reported[0].reason == "confident" and reported[1].attempt == 1
    assert states(step) == [RunState.PLANNED, RunState.AWAITING_APPROVAL]
    assert statuses(step) == [(SignalStatus.NEW, SignalStatus.PLANNED)]
    assert step.intent is None and step.entry is not None
    waiting = step.entry
    assert waiting.run.approval_mode is ApprovalMode.MANUAL and waiting.run.plan == PLAN

    step = orch.approve(waiting, command(ControlCommandKind.APPROVE_RUN, waiting.run.run_id), NOW)
    assert states(step) == [RunState.APPROVED, RunState.SUBMITTED]
    approved = step.runs[0]
    assert (approved.actor, approved.reason, approved.previous_state) == (
        "alice",
        "looks right",
        RunState.AWAITING_APPROVAL,
    )
    assert step.intent is not None and step.intent.order_id == ids.order_id(ids.run_id(SIGNAL.signal_id))
    assert (step.intent.quantity, step.intent.stop_loss, step.intent.run_id) == (50, 98.0, waiting.run.run_id)
    assert statuses(step) == [
        (SignalStatus.PLANNED, SignalStatus.APPROVED),
        (SignalStatus.APPROVED, SignalStatus.ORDERED),
    ]
    assert step.transitions[1].order_id == step.intent.order_id
    submitted = step.entry
    assert submitted is not None

    # The same approval again, or a late rejection: nothing, and never a second intent.
    for again in (
        orch.approve(submitted, command(ControlCommandKind.APPROVE_RUN, "x"), NOW),
        orch.reject(submitted, command(ControlCommandKind.REJECT_RUN, "x"), NOW),
    ):
        assert again.entry is None and again.intent is None and not again.runs and "submitted" in again.note

    child = fill(submitted.order_id, leg=OrderLeg.STOP_LOSS)
    assert orch.on_order_event(submitted, child, NOW).entry is None  # a bracket leg is not the run's order
    assert orch.on_order_event(submitted, fill(submitted.order_id, OrderStatus.ACKNOWLEDGED, 0), NOW).entry is None
    done = orch.on_order_event(submitted, fill(submitted.order_id), NOW)
    assert states(done) == [RunState.COMPLETED] and "50 filled at 100" in (done.runs[0].reason or "")
    assert statuses(done) == [(SignalStatus.ORDERED, SignalStatus.FILLED)]
    assert done.entry is not None and orch.on_order_event(done.entry, fill(submitted.order_id), NOW).entry is None


def fill(
    order_id: str, status: OrderStatus = OrderStatus.FILLED, filled: float = 50, leg: OrderLeg = OrderLeg.PARENT
) -> OrderEvent:
    return OrderEvent(
        event_id=f"e-{status}-{leg}",
        order_id=order_id,
        leg=leg,
        symbol="AAPL",
        status=status,
        filled_quantity=filled,
        remaining_quantity=50 - filled,
        avg_fill_price=100.0 if filled else None,
        broker_message="cancelled by TWS" if status is OrderStatus.CANCELLED else None,
        source=ExecutionSource.LIVE,
        event_time=NOW,
    )


@pytest.mark.asyncio
async def test_reject_records_actor_and_reason_and_blocks_approval() -> None:
    _, step = await opened()
    assert step.entry is not None
    step = orch.reject(step.entry, command(ControlCommandKind.REJECT_RUN, "r", actor="bob", reason="too late"), NOW)
    assert states(step) == [RunState.REJECTED]
    assert (step.runs[0].actor, step.runs[0].reason) == ("bob", "too late")
    assert statuses(step) == [(SignalStatus.PLANNED, SignalStatus.REJECTED)]
    assert step.entry is not None
    late = orch.approve(step.entry, command(ControlCommandKind.APPROVE_RUN, "r"), NOW)
    assert late.entry is None and late.intent is None and "rejected" in late.note


@pytest.mark.asyncio
async def test_expiry_at_the_signals_expiry_and_a_late_approval_expires() -> None:
    _, step = await opened()
    waiting = step.entry
    assert waiting is not None
    assert orch.expire(waiting, SIGNAL.expiry_time - timedelta(seconds=1)).entry is None
    assert not orch.due(waiting, NOW)
    assert orch.due(waiting, SIGNAL.expiry_time) and orch.entry_due(waiting.to_dict(), SIGNAL.expiry_time)
    gone = orch.expire(waiting, SIGNAL.expiry_time)
    assert states(gone) == [RunState.EXPIRED] and "expired" in (gone.runs[0].reason or "")
    assert statuses(gone) == [(SignalStatus.PLANNED, SignalStatus.EXPIRED)]
    late = orch.approve(waiting, command(ControlCommandKind.APPROVE_RUN, "r"), SIGNAL.expiry_time)
    assert states(late) == [RunState.EXPIRED] and late.intent is None
    # Final runs are kept a while after expiry, then forgotten (a redelivery then cannot reopen them: expired).
    assert gone.entry is not None and not orch.forgettable(gone.entry, SIGNAL.expiry_time)
    later = SIGNAL.expiry_time + orch.RETAIN_AFTER_EXPIRY
    assert orch.forgettable(gone.entry, later) and orch.entry_due(gone.entry.to_dict(), later)
    assert not orch.opens_automatically(SIGNAL, MANUAL, later)[0]


@pytest.mark.asyncio
async def test_risk_rejection_fails_the_run_with_the_failed_checks() -> None:
    _, step = await opened()
    assert step.entry is not None
    submitted = orch.approve(step.entry, command(ControlCommandKind.APPROVE_RUN, "r"), NOW).entry
    assert submitted is not None
    checks = [
        RiskCheck(name="max_order_notional", value=30_000, limit=25_000, passed=False, reason="too big"),
        RiskCheck(name="kill_switch", passed=True, reason="off"),
    ]
    decision = RiskDecision(
        decision_id="d",
        order_id=submitted.order_id,
        run_id=submitted.run.run_id,
        symbol="AAPL",
        approved=False,
        checks=checks,
        intent_time=NOW,
        decided_time=NOW,
    )
    assert orch.on_decision(submitted, decision.model_copy(update={"approved": True}), NOW).entry is None
    # A rejected modification of the order (modify_order) leaves the order, and so the run, as it was.
    modification = decision.model_copy(update={"decision_id": "modify:c1"})
    assert orch.on_decision(submitted, modification, NOW).entry is None
    failed = orch.on_decision(submitted, decision, NOW)
    assert states(failed) == [RunState.FAILED] and failed.runs[0].actor == "risk"
    assert "max_order_notional: too big" in (failed.runs[0].reason or "") and "kill_switch" not in (
        failed.runs[0].reason or ""
    )
    assert statuses(failed) == [(SignalStatus.ORDERED, SignalStatus.REJECTED)]
    assert failed.entry is not None and orch.on_decision(failed.entry, decision, NOW).entry is None


@pytest.mark.asyncio
async def test_order_ending_unfilled_fails_partial_fill_completes() -> None:
    _, step = await opened()
    assert step.entry is not None
    submitted = orch.approve(step.entry, command(ControlCommandKind.APPROVE_RUN, "r"), NOW).entry
    assert submitted is not None
    cancelled = orch.on_order_event(submitted, fill(submitted.order_id, OrderStatus.CANCELLED, 0), NOW)
    assert states(cancelled) == [RunState.FAILED] and "cancelled by TWS" in (cancelled.runs[0].reason or "")
    assert statuses(cancelled) == [(SignalStatus.ORDERED, SignalStatus.CLOSED)]
    partial = orch.on_order_event(submitted, fill(submitted.order_id, OrderStatus.CANCELLED, 20), NOW)
    assert states(partial) == [RunState.COMPLETED] and "20 filled" in (partial.runs[0].reason or "")


@pytest.mark.asyncio
async def test_policy_approves_small_confident_runs_and_leaves_others_to_an_operator() -> None:
    _, step = await opened(POLICY)
    assert states(step) == [RunState.PLANNED, RunState.APPROVED, RunState.SUBMITTED]
    assert step.runs[1].approval_mode is ApprovalMode.POLICY and step.runs[1].actor == "policy"
    assert step.intent is not None and step.intent.order_id == ids.order_id(step.runs[0].run_id)
    assert statuses(step) == [
        (SignalStatus.NEW, SignalStatus.PLANNED),
        (SignalStatus.PLANNED, SignalStatus.APPROVED),
        (SignalStatus.APPROVED, SignalStatus.ORDERED),
    ]

    _, declined = await opened(POLICY, SIGNAL.model_copy(update={"confidence": 0.7}))
    assert states(declined) == [RunState.PLANNED, RunState.AWAITING_APPROVAL] and declined.intent is None
    assert "policy declined (confidence 0.70" in (declined.runs[1].reason or "")
    _, big = await opened(POLICY, planner=FakePlanner(PLAN.model_copy(update={"quantity": 500})))
    assert states(big) == [RunState.PLANNED, RunState.AWAITING_APPROVAL] and "notional" in (big.runs[1].reason or "")


@pytest.mark.asyncio
async def test_open_run_planning_failure_and_expired_signal() -> None:
    down = FakePlanner(error="agent0 unreachable (ConnectError) on attempt 3")
    reported, step = await opened(planner=down)
    assert [r.state for r in reported] == [RunState.TRIGGERED, RunState.PLANNING]
    assert states(step) == [RunState.FAILED] and "unreachable" in (step.runs[0].reason or "")
    assert step.transitions == () and step.entry is not None and step.entry.run.state is RunState.FAILED

    stale = SIGNAL.model_copy(update={"expiry_time": NOW - timedelta(seconds=1)})
    planner = FakePlanner()
    reported, step = await opened(signal=stale, planner=planner)
    assert reported == [] and planner.calls == 0
    assert states(step) == [RunState.TRIGGERED, RunState.EXPIRED]


def test_what_opens_a_run_automatically() -> None:
    assert orch.opens_automatically(SIGNAL, MANUAL, NOW)[0]
    assert orch.opens_automatically(SIGNAL.model_copy(update={"confidence": 0.6}), MANUAL, NOW)[0]
    low, why = orch.opens_automatically(SIGNAL.model_copy(update={"confidence": 0.59}), MANUAL, NOW)
    assert not low and "0.59 < orchestration minimum 0.60" in why


def test_every_input_of_a_run_lands_on_one_key_and_round_trips() -> None:
    run_id = ids.run_id(SIGNAL.signal_id)
    key = ids.order_id(run_id)
    decision = RiskDecision(
        decision_id="d", order_id=key, symbol="AAPL", approved=True, checks=[], intent_time=NOW, decided_time=NOW
    )
    inputs: list[Record] = [
        SIGNAL,
        command(ControlCommandKind.APPROVE_RUN, run_id),
        command(ControlCommandKind.REJECT_RUN, run_id),
        command(ControlCommandKind.TRIGGER_RUN, SIGNAL.signal_id),
        decision,
        fill(key),
    ]
    for record in inputs:
        assert orch.command_key(record) == key
        kind, back, _ = orch.decode_command(orch.encode_command(record))
        assert back == record and kind is not orch.CommandKind.TICK
    assert orch.tick_key(run_id, None) == orch.tick_key(None, SIGNAL.signal_id) == key
    assert orch.command_key(command(ControlCommandKind.KILL_SWITCH_ON, "all")) is None
    kind, none, data = orch.decode_command(orch.encode_tick(run_id, None))
    assert (kind, none, data["run_id"]) == (orch.CommandKind.TICK, None, run_id)
    with pytest.raises(ValueError):
        orch.decode_command(b'{"kind": "launch_missiles"}')


def test_slots_are_forgotten_after_retention_and_triggers_after_grace() -> None:
    slot = orch.SignalSlot(signal=SIGNAL)
    assert orch.SignalSlot.from_dict(slot.to_dict()) == slot
    assert not orch.slot_due(slot.to_dict(), SIGNAL.expiry_time)
    assert orch.slot_due(slot.to_dict(), SIGNAL.expiry_time + orch.RETAIN_AFTER_EXPIRY)
    waiting = orch.SignalSlot(trigger=command(ControlCommandKind.TRIGGER_RUN, "s"))
    assert not orch.slot_forgettable(waiting, NOW) and not orch.slot_due(waiting.to_dict(), NOW)
    assert orch.slot_forgettable(waiting, NOW + orch.TRIGGER_GRACE)


def test_a_run_owned_signal_is_expired_by_the_run_not_twice() -> None:
    state = {"bars": [], "active": {"donchian_breakout": {"signal_id": "sig-1", "expiry": 0, "status": "new"}}}
    planned = signals.transition(
        "sig-1", "AAPL", "donchian_breakout", SignalStatus.NEW, SignalStatus.PLANNED, "run planned", T0, run_id="run-1"
    )
    owned = signals.on_transition(state, planned)
    assert owned is not None and owned["active"]["donchian_breakout"]["run_id"] == "run-1"
    bar = Bar(
        symbol="AAPL",
        start=T0,
        open=1,
        high=1,
        low=1,
        close=1,
        volume=1,
        wap=1,
        count=1,
        event_time=T0,
        ingest_time=T0,
        source=MarketDataSource.SIM,
    )
    after, _, moved = signals.on_bar(owned, bar, T0, 300, strategies={})
    assert moved == [] and after["active"] == {}  # slot freed, no second "expired"
    _, _, moved = signals.on_bar(state, bar, T0, 300, strategies={})
    assert [t.to_status for t in moved] == [SignalStatus.EXPIRED]  # a signal without a run still expires here


@pytest.mark.asyncio
async def test_an_unreadable_plan_fails_the_run_instead_of_escaping() -> None:
    bodies = iter([b'{"plan": {"plan_id": "p"}}', b"<html>proxy error</html>"])
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=next(bodies)))
    agent0 = Agent0Client(
        "http://agent0",
        timeout=1,
        max_attempts=3,
        backoff_seconds=0,
        breaker=orch.CircuitBreaker(5, 1),
        transport=transport,
    )
    for _ in range(2):
        records = await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, agent0)
        assert records[-1].state is RunState.FAILED and "no readable plan" in (records[-1].reason or "")
    await agent0.close()
