"""Orchestration on the real broker, with the real Agent0 on a real socket and the Faust worker as a subprocess.

Manual approval, rejection, trigger_run below the threshold, redelivery and a restarted worker in one test (each
worker start costs seconds); policy approval, policy fallback with expiry and Agent0 down in the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    OrderEvent,
    OrderIntent,
    Signal,
    SignalTransition,
    control,
    order_events,
    order_intents,
    runs,
    signal_transitions,
    signals,
    utc_now,
)
from ibstream.contracts.enums import (
    ApprovalMode,
    ControlCommandKind,
    ExecutionSource,
    OrderLeg,
    OrderStatus,
    RunState,
    Side,
    SignalStatus,
)

from .streams_support import Agent0Server, StreamsWorker, TopicReader, free_port, producer

pytestmark = pytest.mark.integration

PLANNED_PATH = [RunState.TRIGGERED, RunState.PLANNING, RunState.PLANNED, RunState.AWAITING_APPROVAL]


def signal(name: str, confidence: float, expires_in: float = 300.0, symbol: str = "AAPL") -> Signal:
    now = utc_now()
    return Signal(
        signal_id=f"{name}-{uuid.uuid4().hex[:8]}",
        symbol=symbol,
        strategy="donchian_breakout",
        side=Side.BUY,
        confidence=confidence,
        entry=100.0,
        stop=98.0,
        take_profit=104.0,
        bar_start=now,
        created_time=now,
        expiry_time=now + timedelta(seconds=expires_in),
        features={},
    )


def command(kind: ControlCommandKind, target: str, actor: str, reason: str) -> ControlCommand:
    return ControlCommand(
        command_id=str(uuid.uuid4()),
        command=kind,
        target=target,
        reason=reason,
        actor=actor,
        parameters={},
        issued_time=utc_now(),
    )


def filled(order_id: str, quantity: float) -> OrderEvent:
    return OrderEvent(
        event_id=f"fill-{order_id}",
        order_id=order_id,
        leg=OrderLeg.PARENT,
        symbol="AAPL",
        status=OrderStatus.FILLED,
        filled_quantity=quantity,
        remaining_quantity=0.0,
        avg_fill_price=100.0,
        source=ExecutionSource.LIVE,
        event_time=utc_now(),
    )


def states_of(reader: TopicReader, run_id: str) -> list[RunState]:
    return [r.state for r in reader.records if r.run_id == run_id]


def until_states(run_id: str, expected: list[RunState]) -> Callable[[list[Any]], bool]:
    return lambda records: [r.state for r in records if r.run_id == run_id] == expected


def test_manual_approve_reject_trigger_redelivery_and_restart(settings: Settings, tmp_path: Path) -> None:
    agent0 = Agent0Server(tmp_path).start()
    env: dict[str, Any] = {"agent0_url": agent0.url, "approval_mode": "manual", "orchestration_min_confidence": 0.6}
    run_records, intents = TopicReader(settings, runs.TOPIC), TopicReader(settings, order_intents.TOPIC)
    moved = TopicReader(settings, signal_transitions.TOPIC)
    out = producer(settings)
    hot, cold = signal("hot", 0.9), signal("cold", 0.3)
    hot_run, cold_run = ids.run_id(hot.signal_id), ids.run_id(cold.signal_id)
    approve = command(ControlCommandKind.APPROVE_RUN, hot_run, "alice", "fits the plan")
    reject = command(ControlCommandKind.REJECT_RUN, cold_run, "bob", "not today")
    trigger = command(ControlCommandKind.TRIGGER_RUN, cold.signal_id, "bob", "worth a look")
    first = StreamsWorker(settings, tmp_path, "orchestration", name="first", **env).start()
    try:
        out.send(signals.TOPIC, hot)
        out.send(signals.TOPIC, cold)
        out.flush()
        run_records.poll_until(until_states(hot_run, PLANNED_PATH), 90)
        assert states_of(run_records, hot_run) == PLANNED_PATH, first.log()[-4000:]
        planned = next(r for r in run_records.records if r.state is RunState.PLANNED)
        assert planned.plan is not None and planned.plan.quantity == 250 and planned.actor == "agent0"
        assert states_of(run_records, cold_run) == []  # below the threshold: no run on its own

        out.send(control.TOPIC, trigger)
        out.send(control.TOPIC, approve)
        out.flush()
        run_records.poll_until(until_states(cold_run, PLANNED_PATH), 30)
        assert states_of(run_records, cold_run) == PLANNED_PATH
        opened = next(r for r in run_records.records if r.run_id == cold_run)
        assert (opened.actor, opened.reason) == ("bob", "worth a look")
        run_records.poll_until(until_states(hot_run, [*PLANNED_PATH, RunState.APPROVED, RunState.SUBMITTED]), 30)
        assert states_of(run_records, hot_run)[-2:] == [RunState.APPROVED, RunState.SUBMITTED]
        approved = next(r for r in run_records.records if r.run_id == hot_run and r.state is RunState.APPROVED)
        assert (approved.actor, approved.reason, approved.approval_mode) == (
            "alice",
            "fits the plan",
            ApprovalMode.MANUAL,
        )
        found: list[OrderIntent] = intents.wait_for(1, 10)
        assert [(i.order_id, i.run_id, i.quantity) for i in found] == [(ids.order_id(hot_run), hot_run, 250.0)]
        assert uuid.UUID(found[0].order_id).version == 5

        out.send(control.TOPIC, reject)
        out.flush()
        run_records.poll_until(until_states(cold_run, [*PLANNED_PATH, RunState.REJECTED]), 30)
        rejected = run_records.records[-1]
        assert (rejected.state, rejected.actor, rejected.reason) == (RunState.REJECTED, "bob", "not today")

        # Redelivery of every input: nothing more.
        for record in (hot, cold):
            out.send(signals.TOPIC, record)
        for again in (approve, reject, trigger):
            out.send(control.TOPIC, again)
        out.flush()
        seen = len(run_records.records)
        run_records.poll_until(lambda _: False, 3.0)
        intents.poll_until(lambda _: False, 0.1)
        assert len(run_records.records) == seen and len(intents.records) == 1
    finally:
        first.stop()

    # A new worker recovers the runs from the changelogs: the approval again changes nothing, the fill completes.
    second = StreamsWorker(settings, tmp_path, "orchestration", name="second", **env).start()
    try:
        out.send(control.TOPIC, approve)
        out.send(signals.TOPIC, hot)
        out.send(order_events.TOPIC, filled(ids.order_id(hot_run), 250.0))
        out.flush()
        done = [*PLANNED_PATH, RunState.APPROVED, RunState.SUBMITTED, RunState.COMPLETED]
        run_records.poll_until(until_states(hot_run, done), 90)
        assert states_of(run_records, hot_run) == done, second.log()[-4000:]
        intents.poll_until(lambda _: False, 1.0)
        assert len(intents.records) == 1
        assert len(run_records.records) == seen + 1
        moved.poll_until(lambda records: len(records) >= 6, 10)
        transitions: list[SignalTransition] = moved.records
        assert [(t.signal_id, t.to_status) for t in transitions if t.signal_id == hot.signal_id] == [
            (hot.signal_id, status)
            for status in (SignalStatus.PLANNED, SignalStatus.APPROVED, SignalStatus.ORDERED, SignalStatus.FILLED)
        ]
        cold_moves = [t.to_status for t in transitions if t.signal_id == cold.signal_id]
        assert cold_moves == [SignalStatus.PLANNED, SignalStatus.REJECTED]
        assert all(t.run_id is not None for t in transitions)
        assert "signal seen before: its run exists" in second.log()
    finally:
        second.stop()
        agent0.stop()
        for reader in (run_records, intents, moved):
            reader.close()


def test_policy_approval_policy_fallback_expires_and_agent0_down_fails(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    agent0 = Agent0Server(tmp_path, port).start()
    env: dict[str, Any] = {
        "agent0_url": agent0.url,
        "approval_mode": "policy",
        "approval_policy_min_confidence": 0.8,
        "approval_policy_max_notional": 30_000,
        "agent0_max_attempts": 2,
        "agent0_backoff_seconds": 0.05,
        "agent0_timeout_seconds": 1.0,
    }
    run_records, intents = TopicReader(settings, runs.TOPIC), TopicReader(settings, order_intents.TOPIC)
    out = producer(settings)
    sure, unsure, orphan = signal("sure", 0.9), signal("unsure", 0.7, expires_in=6.0), signal("orphan", 0.9)
    sure_run, unsure_run, orphan_run = (ids.run_id(s.signal_id) for s in (sure, unsure, orphan))
    worker = StreamsWorker(settings, tmp_path, "orchestration", **env).start()
    try:
        out.send(signals.TOPIC, sure)
        out.send(signals.TOPIC, unsure)
        out.flush()
        auto = [RunState.TRIGGERED, RunState.PLANNING, RunState.PLANNED, RunState.APPROVED, RunState.SUBMITTED]
        run_records.poll_until(until_states(sure_run, auto), 90)
        assert states_of(run_records, sure_run) == auto, worker.log()[-4000:]
        approved = next(r for r in run_records.records if r.run_id == sure_run and r.state is RunState.APPROVED)
        assert (approved.actor, approved.approval_mode) == ("policy", ApprovalMode.POLICY)
        assert [i.order_id for i in intents.wait_for(1, 10)] == [ids.order_id(sure_run)]

        # Below the policy's confidence: left to an operator, and expired at the signal's expiry.
        run_records.poll_until(until_states(unsure_run, [*PLANNED_PATH, RunState.EXPIRED]), 30)
        assert states_of(run_records, unsure_run) == [*PLANNED_PATH, RunState.EXPIRED]
        unsure_records = [r for r in run_records.records if r.run_id == unsure_run]
        assert "policy declined (confidence 0.70" in (unsure_records[3].reason or "")
        assert unsure_records[-1].time >= unsure.expiry_time and "expired" in (unsure_records[-1].reason or "")

        agent0.stop()  # connections are refused from now on
        out.send(signals.TOPIC, orphan)
        out.flush()
        failing = [RunState.TRIGGERED, RunState.PLANNING, RunState.FAILED]
        run_records.poll_until(until_states(orphan_run, failing), 30)
        assert states_of(run_records, orphan_run) == failing, worker.log()[-4000:]
        cause = run_records.records[-1].reason or ""
        assert "agent0 unreachable" in cause and "gave up after 2 attempts" in cause
        intents.poll_until(lambda _: False, 0.5)
        assert len(intents.records) == 1
    finally:
        worker.stop()
        agent0.stop()
        run_records.close()
        intents.close()
