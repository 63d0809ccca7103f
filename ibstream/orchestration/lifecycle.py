"""The run lifecycle as pure logic: a run's stored state and one input (signal, approve/reject/trigger command,
risk decision, order event, expiry tick) in, the records to emit and the new state out; and the sweep's questions.

Every step is pure apart from the record timestamps: the orchestration agent's ``Orchestrator``
(``streams.orchestration.orchestrator``) loads the run's entry from the ``orchestration-runs`` table, calls one
step, emits the Step's records and stores its entry. A command that does not apply to the run's current state
returns an empty Step with a note, never an error: redelivered, late or out-of-order commands are normal under
at-least-once and must change nothing.

Who moves a run (states and allowed moves: ``ibstream.orchestration.machine``):

* a signal ≥ ``orchestration_min_confidence`` (or a ``trigger_run`` for any recent signal) opens it; Agent0 plans
  it (failure → failed with the cause);
* manual mode waits for ``approve_run``/``reject_run``; policy mode approves when ``ApprovalPolicy`` holds
  (planned → approved directly) and otherwise waits for an operator like manual mode;
* an awaiting run expires at its signal's ``expiry_time``;
* approval emits the run's one ``OrderIntent`` (``order_id = uuid5(run_id)``) and the run is submitted; the parent
  order's fill completes it, a risk rejection or an order ending unfilled at IB fails it.

Signal lifecycle transitions follow the run from planned on (planned, approved | rejected | expired, ordered,
filled, or rejected / closed when the order fails); a planning failure leaves the signal "new" to expire on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    OrchestrationRun,
    OrderEvent,
    OrderIntent,
    RiskDecision,
    Signal,
    SignalTransition,
)
from ibstream.contracts.enums import ApprovalMode, OrderLeg, OrderStatus, RunState, SignalStatus
from ibstream.orchestration.machine import (
    FINAL,
    ApprovalPolicy,
    Planner,
    advance,
    finish_planning,
    intent_for,
    start_planning,
    trigger,
)
from ibstream.order_modifications import is_modification
from ibstream.strategies.lifecycle import transition

#: How long final runs and recent signals stay in their tables after the signal's expiry. Forgetting them is safe
#: because an expired signal never opens a run again (``opens_automatically``, ``open_run``): a redelivery after
#: that is inert.
RETAIN_AFTER_EXPIRY = timedelta(hours=1)
#: How long a ``trigger_run`` for a signal orchestration has not seen yet waits for it. The signal and the command
#: come through different topics, so the command can overtake the signal.
TRIGGER_GRACE = timedelta(minutes=5)

_PRE_ORDER = frozenset({SignalStatus.NEW, SignalStatus.PLANNED, SignalStatus.APPROVED})


@dataclass(frozen=True)
class OrchestrationConfig:
    """What opens a run and who approves it."""

    min_confidence: float
    approval_mode: ApprovalMode
    policy: ApprovalPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> OrchestrationConfig:
        return cls(
            min_confidence=settings.orchestration.min_confidence,
            approval_mode=ApprovalMode(settings.orchestration.approval_mode),
            policy=ApprovalPolicy(
                settings.orchestration.approval_policy_min_confidence,
                settings.orchestration.approval_policy_max_notional,
            ),
        )


@dataclass(frozen=True)
class RunEntry:
    """A run's state in the ``orchestration-runs`` table (run_id → entry): its latest record, the signal it acts
    on, and the lifecycle status orchestration last gave that signal (the ``from_status`` of the next one)."""

    run: OrchestrationRun
    signal: Signal
    signal_status: SignalStatus = SignalStatus.NEW

    @property
    def order_id(self) -> str:
        return ids.order_id(self.run.run_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.model_dump(mode="json"),
            "signal": self.signal.model_dump(mode="json"),
            "signal_status": self.signal_status.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunEntry:
        return cls(
            run=OrchestrationRun.model_validate(data["run"]),
            signal=Signal.model_validate(data["signal"]),
            signal_status=SignalStatus(data["signal_status"]),
        )


@dataclass(frozen=True)
class SignalSlot:
    """A recent signal in the ``orchestration-signals`` table (signal_id → slot), so ``trigger_run`` can open a
    run for it later; or a ``trigger_run`` that arrived before its signal and waits for it."""

    signal: Signal | None = None
    trigger: ControlCommand | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": None if self.signal is None else self.signal.model_dump(mode="json"),
            "trigger": None if self.trigger is None else self.trigger.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalSlot:
        signal, trigger = data.get("signal"), data.get("trigger")
        return cls(
            signal=None if signal is None else Signal.model_validate(signal),
            trigger=None if trigger is None else ControlCommand.model_validate(trigger),
        )


@dataclass(frozen=True)
class Step:
    """What one input did to a run: the records to emit (intent first, then runs, then transitions) and the new
    entry to store; ``entry`` None means nothing changed and ``note`` says why."""

    entry: RunEntry | None = None
    runs: tuple[OrchestrationRun, ...] = ()
    transitions: tuple[SignalTransition, ...] = ()
    intent: OrderIntent | None = None
    note: str = ""


def is_expired(signal: Signal, now: datetime) -> bool:
    """Whether the signal is no longer actionable."""
    return now >= signal.expiry_time


def opens_automatically(signal: Signal, config: OrchestrationConfig, now: datetime) -> tuple[bool, str]:
    """Whether a signal opens a run on its own, and why (not)."""
    if signal.confidence < config.min_confidence:
        return False, f"confidence {signal.confidence:.2f} < orchestration minimum {config.min_confidence:.2f}"
    if is_expired(signal, now):
        # A replay or a new consumer group reading old signals must not plan (and maybe order) stale trades.
        return False, f"signal expired at {signal.expiry_time.isoformat()} before orchestration saw it"
    return True, f"confidence {signal.confidence:.2f} ≥ {config.min_confidence:.2f}"


def _transition(
    entry: RunEntry, to: SignalStatus, reason: str, now: datetime, order_id: str | None = None
) -> SignalTransition:
    return transition(
        entry.signal.signal_id,
        entry.signal.symbol,
        entry.signal.strategy,
        entry.signal_status,
        to,
        reason,
        now,
        run_id=entry.run.run_id,
        order_id=order_id,
    )


Report = Callable[[OrchestrationRun], Awaitable[None]]


async def open_run(
    signal: Signal,
    *,
    actor: str,
    reason: str,
    planner: Planner,
    config: OrchestrationConfig,
    now: datetime,
    report: Report,
) -> Step:
    """Open the signal's run: triggered → planning → (Agent0) planned → approval, or failed with the cause; a
    signal already expired gives triggered → expired without calling Agent0.

    ``report`` persists triggered and planning before the Agent0 call, so the run is visible while it plans; the
    returned Step holds the records after it.
    """
    run = trigger(signal, actor, reason)
    if is_expired(signal, now):
        gone = advance(
            run,
            RunState.EXPIRED,
            actor="orchestration",
            reason=f"signal expired at {signal.expiry_time.isoformat()} before the run was planned",
        )
        return Step(entry=RunEntry(gone, signal), runs=(run, gone))
    planning = start_planning(run)
    await report(run)
    await report(planning)
    return after_planning(await finish_planning(planning, signal, planner), signal, config, now)


def after_planning(result: OrchestrationRun, signal: Signal, config: OrchestrationConfig, now: datetime) -> Step:
    """planned → awaiting_approval (manual, or a policy that declines) or → approved → submitted (policy)."""
    entry = RunEntry(result, signal)
    if result.state is RunState.FAILED or result.plan is None:
        # The signal stays "new": it expires on its own (signals agent) and may still be traded by hand.
        return Step(entry=entry, runs=(result,), note="planning failed")
    plan = result.plan
    planned = _transition(
        entry, SignalStatus.PLANNED, f"run planned: {plan.side.value} {plan.quantity:g} {plan.order_type.value}", now
    )
    entry = replace(entry, signal_status=SignalStatus.PLANNED)
    if config.approval_mode is ApprovalMode.POLICY:
        ok, why = config.policy.approves(signal, plan)
        if ok:
            step = _approve(entry, actor="policy", reason=why, mode=ApprovalMode.POLICY, now=now)
            return replace(step, runs=(result, *step.runs), transitions=(planned, *step.transitions))
        # A policy that declines does not reject: a human may still approve what the rules would not.
        wait_reason = f"policy declined ({why}); waiting for approve_run or reject_run"
    else:
        wait_reason = "waiting for approve_run or reject_run"
    waiting = advance(
        result, RunState.AWAITING_APPROVAL, actor="orchestration", reason=wait_reason, approval_mode=ApprovalMode.MANUAL
    )
    return Step(entry=replace(entry, run=waiting), runs=(result, waiting), transitions=(planned,))


def _approve(entry: RunEntry, *, actor: str, reason: str, mode: ApprovalMode, now: datetime) -> Step:
    """approved → submitted with the run's one intent (``order_id = uuid5(run_id)``)."""
    approved = advance(entry.run, RunState.APPROVED, actor=actor, reason=reason, approval_mode=mode)
    moved = [_transition(entry, SignalStatus.APPROVED, f"approved by {actor}: {reason}", now)]
    entry = replace(entry, run=approved, signal_status=SignalStatus.APPROVED)
    assert approved.plan is not None  # a run only reaches approval after planned, which carries the plan
    intent = intent_for(approved, approved.plan, requested_by=f"orchestration:{actor}")
    submitted = advance(approved, RunState.SUBMITTED, actor="orchestration", reason=f"order intent {intent.order_id}")
    moved.append(_transition(entry, SignalStatus.ORDERED, f"order intent {intent.order_id}", now, intent.order_id))
    return Step(
        entry=replace(entry, run=submitted, signal_status=SignalStatus.ORDERED),
        runs=(approved, submitted),
        transitions=tuple(moved),
        intent=intent,
    )


