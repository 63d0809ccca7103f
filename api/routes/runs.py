"""Runs and approvals: ``GET /v1/runs``, ``GET /v1/runs/{run_id}`` (viewer); ``POST /v1/runs`` (trigger),
``POST /v1/runs/{run_id}/approve`` and ``/reject`` (trader), each a command on control.v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.auth import Principal
from api.commands import build_command
from api.errors import ApiError, errors
from api.models import CommandAccepted, DecisionRequest, RunDetail, RunPage, TriggerRunRequest
from api.queries import runs as queries
from api.queries.signals import signal_exists
from api.routes.deps import (
    Cursor,
    IdFilter,
    Limit,
    RunId,
    Since,
    Symbol,
    Trader,
    Until,
    Viewer,
    publish,
    utc,
    warehouse_of,
)
from ibstream.contracts.enums import ControlCommandKind, RunState
from ibstream.telemetry import log_context

router = APIRouter(tags=["runs"])


@router.get("/v1/runs", response_model=RunPage, responses=errors())
def list_runs(
    principal: Viewer,
    request: Request,
    limit: Limit = 100,
    cursor: Cursor = None,
    signal_id: IdFilter = None,
    symbol: Symbol = None,
    state: RunState | None = None,
    since: Since = None,
    until: Until = None,
) -> RunPage:
    """Orchestration runs, most recently started first, each in its latest state."""
    return queries.list_runs(
        warehouse_of(request),
        signal_id=signal_id,
        symbol=symbol,
        state=state,
        since=utc(since),
        until=utc(until),
        limit=limit,
        cursor=cursor,
    )


@router.get("/v1/runs/{run_id}", response_model=RunDetail, responses=errors(404))
def get_run(principal: Viewer, request: Request, run_id: RunId) -> RunDetail:
    """One run: state history, latest plan, failures and its orders."""
    with log_context(run_id=run_id):
        return queries.get_run(warehouse_of(request), run_id)


@router.post("/v1/runs", status_code=202, response_model=CommandAccepted, responses=errors(404))
def trigger_run(principal: Trader, request: Request, body: TriggerRunRequest) -> Any:
    """Ask orchestration to open a run for a signal (``trigger_run`` on control.v1)."""
    with log_context(signal_id=body.signal_id):
        if not signal_exists(warehouse_of(request), body.signal_id):
            raise ApiError(404, "signal_not_found", f"no signal {body.signal_id} in the warehouse")
        command = build_command(ControlCommandKind.TRIGGER_RUN, body.signal_id, body.reason, principal.subject)
        return publish(request, command)


def _decide(request: Request, principal: Principal, run_id: str, kind: ControlCommandKind, reason: str) -> Any:
    with log_context(run_id=run_id):
        state = queries.run_state(warehouse_of(request), run_id)
        if state is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} in the warehouse")
        if state in queries.FINAL_RUN_STATES:
            raise ApiError(409, "run_already_decided", f"run {run_id} is {state.value}; it cannot be decided now")
        return publish(request, build_command(kind, run_id, reason, principal.subject))


@router.post("/v1/runs/{run_id}/approve", status_code=202, response_model=CommandAccepted, responses=errors(404, 409))
def approve_run(principal: Trader, request: Request, run_id: RunId, body: DecisionRequest) -> Any:
    """Approve a run awaiting approval (``approve_run``); the reason and the caller are recorded."""
    return _decide(request, principal, run_id, ControlCommandKind.APPROVE_RUN, body.reason)


@router.post("/v1/runs/{run_id}/reject", status_code=202, response_model=CommandAccepted, responses=errors(404, 409))
def reject_run(principal: Trader, request: Request, run_id: RunId, body: DecisionRequest) -> Any:
    """Reject a run (``reject_run``); the reason and the caller are recorded."""
    return _decide(request, principal, run_id, ControlCommandKind.REJECT_RUN, body.reason)
