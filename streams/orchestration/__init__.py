"""Orchestration: every confident signal becomes a run (planned by Agent0, approved by an operator or the policy,
ordered once), recorded on ``orchestration.runs.v1``.

* ``machine``: the run state machine, the approval policy and the planning step;
* ``lifecycle``: one pure step per input, the run's stored entry, what the sweep looks for;
* ``commands``: the internal command topic every input of a run is re-keyed onto;
* ``breaker`` and ``agent0_client``: planning over HTTP (service-role token) with a timeout, bounded retries and a
  circuit breaker;
* ``account``: the NetLiquidation plans are sized by, from the newest ``account.v1`` record;
* ``orchestrator``: one command applied to the run tables, in commit order (no Faust);
* ``agents``: the thin Faust agents ``orchestration-router`` and ``orchestration`` and the sweep timer.

The pure logic's names are importable from here; importing this package imports neither Faust nor httpx.
"""

from ibstream.orchestration.lifecycle import (
    RETAIN_AFTER_EXPIRY,
    TRIGGER_GRACE,
    OrchestrationConfig,
    Report,
    RunEntry,
    SignalSlot,
    Step,
    after_planning,
    approve,
    due,
    entry_due,
    expire,
    forgettable,
    is_expired,
    on_decision,
    on_order_event,
    open_run,
    opens_automatically,
    reject,
    slot_due,
    slot_forgettable,
)
from ibstream.orchestration.machine import (
    FINAL,
    TRANSITIONS,
    ApprovalPolicy,
    InvalidTransitionError,
    Planner,
    advance,
    finish_planning,
    intent_for,
    plan_mismatch,
    plan_run,
    start_planning,
    trigger,
)
from streams.orchestration.breaker import CircuitBreaker, CircuitOpenError
from streams.orchestration.commands import (
    COMMANDS_PARTITIONS,
    COMMANDS_TOPIC,
    RUN_COMMANDS,
    CommandKind,
    command_key,
    decode_command,
    encode_command,
    encode_tick,
    tick_key,
)

__all__ = [
    "COMMANDS_PARTITIONS",
    "COMMANDS_TOPIC",
    "FINAL",
    "RETAIN_AFTER_EXPIRY",
    "RUN_COMMANDS",
    "TRANSITIONS",
    "TRIGGER_GRACE",
    "ApprovalPolicy",
    "CircuitBreaker",
    "CircuitOpenError",
    "CommandKind",
    "InvalidTransitionError",
    "OrchestrationConfig",
    "Planner",
    "Report",
    "RunEntry",
    "SignalSlot",
    "Step",
    "advance",
    "after_planning",
    "approve",
    "command_key",
    "decode_command",
    "due",
    "encode_command",
    "encode_tick",
    "entry_due",
    "expire",
    "finish_planning",
    "forgettable",
    "intent_for",
    "is_expired",
    "on_decision",
    "on_order_event",
    "open_run",
    "opens_automatically",
    "plan_mismatch",
    "plan_run",
    "reject",
    "slot_due",
    "slot_forgettable",
    "start_planning",
    "tick_key",
    "trigger",
]
