"""Orchestration runs as pure logic: the run state machine, the approval policy, Agent0's circuit breaker, and one
step function per input (signal, approve/reject/trigger command, risk decision, order event, expiry tick).

A run's states (``orchestration.runs.v1``, one record per change): triggered → planning → planned →
awaiting_approval → approved → submitted → completed, or failed / expired / rejected with a reason. ``advance``
refuses any other move, so a redelivered or out-of-order command cannot take a run backwards or out of a final
state. Who moves a run:

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

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    OrchestrationRun,
    OrderEvent,
    OrderIntent,
    Plan,
    Record,
    RiskDecision,
    Signal,
    SignalTransition,
    utc_now,
)
from ibstream.contracts.enums import ApprovalMode, ControlCommandKind, OrderLeg, OrderStatus, RunState, SignalStatus
from ibstream.exceptions import IbstreamError
from streams.signals import transition

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
    return OrchestrationRun(run_id=ids.run_id(signal.signal_id), signal_id=signal.signal_id, symbol=signal.symbol,
                            state=RunState.TRIGGERED, reason=reason, actor=actor, attempt=0,
                            time=utc_now())  # fmt: skip


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
        run_id=run.run_id, signal_id=run.signal_id, symbol=run.symbol, state=to, previous_state=run.state,
        reason=reason, plan=plan if plan is not None else run.plan,
        approval_mode=approval_mode if approval_mode is not None else run.approval_mode, actor=actor,
        attempt=run.attempt if attempt is None else attempt, time=utc_now(),
    )  # fmt: skip


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
        order_id=ids.order_id(run.run_id), run_id=run.run_id, signal_id=run.signal_id, symbol=run.symbol,
        side=plan.side, quantity=plan.quantity, order_type=plan.order_type, limit_price=plan.limit_price,
        stop_price=plan.stop_price, stop_loss=plan.stop_loss, take_profit=plan.take_profit,
        requested_by=requested_by, created_time=utc_now(),
    )  # fmt: skip


class CircuitOpenError(IbstreamError):
    """The breaker is open: the dependency is not called."""


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures; after ``reset_seconds`` one trial call is let
    through (half-open): success closes the circuit, failure opens it again for another period."""

    def __init__(self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._reset = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self._reset else "open"

    def before_call(self) -> None:
        """Raise CircuitOpenError while open."""
        if self.state == "open":
            raise CircuitOpenError(f"circuit open after {self._failures} consecutive failures")

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()


class Planner(Protocol):
    """What planning needs from Agent0 (``streams.agent0_client.Agent0Client``)."""

    async def plan(self, signal: Signal) -> Plan: ...


def start_planning(run: OrchestrationRun) -> OrchestrationRun:
    """triggered → planning (one more attempt)."""
    return advance(run, RunState.PLANNING, actor="orchestration", attempt=run.attempt + 1)


async def finish_planning(planning: OrchestrationRun, signal: Signal, planner: Planner) -> OrchestrationRun:
    """planning → planned with Agent0's plan, or → failed with the cause of the failure as the reason."""
    try:
        plan = await planner.plan(signal)
    except IbstreamError as error:
        return advance(planning, RunState.FAILED, actor="orchestration", reason=str(error))
    return advance(planning, RunState.PLANNED, actor="agent0", plan=plan)


async def plan_run(run: OrchestrationRun, signal: Signal, planner: Planner) -> list[OrchestrationRun]:
    """triggered → planning → planned, or → failed with the cause; every record is returned to be persisted."""
    planning = start_planning(run)
    return [planning, await finish_planning(planning, signal, planner)]


# --- the run lifecycle: a run's stored state and one input in, the records to emit and the new state out ---
#
# Every function below is pure apart from the record timestamps: the agent (``streams.agents``) loads the run's
# entry from the ``orchestration-runs`` table, calls one of them, emits the Step's records and stores its entry.
# A command that does not apply to the run's current state returns an empty Step with a note, never an error:
# redelivered, late or out-of-order commands are normal under at-least-once and must change nothing.

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
            min_confidence=settings.orchestration_min_confidence,
            approval_mode=ApprovalMode(settings.approval_mode),
            policy=ApprovalPolicy(settings.approval_policy_min_confidence, settings.approval_policy_max_notional),
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
        return {"run": self.run.model_dump(mode="json"), "signal": self.signal.model_dump(mode="json"),
                "signal_status": self.signal_status.value}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunEntry:
        return cls(run=OrchestrationRun.model_validate(data["run"]), signal=Signal.model_validate(data["signal"]),
                   signal_status=SignalStatus(data["signal_status"]))  # fmt: skip


@dataclass(frozen=True)
class SignalSlot:
    """A recent signal in the ``orchestration-signals`` table (signal_id → slot), so ``trigger_run`` can open a
    run for it later; or a ``trigger_run`` that arrived before its signal and waits for it."""

    signal: Signal | None = None
    trigger: ControlCommand | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"signal": None if self.signal is None else self.signal.model_dump(mode="json"),
                "trigger": None if self.trigger is None else self.trigger.model_dump(mode="json")}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalSlot:
        signal, trigger = data.get("signal"), data.get("trigger")
        return cls(signal=None if signal is None else Signal.model_validate(signal),
                   trigger=None if trigger is None else ControlCommand.model_validate(trigger))  # fmt: skip


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


