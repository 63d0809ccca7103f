"""The kill switch: ``POST /v1/control/kill-switch`` (admin), a command on control.v1."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request

from api.commands import build_command
from api.errors import errors
from api.models import CommandAccepted, KillSwitchRequest
from api.routes.deps import Admin, publish
from ibstream.contracts.enums import ControlCommandKind
from ibstream.telemetry import log_context

log = logging.getLogger(__name__)

router = APIRouter(tags=["control"])


@router.post("/v1/control/kill-switch", status_code=202, response_model=CommandAccepted, responses=errors())
def kill_switch(principal: Admin, request: Request, body: KillSwitchRequest) -> Any:
    """Turn the kill switch on or off, globally or for one symbol (read by risk and execution)."""
    kind = ControlCommandKind.KILL_SWITCH_ON if body.state == "on" else ControlCommandKind.KILL_SWITCH_OFF
    with log_context(symbol=None if body.target == "global" else body.target):
        log.warning("kill switch", extra={"state": body.state, "actor": principal.subject, "reason": body.reason})
        return publish(request, build_command(kind, body.target, body.reason, principal.subject))
