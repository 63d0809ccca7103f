"""What streams tells operators: its metrics, and the alerts it raises (kill switch seen by risk, Agent0 circuit).

Instruments are declared here, one line each (see ``ibstream.telemetry``), and recorded by the agents. Alerts go
through one ``AlertBook`` per worker, so the record on ``ops.alerts.v1`` and ``ibstream_alerts_firing`` agree; the
book is only touched from the Faust event loop (agents and timers), never from the risk view's feed thread.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from ibstream.alerting import AlertBook
from ibstream.contracts import Alert, OrchestrationRun, RiskDecision
from ibstream.contracts.enums import RunState, Severity
from ibstream.telemetry import meter

COMPONENT = "streams"
_meter = meter("streams")

SIGNALS = _meter.create_counter("ibstream_signals", description="Signals emitted, by strategy, symbol and side")
RUNS = _meter.create_counter("ibstream_orchestration_runs", description="Runs that reached a final state, by state")
RUN_STAGE = _meter.create_histogram(
    "ibstream_orchestration_stage_seconds",
    unit="s",
    description="Time a run spent between two states, by stage (triggered_to_planned, planned_to_submitted)",
)
AGENT0_REQUESTS = _meter.create_counter(
    "ibstream_agent0_requests",
    description="Agent0 plan calls by outcome (ok, timeout, unreachable, http_4xx, http_5xx, bad_plan, circuit_open)",
)
AGENT0_LATENCY = _meter.create_histogram(
    "ibstream_agent0_request_seconds", unit="s", description="Duration of one Agent0 plan call, by outcome"
)
RISK_CHECKS = _meter.create_counter(
    "ibstream_risk_checks", description="Risk checks evaluated, by check and whether it passed"
)
RISK_DECISIONS = _meter.create_counter("ibstream_risk_decisions", description="Risk decisions, by approved")
BAR_AGGREGATES = _meter.create_counter(
    "ibstream_bar_aggregates",
    description="Aggregated bars emitted, by timeframe and kind (new, or revision: a late 5-second bar corrected one)",
)
SIGNAL_OUTCOMES = _meter.create_counter(
    "ibstream_signal_outcomes", description="Signals scored, by strategy and outcome (hit_target, hit_stop, expired)"
)
RISK_LATENCY = _meter.create_histogram(
    "ibstream_risk_intent_to_decision_seconds", unit="s", description="Intent created → risk decided"
)

#: The state that ends a measured stage → the state that starts it, and the stage's label.
_STAGES = {
    RunState.PLANNED: (RunState.TRIGGERED, "triggered_to_planned"),
    RunState.SUBMITTED: (RunState.PLANNED, "planned_to_submitted"),
}
#: Runs whose stage times are remembered (a worker's in-flight runs; older ones just lose their latency sample).
_MAX_TRACKED_RUNS = 10_000


def _flag(value: bool) -> str:
    return "true" if value else "false"


def observe_decisions(decided: Iterable[tuple[RiskDecision, datetime]]) -> None:
    """A batch's decisions (each with its intent's ``created_time``): the check and decision counters are added once
    per label set of the batch, not once per check of every decision (a dozen counter adds per decision cost risk
    about a tenth of its time); the latency histogram takes each decision's sample."""
    checks: Counter[tuple[str, bool]] = Counter()
    approvals: Counter[bool] = Counter()
    for decision, intent_created in decided:
        for check in decision.checks:
            checks[(check.name, check.passed)] += 1
        approvals[decision.approved] += 1
        RISK_LATENCY.record(max((decision.decided_time - intent_created).total_seconds(), 0.0))
    for (name, passed), count in checks.items():
        RISK_CHECKS.add(count, {"check": name, "passed": _flag(passed)})
    for approved, count in approvals.items():
        RISK_DECISIONS.add(count, {"approved": _flag(approved)})