def _transition(entry: RunEntry, to: SignalStatus, reason: str, now: datetime, order_id: str | None = None
                ) -> SignalTransition:  # fmt: skip
    return transition(entry.signal.signal_id, entry.signal.symbol, entry.signal.strategy, entry.signal_status, to,
                      reason, now, run_id=entry.run.run_id, order_id=order_id)  # fmt: skip


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
        return Step(entry=RunEntry(gone, signal), runs=(run, gone))  # fmt: skip
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
    planned = _transition(entry, SignalStatus.PLANNED,
                          f"run planned: {plan.side.value} {plan.quantity:g} {plan.order_type.value}", now)  # fmt: skip
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
    waiting = advance(result, RunState.AWAITING_APPROVAL, actor="orchestration", reason=wait_reason,
                      approval_mode=ApprovalMode.MANUAL)  # fmt: skip
    return Step(entry=replace(entry, run=waiting), runs=(result, waiting), transitions=(planned,))


def _approve(entry: RunEntry, *, actor: str, reason: str, mode: ApprovalMode, now: datetime) -> Step:
    """approved → submitted with the run's one intent (``order_id = uuid5(run_id)``)."""
    approved = advance(entry.run, RunState.APPROVED, actor=actor, reason=reason, approval_mode=mode)
    moved = [_transition(entry, SignalStatus.APPROVED, f"approved by {actor}: {reason}", now)]
    entry = replace(entry, run=approved, signal_status=SignalStatus.APPROVED)
    assert approved.plan is not None  # a run only reaches approval after planned, which carries the plan
    intent = intent_for(approved, approved.plan, requested_by=f"orchestration:{actor}")
    submitted = advance(approved, RunState.SUBMITTED, actor="orchestration",
                        reason=f"order intent {intent.order_id}")  # fmt: skip
    moved.append(_transition(entry, SignalStatus.ORDERED, f"order intent {intent.order_id}", now, intent.order_id))
    return Step(entry=replace(entry, run=submitted, signal_status=SignalStatus.ORDERED), runs=(approved, submitted),
                transitions=tuple(moved), intent=intent)  # fmt: skip


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
    rejected = advance(entry.run, RunState.REJECTED, actor=command.actor, reason=command.reason,
                       approval_mode=ApprovalMode.MANUAL)  # fmt: skip
    moved = _transition(entry, SignalStatus.REJECTED, f"rejected by {command.actor}: {command.reason}", now)
    return Step(entry=replace(entry, run=rejected, signal_status=SignalStatus.REJECTED), runs=(rejected,),
                transitions=(moved,))  # fmt: skip


def expire(entry: RunEntry, now: datetime) -> Step:
    """awaiting_approval → expired once the signal's expiry passed; otherwise nothing."""
    if entry.run.state is not RunState.AWAITING_APPROVAL or not is_expired(entry.signal, now):
        return Step(note=f"not expired: run is {entry.run.state.value}, signal expires "
                         f"{entry.signal.expiry_time.isoformat()}")  # fmt: skip
    why = f"signal expired at {entry.signal.expiry_time.isoformat()} while awaiting approval"
    gone = advance(entry.run, RunState.EXPIRED, actor="orchestration", reason=why)
    moved = _transition(entry, SignalStatus.EXPIRED, why, now)
    return Step(entry=replace(entry, run=gone, signal_status=SignalStatus.EXPIRED), runs=(gone,),
                transitions=(moved,))  # fmt: skip


