"""Run state machine, approval policy and circuit breaker (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ibstream import ids
from ibstream.contracts import Plan, Signal
from ibstream.contracts.enums import OrderType, RunState, Side
from streams import orchestration as orch

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SIGNAL = Signal(signal_id="sig-1", symbol="AAPL", strategy="donchian_breakout", side=Side.BUY, confidence=0.9,
                entry=100.0, stop=98.0, take_profit=104.0, bar_start=T0, created_time=T0,
                expiry_time=T0 + timedelta(minutes=5), features={})  # fmt: skip
PLAN = Plan(plan_id="p", side=Side.BUY, quantity=50, order_type=OrderType.LMT, limit_price=100.0, stop_loss=98.0,
            take_profit=104.0, rationale="test")  # fmt: skip

HAPPY = [RunState.PLANNING, RunState.PLANNED, RunState.AWAITING_APPROVAL, RunState.APPROVED, RunState.SUBMITTED,
         RunState.COMPLETED]  # fmt: skip


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
        ([RunState.PLANNING, RunState.PLANNED, RunState.APPROVED, RunState.SUBMITTED, RunState.COMPLETED],
         RunState.FAILED),  # final
    ],
)  # fmt: skip
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