class RunClock:
    """Run outcome counts and stage latencies from the run records orchestration emits.

    Records may repeat under at-least-once: a repeated stage record measures nothing again, a repeated final record
    is counted again (rare, and an over-count beats a dropped outcome).
    """

    def __init__(self) -> None:
        self._seen: OrderedDict[str, dict[RunState, datetime]] = OrderedDict()

    def observe(self, run: OrchestrationRun) -> None:
        times = self._seen.setdefault(run.run_id, {})
        self._seen.move_to_end(run.run_id)
        stage = _STAGES.get(run.state) if run.state not in times else None
        times.setdefault(run.state, run.time)
        if stage is not None and stage[0] in times:
            RUN_STAGE.record(max((run.time - times[stage[0]]).total_seconds(), 0.0), {"stage": stage[1]})
        if run.state in (RunState.COMPLETED, RunState.FAILED, RunState.EXPIRED, RunState.REJECTED):
            RUNS.add(1, {"state": run.state.value})
            self._seen.pop(run.run_id, None)
        while len(self._seen) > _MAX_TRACKED_RUNS:
            self._seen.popitem(last=False)


class Breaker(Protocol):
    @property
    def state(self) -> str: ...


class StreamsAlerts:
    """The worker's alert book and the alerts streams decides: ``kill_switch`` (one per target the risk view holds
    on), ``trading_state`` (one per scope reducing or halted other than by the kill switch) and
    ``agent0_circuit_open``. Each ``sync_*`` returns the alert records to emit (fired or resolved)."""

    def __init__(self, book: AlertBook | None = None) -> None:
        self.book = book if book is not None else AlertBook(COMPONENT)

    def sync_kill_switches(self, on: dict[str, str]) -> list[Alert]:
        """``on``: scope → "actor: reason" of every kill switch the view holds on."""
        return self._sync_scopes(
            "kill_switch",
            on,
            lambda target, why: f"kill switch on for {target} ({why}): risk rejects every new intent in scope",
            lambda target: f"kill switch off for {target}",
        )

    def sync_trading_states(self, restricted: dict[str, str]) -> list[Alert]:
        """``restricted``: scope → "state for scope by actor: reason" of every scope reducing or halted."""
        return self._sync_scopes(
            "trading_state",
            restricted,
            lambda scope, why: f"trading state {why}: risk passes only what the state allows",
            lambda scope: f"trading state active again for {scope}",
            # Reducing is an operator's deliberate wind-down; halted (by hand or by an unreadable record) stops all.
            lambda why: Severity.CRITICAL if why.startswith("halted") else Severity.WARNING,
        )

    def _sync_scopes(
        self,
        kind: str,
        on: dict[str, str],
        firing_text: Callable[[str, str], str],
        resolved_text: Callable[[str], str],
        severity: Callable[[str], Severity] = lambda why: Severity.CRITICAL,
    ) -> list[Alert]:
        changes: list[Alert] = []
        for target, why in sorted(on.items()):
            fired = self.book.fire(kind, target, severity(why), firing_text(target, why), details={"target": target})
            if fired is not None:
                changes.append(fired)
        for identity in sorted(self.book.firing):
            firing_kind, _, target = identity.partition(":")
            if firing_kind == kind and target not in on:
                resolved = self.book.resolve(kind, target, resolved_text(target))
                if resolved is not None:
                    changes.append(resolved)
        return changes

    def sync_circuit(self, breaker: Breaker | None) -> list[Alert]:
        """Fire while the breaker is open or half-open (no successful call yet), resolve once it closed."""
        if breaker is None:
            return []
        state = breaker.state
        if state == "closed":
            resolved = self.book.resolve("agent0_circuit_open", "agent0", "Agent0 answers again: circuit closed")
            return [] if resolved is None else [resolved]
        fired = self.book.fire(
            "agent0_circuit_open",
            "agent0",
            Severity.WARNING,
            "Agent0 circuit open after repeated failures: runs fail fast instead of planning",
            details={"breaker_state": state},
        )
        return [] if fired is None else [fired]