def on_decision(entry: RunEntry, decision: RiskDecision, now: datetime) -> Step:
    """A risk rejection of the run's order: submitted → failed with the failed checks as the reason."""
    if decision.approved:
        return Step(note="risk approved the order")
    if entry.run.state is not RunState.SUBMITTED:
        return Step(note=f"risk decision ignored: run is {entry.run.state.value}")
    failed = "; ".join(f"{check.name}: {check.reason}" for check in decision.checks if not check.passed)
    why = f"risk rejected order {decision.order_id}: {failed or 'no check named'}"
    done = advance(entry.run, RunState.FAILED, actor="risk", reason=why)
    moved = _transition(entry, SignalStatus.REJECTED, why, now, decision.order_id)
    return Step(entry=replace(entry, run=done, signal_status=SignalStatus.REJECTED), runs=(done,),
                transitions=(moved,))  # fmt: skip


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
        return Step(entry=replace(entry, run=done, signal_status=SignalStatus.FILLED), runs=(done,),
                    transitions=(moved,))  # fmt: skip
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


# --- the internal command topic ---
#
# Inputs arrive keyed three ways: signals by symbol, control by "family:target", decisions and order events by
# order_id. The router agent re-keys each one by ``command_key`` onto ``<prefix>orchestration-commands`` so every
# input of one run lands on one partition, hence one worker and one table partition. The key is the run's
# ``order_id`` (uuid5 of the run_id, so one-to-one with runs) rather than the run_id itself because order events
# carry only the order_id and a uuid5 cannot be inverted; every other input can compute it.


#: The internal topic (topic prefix prepended) and its partition count, the same as the runs topic's.
COMMANDS_TOPIC = "orchestration-commands"
COMMANDS_PARTITIONS = 3


class CommandKind(StrEnum):
    """What an internal command carries."""

    SIGNAL = "signal"
    CONTROL = "control"
    DECISION = "decision"
    ORDER_EVENT = "order_event"
    TICK = "tick"


RUN_COMMANDS = frozenset({ControlCommandKind.APPROVE_RUN, ControlCommandKind.REJECT_RUN,
                          ControlCommandKind.TRIGGER_RUN})  # fmt: skip


def command_key(record: Record) -> str | None:
    """The partition key of an input on the command topic; None when orchestration has no use for it."""
    if isinstance(record, Signal):
        return ids.order_id(ids.run_id(record.signal_id))
    if isinstance(record, ControlCommand):
        if record.command is ControlCommandKind.TRIGGER_RUN:
            return ids.order_id(ids.run_id(record.target))
        if record.command in RUN_COMMANDS:
            return ids.order_id(record.target)
        return None  # the kill switch is risk's and execution's business
    if isinstance(record, RiskDecision | OrderEvent):
        return record.order_id
    return None


_KINDS: dict[type[Record], CommandKind] = {
    Signal: CommandKind.SIGNAL,
    ControlCommand: CommandKind.CONTROL,
    RiskDecision: CommandKind.DECISION,
    OrderEvent: CommandKind.ORDER_EVENT,
}
_RECORDS: dict[CommandKind, type[Record]] = {kind: record for record, kind in _KINDS.items()}  # fmt: skip


def encode_command(record: Record) -> bytes:
    """An input as an internal command (JSON: the topic is ours and short-lived, no Avro contract needed)."""
    return json.dumps({"kind": _KINDS[type(record)].value, "record": record.model_dump(mode="json")}).encode()


def encode_tick(run_id: str | None, signal_id: str | None) -> bytes:
    """A sweep request for one run and/or one signal slot (both live on the same partition)."""
    return json.dumps({"kind": CommandKind.TICK.value, "run_id": run_id, "signal_id": signal_id}).encode()


def tick_key(run_id: str | None, signal_id: str | None) -> str:
    """The partition key of a tick: the run's order_id, as for every other input of that run."""
    if run_id is None:
        if signal_id is None:
            raise ValueError("a tick needs a run_id or a signal_id")
        run_id = ids.run_id(signal_id)
    return ids.order_id(run_id)


def decode_command(raw: bytes) -> tuple[CommandKind, Record | None, dict[str, Any]]:
    """(kind, record or None for a tick, the raw envelope); ValueError on anything else."""
    data = json.loads(raw)
    kind = CommandKind(data["kind"])
    if kind is CommandKind.TICK:
        return kind, None, data
    return kind, _RECORDS[kind].model_validate(data["record"]), data
