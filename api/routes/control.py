"""Trading controls, admin only: ``POST /v1/control/kill-switch`` and ``POST /v1/control/trading-state``, commands on
control.v1 (read by risk and execution); ``GET /v1/control/trading-states`` (viewer) shows what is in force and the
audit trail of every change (who, when, why), read from the warehouse's copy of control.v1.

Every command carries a sequence (``api.commands.SequenceClock``) so that readers ignore a stale one: above the
wall time, every sequence this process issued and the highest recorded in the warehouse (what other replicas issued).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.commands import build_command
from api.errors import ApiError, errors
from api.models import CommandAccepted, KillSwitchRequest, TradingStateRequest
from api.pipeline import TradingStateView, trading_state_views
from api.precheck import recorded_sequence, trading_control_commands
from api.routes.deps import Admin, Viewer, publish
from ibstream.config import Settings
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.telemetry import log_context
from ibstream.trading_states import ACCOUNT

log = logging.getLogger(__name__)

router = APIRouter(tags=["control"])


@router.post("/v1/control/kill-switch", status_code=202, response_model=CommandAccepted, responses=errors())
def kill_switch(principal: Admin, request: Request, body: KillSwitchRequest) -> Any:
    """Turn the kill switch on or off, globally or for one symbol (read by risk and execution)."""
    kind = ControlCommandKind.KILL_SWITCH_ON if body.state == "on" else ControlCommandKind.KILL_SWITCH_OFF
    with log_context(symbol=None if body.target == "global" else body.target):
        log.warning("kill switch", extra={"state": body.state, "actor": principal.subject, "reason": body.reason})
        seen = recorded_sequence(request.app.state.warehouse)
        return publish(request, build_command(kind, body.target, body.reason, principal.subject, seen=seen))


def known_scope(scope: str, settings: Settings) -> str:
    """The scope if the API knows it (the account, or a symbol of the configured universe); 422 otherwise."""
    if scope == ACCOUNT or scope in settings.feed.symbols:
        return scope
    raise ApiError(
        422,
        "unknown_scope",
        f"unknown scope {scope!r}: expected 'account' or a configured symbol ({', '.join(settings.feed.symbols)})",
    )


@router.post("/v1/control/trading-state", status_code=202, response_model=CommandAccepted, responses=errors())
def trading_state(principal: Admin, request: Request, body: TradingStateRequest) -> Any:
    """Set the account's or one symbol's trading state: active, reducing (only intents that reduce a position) or
    halted (no new intents; cancels still go). Read by risk and execution; shown in /v1/health/pipeline."""
    scope = known_scope(body.scope, request.app.state.settings)
    with log_context(symbol=None if scope == ACCOUNT else scope):
        seen = recorded_sequence(request.app.state.warehouse)
        command = build_command(
            ControlCommandKind.TRADING_STATE, scope, body.reason, principal.subject, state=body.state, seen=seen
        )
        log.warning(
            "trading state",
            extra={
                "scope": scope,
                "state": body.state.value,
                "actor": principal.subject,
                "reason": body.reason,
                "command_id": command.command_id,
                "sequence": command.sequence,
            },
        )
        return publish(request, command)


class TradingStateChange(BaseModel):
    """One recorded trading-state or kill-switch command: who, when, why, and whether it took effect."""

    command_id: str
    command: ControlCommandKind
    scope: str
    state: TradingState | None
    actor: str
    reason: str
    issued_time: datetime
    sequence: int


class TradingStates(BaseModel):
    """The trading states in force and every change recorded, newest first."""

    states: list[TradingStateView]
    changes: list[TradingStateChange]


@router.get("/v1/control/trading-states", response_model=TradingStates, responses=errors())
def trading_states(principal: Viewer, request: Request) -> Any:
    """What each scope may trade now, and the audit trail of the commands that set it."""
    commands = trading_control_commands(request.app.state.warehouse)
    changes = [
        TradingStateChange(
            command_id=c.command_id,
            command=c.command,
            scope=c.target,
            state=c.state,
            actor=c.actor,
            reason=c.reason,
            issued_time=c.issued_time,
            sequence=c.sequence,
        )
        for c in reversed(commands)
    ]
    account = request.app.state.settings.execution.account
    return TradingStates(states=trading_state_views(commands, account), changes=changes)
