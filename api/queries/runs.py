"""Run reads: the run list in latest state, a run's detail, and the state approve/reject check against."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from api.errors import ApiError
from api.models import RunDetail, RunPage, RunStateChange, RunSummary
from api.queries.common import equals, fetch_records, keyset, next_cursor, time_range, topic_table, where_clause
from ibstream.contracts import OrchestrationRun, order_intents, runs
from ibstream.contracts.enums import RunState
from ibstream.warehouse import Warehouse

#: Run states after which approve/reject can change nothing.
FINAL_RUN_STATES = frozenset(
    {RunState.APPROVED, RunState.SUBMITTED, RunState.COMPLETED, RunState.FAILED, RunState.EXPIRED, RunState.REJECTED}
)


def list_runs(
    warehouse: Warehouse,
    *,
    signal_id: str | None,
    symbol: str | None,
    state: RunState | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> RunPage:
    """Runs most recently started first (first record's time, then run_id), each in its latest state."""
    filters = {"signal_id": signal_id, "symbol": symbol, "state": state, "since": since, "until": until}
    conditions: list[str] = []
    parameters: dict[str, Any] = {"limit": limit + 1}
    equals(conditions, parameters, "signal_id", signal_id)
    equals(conditions, parameters, "symbol", symbol)
    equals(conditions, parameters, "state", state.value if state else None)
    time_range(conditions, parameters, "started_time", since, until)
    keyset(conditions, parameters, cursor, filters, "started_time", "run_id")
    # Aliases differ from column names: ClickHouse would otherwise substitute an alias into its own aggregate.
    latest = "(time, _kafka_ts, _offset)"
    sql = f"""
        SELECT run_id, signal_id, symbol, state_now AS state, approval_now AS approval_mode, attempt_now AS attempt,
               actor_now AS actor, started_time, updated_time
        FROM (
            SELECT run_id, any(signal_id) AS signal_id, any(symbol) AS symbol,
                   argMax(toString(`state`), {latest}) AS state_now,
                   argMax(approval_mode, {latest}) AS approval_now,
                   argMax(attempt, {latest}) AS attempt_now,
                   argMax(actor, {latest}) AS actor_now,
                   min(time) AS started_time, max(time) AS updated_time
            FROM {topic_table(warehouse, runs.TOPIC)} FINAL GROUP BY run_id
        )
        WHERE {where_clause(conditions)}
        ORDER BY started_time DESC, run_id DESC
        LIMIT {{limit:UInt32}}
    """
    rows = warehouse.query(sql, parameters).dicts()
    items = [RunSummary.model_validate(row) for row in rows]
    return RunPage(items=items[:limit], next_cursor=next_cursor(items, limit, "started_time", "run_id", filters))


def run_detail(records: Sequence[OrchestrationRun], order_ids: Sequence[str]) -> RunDetail:
    """Assemble a run from its state records (in time order): latest state, history, latest plan, failures."""
    last = records[-1]
    history = [
        RunStateChange(
            state=r.state,
            previous_state=r.previous_state,
            reason=r.reason,
            actor=r.actor,
            attempt=r.attempt,
            time=r.time,
        )
        for r in records
    ]
    plans = [r.plan for r in records if r.plan is not None]
    modes = [r.approval_mode for r in records if r.approval_mode is not None]
    return RunDetail(
        run_id=last.run_id,
        signal_id=last.signal_id,
        symbol=last.symbol,
        state=last.state,
        approval_mode=modes[-1] if modes else None,
        attempt=last.attempt,
        actor=last.actor,
        started_time=min(r.time for r in records),
        updated_time=max(r.time for r in records),
        history=history,
        plan=plans[-1] if plans else None,
        failures=[change for change in history if change.state == RunState.FAILED],
        order_ids=sorted(set(order_ids)),
    )


def _run_records(warehouse: Warehouse, run_id: str) -> list[OrchestrationRun]:
    return fetch_records(
        warehouse,
        runs.TOPIC,
        "run_id = {id:String}",
        {"id": run_id},
        "time, _kafka_ts, _offset",
        "state, previous_state, attempt, time",
    )


def get_run(warehouse: Warehouse, run_id: str) -> RunDetail:
    """One run with history, plan, failures and orders; 404 ``run_not_found``."""
    records = _run_records(warehouse, run_id)
    if not records:
        raise ApiError(404, "run_not_found", f"no run {run_id} in the warehouse")
    order_ids = [
        str(row[0])
        for row in warehouse.query(
            f"SELECT DISTINCT order_id FROM {topic_table(warehouse, order_intents.TOPIC)} FINAL "
            "WHERE run_id = {id:String}",
            {"id": run_id},
        ).rows
    ]
    return run_detail(records, order_ids)


def run_state(warehouse: Warehouse, run_id: str) -> RunState | None:
    """A run's latest state, or None if the warehouse does not know the run."""
    records = _run_records(warehouse, run_id)
    return records[-1].state if records else None