def approve(entry: RunEntry, command: ControlCommand, now: datetime) -> Step:
    """``approve_run``: awaiting_approval → approved → submitted; too late → expired; otherwise nothing."""
    if entry.run.state is not RunState.AWAITING_APPROVAL:
        return Step(note=f"approve_run ignored: run is {entry.run.state.value}")
    if is_expired(entry.signal, now):
        return expire(entry, now)
    return _approve(entry, actor=command.actor, reason=command.reason, mode=ApprovalMode.MANUAL, now=now)


def reject(entry: RunEntry, command: ControlCommand, now: datetime) -> Step:
    """``reject_run``: awaiting_approval → rejected with the operator's reason; otherwise nothing."""
    if entry.run.state is not RunState.AWAITING_APPROVAL:
        return Step(note=f"reject_run ignored: run is {entry.run.state.value}")
    rejected = advance(
        entry.run, RunState.REJECTED, actor=command.actor, reason=command.reason, approval_mode=ApprovalMode.MANUAL
    )
    moved = _transition(entry, SignalStatus.REJECTED, f"rejected by {command.actor}: {command.reason}", now)
    return Step(
        entry=replace(entry, run=rejected, signal_status=SignalStatus.REJECTED), runs=(rejected,), transitions=(moved,)
    )


def expire(entry: RunEntry, now: datetime) -> Step:
    """awaiting_approval → expired once the signal's expiry passed; otherwise nothing."""
    if entry.run.state is not RunState.AWAITING_APPROVAL or not is_expired(entry.signal, now):
        return Step(
            note=f"not expired: run is {entry.run.state.value}, signal expires {entry.signal.expiry_time.isoformat()}"
        )
    why = f"signal expired at {entry.signal.expiry_time.isoformat()} while awaiting approval"
    gone = advance(entry.run, RunState.EXPIRED, actor="orchestration", reason=why)
    moved = _transition(entry, SignalStatus.EXPIRED, why, now)
    return Step(entry=replace(entry, run=gone, signal_status=SignalStatus.EXPIRED), runs=(gone,), transitions=(moved,))


