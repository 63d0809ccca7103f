"""A run's state machine, the approval policy and the planning step, as pure functions (planning awaits a
``Planner``, the Agent0 client in the app).

A run's states (``orchestration.runs.v1``, one record per change): triggered → planning → planned →
awaiting_approval → approved → submitted → completed, or failed / expired / rejected with a reason. ``advance``
refuses any other move, so a redelivered or out-of-order command cannot take a run backwards or out of a final
state. Who moves a run, and when, is ``ibstream.orchestration.lifecycle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ibstream import ids
from ibstream.contracts import OrchestrationRun, OrderIntent, Plan, Signal, utc_now
from ibstream.contracts.enums import ApprovalMode, RunState, Side
from ibstream.exceptions import IbstreamError

FINAL = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.EXPIRED, RunState.REJECTED})
_ABORTS = frozenset({RunState.FAILED, RunState.EXPIRED, RunState.REJECTED})

#: Allowed moves; every non-final state may also fail, expire or be rejected.
TRANSITIONS: dict[RunState | None, frozenset[RunState]] = {
    None: frozenset({RunState.TRIGGERED}),
    RunState.TRIGGERED: frozenset({RunState.PLANNING}) | _ABORTS,
    RunState.PLANNING: frozenset({RunState.PLANNED}) | _ABORTS,
    RunState.PLANNED: frozenset({RunState.AWAITING_APPROVAL, RunState.APPROVED}) | _ABORTS,
    RunState.AWAITING_APPROVAL: frozenset({RunState.APPROVED}) | _ABORTS,
    RunState.APPROVED: frozenset({RunState.SUBMITTED}) | _ABORTS,
    RunState.SUBMITTED: frozenset({RunState.COMPLETED, RunState.FAILED}),
    **{state: frozenset() for state in FINAL},
}


class InvalidTransitionError(IbstreamError):
    """A run was asked to move where the state machine does not allow."""


def trigger(signal: Signal, actor: str = "orchestration", reason: str | None = None) -> OrchestrationRun:
    """The first record of the run for a signal (``run_id = uuid5(signal_id)``)."""
    return OrchestrationRun(
        run_id=ids.run_id(signal.signal_id),
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        state=RunState.TRIGGERED,
        reason=reason,
        actor=actor,
        attempt=0,
        time=utc_now(),
    )


def advance(
    run: OrchestrationRun,
    to: RunState,
    *,
    actor: str,
    reason: str | None = None,
    plan: Plan | None = None,
    approval_mode: ApprovalMode | None = None,
    attempt: int | None = None,
) -> OrchestrationRun:
    """The run's next record, or InvalidTransitionError. Failures and rejections must say why."""
    if to not in TRANSITIONS[run.state]:
        raise InvalidTransitionError(f"run {run.run_id}: {run.state.value} → {to.value} is not allowed")
    if to in _ABORTS and not reason:
        raise InvalidTransitionError(f"run {run.run_id}: {to.value} needs a reason")
    return OrchestrationRun(
        run_id=run.run_id,
        signal_id=run.signal_id,
        symbol=run.symbol,
        state=to,
        previous_state=run.state,
        reason=reason,
        plan=plan if plan is not None else run.plan,
        approval_mode=approval_mode if approval_mode is not None else run.approval_mode,
        actor=actor,
        attempt=run.attempt if attempt is None else attempt,
        time=utc_now(),
    )


@dataclass(frozen=True)
class ApprovalPolicy:
    """Approve without a human when the signal is confident enough and the order small enough."""

    min_confidence: float
    max_notional: float

    def approves(self, signal: Signal, plan: Plan) -> tuple[bool, str]:
        price = plan.limit_price if plan.limit_price is not None else signal.entry
        notional = plan.quantity * price
        if signal.confidence < self.min_confidence:
            return False, f"confidence {signal.confidence:.2f} < policy minimum {self.min_confidence:.2f}"
        if notional > self.max_notional:
            return False, f"notional {notional:,.2f} > policy maximum {self.max_notional:,.2f}"
        return True, f"policy: confidence {signal.confidence:.2f}, notional {notional:,.2f}"


def intent_for(run: OrchestrationRun, plan: Plan, requested_by: str = "orchestration") -> OrderIntent:
    """The one order intent of an approved run: ``order_id = uuid5(NAMESPACE, run_id)``."""
    return OrderIntent(
        order_id=ids.order_id(run.run_id),
        run_id=run.run_id,
        signal_id=run.signal_id,
        symbol=run.symbol,
        side=plan.side,
        quantity=plan.quantity,
        order_type=plan.order_type,
        limit_price=plan.limit_price,
        stop_price=plan.stop_price,
        stop_loss=plan.stop_loss,
        take_profit=plan.take_profit,
        requested_by=requested_by,
        created_time=utc_now(),
    )


class Planner(Protocol):
    """What planning needs from Agent0 (``streams.orchestration.agent0_client.Agent0Client``)."""

    async def plan(self, signal: Signal) -> Plan: ...


def start_planning(run: OrchestrationRun) -> OrchestrationRun:
    """triggered → planning (one more attempt)."""
    return advance(run, RunState.PLANNING, actor="orchestration", attempt=run.attempt + 1)


def plan_mismatch(signal: Signal, plan: Plan) -> str | None:
    """Why a plan does not fit the signal on record (side, entry price, stop and target on their sides of the
    entry), or None. Agent0 may widen a stop to the minimum distance, so only the sides are checked for the
    bracket; the side and a limit entry must be the signal's own."""
    if plan.side is not signal.side:
        return f"plan side {plan.side.value} ≠ signal side {signal.side.value}"
    if plan.limit_price is not None and plan.limit_price != signal.entry:
        return f"plan limit {plan.limit_price} ≠ signal entry {signal.entry}"
    buy = plan.side is Side.BUY
    if plan.stop_loss >= signal.entry if buy else plan.stop_loss <= signal.entry:
        return f"plan stop {plan.stop_loss} is on the wrong side of the signal's entry {signal.entry}"
    if plan.take_profit <= signal.entry if buy else plan.take_profit >= signal.entry:
        return f"plan take profit {plan.take_profit} is on the wrong side of the signal's entry {signal.entry}"
    return None


async def finish_planning(planning: OrchestrationRun, signal: Signal, planner: Planner) -> OrchestrationRun:
    """planning → planned with Agent0's plan, or → failed with the cause of the failure as the reason (a plan that
    does not match the signal on record is such a failure: it would order something the signal never said)."""
    try:
        plan = await planner.plan(signal)
    except IbstreamError as error:
        return conclude_planning(planning, signal, error)
    return conclude_planning(planning, signal, plan)


def conclude_planning(planning: OrchestrationRun, signal: Signal, outcome: Plan | IbstreamError) -> OrchestrationRun:
    """planning → planned with the plan, or → failed with why: the planner's error, or a plan that does not match
    the signal (the backtest plans in-process and concludes here as orchestration does)."""
    if isinstance(outcome, IbstreamError):
        return advance(planning, RunState.FAILED, actor="orchestration", reason=str(outcome))
    plan = outcome
    mismatch = plan_mismatch(signal, plan)
    if mismatch is not None:
        return advance(planning, RunState.FAILED, actor="orchestration", reason=f"agent0's plan refused: {mismatch}")
    return advance(planning, RunState.PLANNED, actor="agent0", plan=plan)


async def plan_run(run: OrchestrationRun, signal: Signal, planner: Planner) -> list[OrchestrationRun]:
    """triggered → planning → planned, or → failed with the cause; every record is returned to be persisted."""
    planning = start_planning(run)
    return [planning, await finish_planning(planning, signal, planner)]
