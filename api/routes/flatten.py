"""``POST /v1/control/flatten`` (admin): close the positions in a scope with market orders.

The API only publishes a ``flatten`` command on control.v1 (it never writes intents: orchestration is the one writer
of ``orders.intents.v1``). Orchestration reads the command, and from the positions it sees emits one market intent per
held symbol in scope, tagged with the command id (the ``flatten_id`` term); risk lets a flatten through the kill
switch and a halt only if it closes the position and no further; execution places it without a bracket even while
the scope is halted, and cancels the symbol's protective legs once it has filled. See docs/runbooks/flatten.md.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.commands import build_command
from api.errors import errors
from api.models import CONTROL_SYMBOL_PATTERN, CommandAccepted
from api.routes.control import known_scope
from api.routes.deps import Admin, publish
from ibstream.contracts.enums import ControlCommandKind
from ibstream.telemetry import log_context
from ibstream.trading_states import ACCOUNT

log = logging.getLogger(__name__)

router = APIRouter(tags=["control"])


class FlattenRequest(BaseModel):
    """Close every position of the account, or the position in one symbol, at market."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(
        description='"account" (every held symbol) or one symbol of the configured universe',
        pattern=rf"^(account|{CONTROL_SYMBOL_PATTERN})$",
    )
    reason: str = Field(min_length=1, max_length=500)


@router.post("/v1/control/flatten", status_code=202, response_model=CommandAccepted, responses=errors())
def flatten(principal: Admin, request: Request, body: FlattenRequest) -> Any:
    """Close the positions in scope with market orders, through risk and execution, allowed while halted; their
    protective legs are cancelled once the flatten has filled. Unknown scope: 422."""
    scope = known_scope(body.scope, request.app.state.settings)
    with log_context(symbol=None if scope == ACCOUNT else scope):
        command = build_command(ControlCommandKind.FLATTEN, scope, body.reason, principal.subject)
        log.warning(
            "flatten",
            extra={
                "scope": scope,
                "actor": principal.subject,
                "reason": body.reason,
                "command_id": command.command_id,
            },
        )
        return publish(request, command)