def on_decision(entry: RunEntry, decision: RiskDecision, now: datetime) -> Step:
    """A risk rejection of the run's order: submitted → failed with the failed checks as the reason. A decision on
    a later modification of the order (``ibstream.order_modifications``) leaves the run alone: a rejected
    modification leaves the order working as it was."""
    if is_modification(decision):
        return Step(note=f"risk decision on a modification ({decision.decision_id}) ignored")
    if decision.approved:
        return Step(note="risk approved the order")
    if entry.run.state is not RunState.SUBMITTED:
        return Step(note=f"risk decision ignored: run is {entry.run.state.value}")
    failed = "; ".join(f"{check.name}: {check.reason}" for check in decision.checks if not check.passed)
    why = f"risk rejected order {decision.order_id}: {failed or 'no check named'}"
    done = advance(entry.run, RunState.FAILED, actor="risk", reason=why)
    moved = _transition(entry, SignalStatus.REJECTED, why, now, decision.order_id)
    return Step(entry=replace(entry, run=done, signal_status=SignalStatus.REJECTED), runs=(done,), transitions=(moved,))


_ORDER_ENDED = frozenset({OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR})


def on_order_event(entry: RunEntry, event: OrderEvent, now: datetime) -> Step:
    """The parent order filled → completed; it ended unfilled at IB → failed with IB's message. Bracket legs
    (stop loss, take profit) belong to the position, not to the run."""
    if event.leg is not OrderLeg.PARENT or entry.run.state is not RunState.SUBMITTED:
        return Step(note=f"order event {event.status.value}/{event.leg.value} ignored: run is {entry.run.state.value}")
    if event.status is OrderStatus.FILLED or (event.status in _ORDER_ENDED and event.filled_quantity > 0):
        price = "" if event.avg_fill_price is None else f" at {event.avg_fill_price:g}"
        why = f"order {event.order_id} {event.status.value} with {event.filled_quantity:g} filled{price}"
        done = advance(entry.run, RunState.COMPLETED, actor="execution", reason=why)
        moved = _transition(entry, SignalStatus.FILLED, why, now, event.order_id)
        return Step(
            entry=replace(entry, run=done, signal_status=SignalStatus.FILLED), runs=(done,), transitions=(moved,)
        )
    if event.status in _ORDER_ENDED:
        detail = event.broker_message or event.broker_status or "no message"
        why = f"order {event.order_id} {event.status.value} at IB without a fill: {detail}"
        done = advance(entry.run, RunState.FAILED, actor="execution", reason=why)
        status = SignalStatus.CLOSED if event.status is OrderStatus.CANCELLED else SignalStatus.REJECTED
        moved = _transition(entry, status, why, now, event.order_id)
        return Step(entry=replace(entry, run=done, signal_status=status), runs=(done,), transitions=(moved,))
    return Step(note=f"order {event.status.value}")


