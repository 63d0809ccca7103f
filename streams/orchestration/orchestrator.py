"""The orchestration agent's work for one internal command, without Faust: load the run from its table, call the
pure step (``ibstream.orchestration.lifecycle``), emit the step's records, store the run. The agents
(``streams.orchestration.agents``) feed it the command topic's events and ask it for the sweep's ticks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from opentelemetry.trace import SpanContext

from ibstream import ids
from ibstream.contracts import (
    ControlCommand,
    OrchestrationRun,
    OrderEvent,
    Record,
    RiskDecision,
    Signal,
    order_intents,
    runs,
    signal_transitions,
    utc_now,
)
from ibstream.contracts.enums import ControlCommandKind, RunState
from ibstream.orchestration import lifecycle, machine
from ibstream.telemetry import consume_span, current_span_context, log_context
from streams.context import AgentContext, messaging_of
from streams.observability import RunClock
from streams.orchestration import commands, flatten

log = logging.getLogger(__name__)

#: Runs whose opening span orchestration remembers (a worker's open runs; older ones start fresh traces).
_MAX_RUN_TRACES = 10_000


class MutableTable(Protocol):
    """A Faust table as orchestration uses it (JSON-able values)."""

    def get(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def __delitem__(self, key: str) -> None: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


@dataclass
class OrchestrationTables:
    """Orchestration's state, all partitioned like the command topic (by the run's order_id)."""

    #: run_id → ``RunEntry`` dict: the run's latest record, its signal and the signal's status.
    runs: MutableTable
    #: signal_id → ``SignalSlot`` dict: recent signals (for trigger_run) and triggers waiting for their signal.
    signals: MutableTable
    #: order_id → run_id of every submitted run, so decisions and order events (which carry only the order_id)
    #: find their run.
    orders: MutableTable


def _correlation(kind: commands.CommandKind, record: Record | None, data: Mapping[str, Any]) -> dict[str, str]:
    """The run/signal/order ids of a command, for ``log_context``."""
    if isinstance(record, Signal):
        return {"signal_id": record.signal_id, "run_id": ids.run_id(record.signal_id)}
    if isinstance(record, ControlCommand):
        if record.command is ControlCommandKind.TRIGGER_RUN:
            return {"signal_id": record.target, "run_id": ids.run_id(record.target)}
        if record.command is ControlCommandKind.FLATTEN:
            return {"command_id": record.command_id, "scope": record.target}
        return {"run_id": record.target, "order_id": ids.order_id(record.target)}
    if isinstance(record, RiskDecision | OrderEvent):
        return {"order_id": record.order_id}
    found = {name: str(data[name]) for name in ("run_id", "signal_id") if data.get(name)}
    return {"kind": kind.value, **found}


@dataclass
class FlattenConfig:
    """What a flatten command needs: the positions orchestration sees (symbol → signed quantity; None until its
    feed has caught up), how old a command may be, and the account id (a target naming it means the account)."""

    positions: Callable[[], Mapping[str, float] | None] | None = None
    max_age: timedelta = timedelta(seconds=60)
    account: str | None = None
    #: How long to wait for the positions feed to catch up before giving up on a flatten.
    wait_seconds: float = 10.0

    async def held_positions(self) -> Mapping[str, float] | None:
        """The positions, waiting up to ``wait_seconds`` for the feed; None if they are still unknown."""
        if self.positions is None:
            return None
        deadline = time.monotonic() + self.wait_seconds
        held = self.positions()
        while held is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            held = self.positions()
        return held


class Orchestrator:
    """The orchestration agent's work for one internal command: load the run, call the pure step, emit, store.

    Commit order per command: the intent (acknowledged), then the run records, then the signal transitions, all
    acknowledged, and only then the table entries. A crash before the table write redelivers the command, which
    makes the same step again: records may repeat (same ids, same order_id, at-least-once), never go missing. A
    redelivery after the table write finds the run already moved and changes nothing.
    """

    def __init__(
        self,
        ctx: AgentContext,
        tables: OrchestrationTables,
        planner: machine.Planner,
        config: lifecycle.OrchestrationConfig,
        clock: Callable[[], datetime] = utc_now,
        flattening: FlattenConfig | None = None,
    ) -> None:
        self.ctx = ctx
        self.flattening = flattening or FlattenConfig()
        self.tables = tables
        self.planner = planner
        self.config = config
        self.clock = clock
        # Ticks requested by this worker's sweep (key → monotonic time), so one due run is not re-requested
        # every sweep while its tick is in flight.
        self._requested: dict[str, float] = {}
        self.run_clock = RunClock()
        # run_id → the span that opened the run: every later command of the run (an operator's approval from the
        # API's trace, sweep ticks with none) continues that trace, so one trace shows bar → … → order → fills.
        # In memory only: after a restart or rebalance a run's later spans start from their own headers.
        self._traces: OrderedDict[str, SpanContext] = OrderedDict()

    def _run_of(self, correlation: Mapping[str, str]) -> str | None:
        run_id = correlation.get("run_id")
        if run_id is None and "order_id" in correlation:
            found = self.tables.orders.get(correlation["order_id"])
            run_id = None if found is None else str(found)
        return run_id

    async def sync_circuit_alert(self) -> None:
        """Fire/resolve ``agent0_circuit_open`` from the planner's breaker (after each command, and by the sweep)."""
        await self.ctx.emit_alerts(self.ctx.alerts.sync_circuit(getattr(self.planner, "breaker", None)))

    async def on_event(self, event: Any) -> str:
        """Handle one event of the command topic; returns what happened (for logs and tests)."""
        try:
            kind, record, data = commands.decode_command(event.message.value)
        except (ValueError, KeyError, TypeError) as error:  # pydantic's ValidationError is a ValueError
            self.ctx.dead_letter(runs.TOPIC, event, error, "decode")
            return "undecodable"
        correlation = _correlation(kind, record, data)
        run_id = self._run_of(correlation)
        parent = None if run_id is None else self._traces.get(run_id)
        with (
            log_context(**correlation),
            consume_span(
                "orchestration.command",
                event.message.headers,
                parent=parent,
                messaging=messaging_of(event),
                command=kind.value,
            ) as span,
        ):
            try:
                outcome = await self.handle(kind, record, data)
            except Exception as error:  # a bug for one run must not stop every other run
                log.exception("orchestration command failed", extra={"kind": kind.value})
                self.ctx.dead_letter(runs.TOPIC, event, error, "processing")
                return "failed"
            finally:
                await self.sync_circuit_alert()
            span.set_attribute("outcome", outcome)
            log.info("orchestration command", extra={"kind": kind.value, "outcome": outcome})
            return outcome

    async def handle(self, kind: commands.CommandKind, record: Record | None, data: Mapping[str, Any]) -> str:
        """Dispatch one decoded command."""
        now = self.clock()
        if isinstance(record, Signal):
            return await self._on_signal(record, now)
        if isinstance(record, ControlCommand):
            if record.command is ControlCommandKind.TRIGGER_RUN:
                return await self._on_trigger(record, now)
            if record.command is ControlCommandKind.FLATTEN:
                return await self._on_flatten(record, now)
            entry = self._entry(record.target)
            if entry is None:
                return f"{record.command.value} ignored: unknown run"
            if record.command is ControlCommandKind.APPROVE_RUN:
                return await self._apply(lifecycle.approve(entry, record, now))
            return await self._apply(lifecycle.reject(entry, record, now))
        if isinstance(record, RiskDecision | OrderEvent):
            run_id = self.tables.orders.get(record.order_id)
            entry = None if run_id is None else self._entry(str(run_id))
            if entry is None:
                return "not an orchestration order"
            if isinstance(record, RiskDecision):
                return await self._apply(lifecycle.on_decision(entry, record, now))
            return await self._apply(lifecycle.on_order_event(entry, record, now))
        return await self._on_tick(data.get("run_id"), data.get("signal_id"), now)

    async def _on_flatten(self, command: ControlCommand, now: datetime) -> str:
        """A flatten command: one market intent per held symbol in scope (``streams.orchestration.flatten``)."""
        config = self.flattening
        if flatten.is_stale(command, utc_now(), config.max_age):
            log.warning("stale flatten command ignored", extra={"issued_time": command.issued_time.isoformat()})
            return "flatten ignored: stale"
        held = await config.held_positions()
        if held is None:
            log.error("flatten not carried out: the positions are not known yet", extra={"actor": command.actor})
            return "flatten failed: positions unknown"
        intents = flatten.flatten_intents(command, held, now, config.account)
        for intent in intents:
            await self.ctx.emitter.emit(order_intents.TOPIC, intent, wait=True)
            log.warning(
                "flatten intent",
                extra={
                    "order_id": intent.order_id,
                    "symbol": intent.symbol,
                    "side": intent.side.value,
                    "quantity": intent.quantity,
                    "actor": command.actor,
                },
            )
        return f"flatten: {len(intents)} intents"

    def _entry(self, run_id: str) -> lifecycle.RunEntry | None:
        data = self.tables.runs.get(run_id)
        return None if data is None else lifecycle.RunEntry.from_dict(data)

    def _slot(self, signal_id: str) -> lifecycle.SignalSlot | None:
        data = self.tables.signals.get(signal_id)
        return None if data is None else lifecycle.SignalSlot.from_dict(data)

    async def _on_signal(self, signal: Signal, now: datetime) -> str:
        if self.tables.runs.get(ids.run_id(signal.signal_id)) is not None:
            return "signal seen before: its run exists"
        slot = self._slot(signal.signal_id)
        pending = None if slot is None else slot.trigger
        if pending is not None:
            outcome = await self._open(signal, pending.actor, pending.reason, now)
        else:
            opens, why = lifecycle.opens_automatically(signal, self.config, now)
            outcome = await self._open(signal, "orchestration", why, now) if opens else f"no run: {why}"
        # After the run: a crash before this line redelivers the signal with its pending trigger still stored.
        self.tables.signals[signal.signal_id] = lifecycle.SignalSlot(signal=signal).to_dict()
        return outcome

    async def _on_trigger(self, command: ControlCommand, now: datetime) -> str:
        if self.tables.runs.get(ids.run_id(command.target)) is not None:
            return "trigger_run ignored: the signal's run exists"
        slot = self._slot(command.target)
        if slot is None or slot.signal is None:
            if slot is None:
                self.tables.signals[command.target] = lifecycle.SignalSlot(trigger=command).to_dict()
            return "trigger_run waits for its signal"
        return await self._open(slot.signal, command.actor, command.reason, now)

    async def _open(self, signal: Signal, actor: str, reason: str, now: datetime) -> str:
        async def report(run: OrchestrationRun) -> None:
            await self._emit_run(run)

        step = await lifecycle.open_run(
            signal, actor=actor, reason=reason, planner=self.planner, config=self.config, now=now, report=report
        )
        return await self._apply(step)

    async def _on_tick(self, run_id: str | None, signal_id: str | None, now: datetime) -> str:
        outcomes = []
        entry = None if run_id is None else self._entry(run_id)
        if run_id is not None and entry is not None:
            if entry.run.state is RunState.AWAITING_APPROVAL:
                outcomes.append(await self._apply(lifecycle.expire(entry, now)))
                entry = self._entry(run_id)
            if entry is not None and lifecycle.forgettable(entry, now):
                del self.tables.runs[run_id]
                if self.tables.orders.get(entry.order_id) is not None:
                    del self.tables.orders[entry.order_id]
                outcomes.append("run forgotten")
        slot = None if signal_id is None else self._slot(signal_id)
        if signal_id is not None and slot is not None and lifecycle.slot_forgettable(slot, now):
            del self.tables.signals[signal_id]
            if slot.signal is None and slot.trigger is not None:
                log.warning(
                    "trigger_run dropped: its signal never arrived",
                    extra={"signal_id": signal_id, "actor": slot.trigger.actor},
                )
            outcomes.append("signal forgotten")
        return "; ".join(outcomes) or "tick: nothing due"

    async def _emit_run(self, run: OrchestrationRun) -> None:
        await self.ctx.emitter.emit(runs.TOPIC, run, wait=True)
        self.run_clock.observe(run)
        if run.state is RunState.TRIGGERED:
            opened = current_span_context()
            if opened is not None:
                self._traces[run.run_id] = opened
                while len(self._traces) > _MAX_RUN_TRACES:
                    self._traces.popitem(last=False)
        elif run.state in machine.FINAL:
            self._traces.pop(run.run_id, None)
        previous = None if run.previous_state is None else run.previous_state.value
        log.info(
            "run state",
            extra={
                "run_id": run.run_id,
                "signal_id": run.signal_id,
                "symbol": run.symbol,
                "state": run.state.value,
                "previous_state": previous,
                "actor": run.actor,
                "reason": run.reason,
            },
        )

    async def _apply(self, step: lifecycle.Step) -> str:
        """Emit the step's records (intent first), then store the run; returns the step's outcome."""
        if step.entry is None:
            return step.note or "no change"
        entry = step.entry
        with log_context(
            run_id=entry.run.run_id,
            signal_id=entry.signal.signal_id,
            order_id=step.intent.order_id if step.intent else None,
        ):
            if step.intent is not None:
                # The intent before the "submitted" record: no reader may see a submitted run without its order.
                await self.ctx.emitter.emit(order_intents.TOPIC, step.intent, wait=True)
                log.info("order intent", extra={"quantity": step.intent.quantity, "side": step.intent.side.value})
            for run in step.runs:
                await self._emit_run(run)
            for record in step.transitions:
                await self.ctx.emitter.emit(signal_transitions.TOPIC, record, wait=True)
            self.tables.runs[entry.run.run_id] = entry.to_dict()
            if entry.run.state is RunState.SUBMITTED:
                self.tables.orders[entry.order_id] = entry.run.run_id
        return entry.run.state.value

    def due_ticks(self, now: datetime, resend_after: float = 30.0) -> list[tuple[str, bytes]]:
        """(key, tick) for every run and signal slot in this worker's tables the sweep has work for; a key asked
        for less than ``resend_after`` seconds ago is skipped (its tick is in flight)."""
        wanted: list[tuple[str, str | None, str | None]] = []
        for run_key, data in list(self.tables.runs.items()):
            if lifecycle.entry_due(data, now):
                wanted.append((f"run:{run_key}", run_key, None))
        for signal_key, data in list(self.tables.signals.items()):
            if lifecycle.slot_due(data, now):
                wanted.append((f"signal:{signal_key}", None, signal_key))
        clock = time.monotonic()
        self._requested = {key: at for key, at in self._requested.items() if clock - at < resend_after}
        ticks: list[tuple[str, bytes]] = []
        for local, run_id, signal_id in wanted:
            if local not in self._requested:
                self._requested[local] = clock
                ticks.append((commands.tick_key(run_id, signal_id), commands.encode_tick(run_id, signal_id)))
        return ticks
