"""Strategy instances: ``GET /v1/strategies`` (viewer) lists them with their switches, signal counts, failures and
scores; ``POST /v1/strategies/{instance}/enable`` and ``/disable`` (admin) switch one on or off with a
``trading_state`` command on control.v1 targeting ``strategy:<instance>`` (``ibstream.strategies.switches``: why
that command). The command is the audit record (actor, reason, time, on the compacted topic and in the warehouse)
and what every signals worker folds, so a switch survives restarts of the workers and of the API.

The instances are the API's reading of ``IBSTREAM_STRATEGIES_FILE`` (the same file the signals workers read),
loaded when the app is built: a bad file stops the API at startup as it stops the workers.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from api.commands import build_command
from api.errors import ApiError, errors
from api.models import CommandAccepted, StrategyList, StrategySwitchRequest
from api.precheck import recorded_sequence
from api.queries import strategies as queries
from api.routes.deps import Admin, Viewer, publish, warehouse_of
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.strategies.instances import NAME_PATTERN, StrategyInstance
from ibstream.strategies.switches import target_of

log = logging.getLogger(__name__)

router = APIRouter(tags=["strategies"])

InstanceName = Annotated[str, Path(pattern=NAME_PATTERN, description="a configured strategy instance")]


def instances_of(request: Request) -> list[StrategyInstance]:
    instances: list[StrategyInstance] = request.app.state.strategies
    return instances


def known_instance(request: Request, name: str) -> StrategyInstance:
    """The configured instance of that name; 404 naming the configured ones otherwise."""
    for instance in instances_of(request):
        if instance.name == name:
            return instance
    configured = ", ".join(i.name for i in instances_of(request))
    raise ApiError(404, "unknown_strategy", f"no strategy instance {name!r}; configured: {configured}")


@router.get("/v1/strategies", response_model=StrategyList, responses=errors())
def list_strategies(principal: Viewer, request: Request) -> Any:
    """Every configured strategy instance: strategy, version, params, symbols, enabled, signal counts, scores."""
    return queries.list_strategies(warehouse_of(request), instances_of(request))


def _switch(principal: Admin, request: Request, name: str, reason: str, state: TradingState) -> CommandAccepted:
    instance = known_instance(request, name)
    seen = recorded_sequence(request.app.state.warehouse)
    command = build_command(
        ControlCommandKind.TRADING_STATE, target_of(instance.name), reason, principal.subject, state=state, seen=seen
    )
    log.warning(
        "strategy switch",
        extra={
            "instance": instance.name,
            "enabled": state is TradingState.ACTIVE,
            "actor": principal.subject,
            "reason": reason,
            "command_id": command.command_id,
            "sequence": command.sequence,
        },
    )
    return publish(request, command)


@router.post("/v1/strategies/{instance}/enable", status_code=202, response_model=CommandAccepted, responses=errors(404))
def enable(principal: Admin, request: Request, instance: InstanceName, body: StrategySwitchRequest) -> Any:
    """Switch the instance on (its signals start with the next bar each signals worker reads)."""
    return _switch(principal, request, instance, body.reason, TradingState.ACTIVE)


@router.post(
    "/v1/strategies/{instance}/disable", status_code=202, response_model=CommandAccepted, responses=errors(404)
)
def disable(principal: Admin, request: Request, instance: InstanceName, body: StrategySwitchRequest) -> Any:
    """Switch the instance off (no new signals; signals already emitted run their course)."""
    return _switch(principal, request, instance, body.reason, TradingState.HALTED)