def due(entry: RunEntry, now: datetime) -> bool:
    """Whether the sweep has work for this run: it should expire, or it ended long enough ago to be forgotten."""
    if entry.run.state is RunState.AWAITING_APPROVAL:
        return is_expired(entry.signal, now)
    return forgettable(entry, now)


def forgettable(entry: RunEntry, now: datetime) -> bool:
    """A final run whose signal expired more than ``RETAIN_AFTER_EXPIRY`` ago."""
    return entry.run.state in FINAL and now >= entry.signal.expiry_time + RETAIN_AFTER_EXPIRY


def entry_due(data: Mapping[str, Any], now: datetime) -> bool:
    """``due`` on a stored entry without validating the whole run: the sweep reads every entry every period."""
    state = RunState(data["run"]["state"])
    expiry = datetime.fromisoformat(data["signal"]["expiry_time"])
    if state is RunState.AWAITING_APPROVAL:
        return now >= expiry
    return state in FINAL and now >= expiry + RETAIN_AFTER_EXPIRY


def slot_due(data: Mapping[str, Any], now: datetime) -> bool:
    """``slot_forgettable`` on a stored slot, read as cheaply as ``entry_due``."""
    signal, trigger = data.get("signal"), data.get("trigger")
    if signal is not None:
        return now >= datetime.fromisoformat(signal["expiry_time"]) + RETAIN_AFTER_EXPIRY
    return trigger is None or now >= datetime.fromisoformat(trigger["issued_time"]) + TRIGGER_GRACE


def slot_forgettable(slot: SignalSlot, now: datetime) -> bool:
    """A recent signal past expiry plus retention, or a trigger whose signal never came within the grace."""
    if slot.signal is not None:
        return now >= slot.signal.expiry_time + RETAIN_AFTER_EXPIRY
    return slot.trigger is None or now >= slot.trigger.issued_time + TRIGGER_GRACE
