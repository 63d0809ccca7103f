"""Orchestration run state changes, keyed by run_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import ApprovalMode, OrderType, RunState, Side


class Plan(Record):
    """Agent0's plan for a signal."""

    schema_name: ClassVar[str] = "orchestration_run.Plan"

    plan_id: str
    side: Side
    quantity: float
    order_type: OrderType
    limit_price: float | None = None
    stop_price: float | None = None
    stop_loss: float
    take_profit: float
    rationale: str


class OrchestrationRun(Record):
    """A state change of an orchestration run; the latest record per run_id is its state."""

    schema_name: ClassVar[str] = "orchestration_run"

    run_id: str
    signal_id: str
    symbol: str
    state: RunState
    previous_state: RunState | None = None
    reason: str | None = None
    plan: Plan | None = None
    approval_mode: ApprovalMode | None = None
    actor: str
    attempt: int
    time: UtcDatetime


TOPIC = TopicSpec(
    name="orchestration.runs.v1",
    record=OrchestrationRun,
    key=lambda run: run.run_id,
    partitions=3,
    retention_ms=365 * DAY_MS,
    doc="Orchestration runs, one record per state change.",
)
