"""Operator order commands, trader role (issue #20 item 5): ``POST /v1/orders/{order_id}/cancel`` and
``POST /v1/orders/cancel-all`` {scope}. Each is a command on ``control.v1`` (``cancel_order`` targeting the order id,
``cancel_all`` targeting the account or a symbol), answered 202 only once Kafka has it, applied by execution
(consumers/execution/operator_orders.py) and visible in the order trail (the command and IB's Cancelled event).

What the API can see it judges here, from the warehouse's order trail: an unknown order is 404, an order that is not
working (filled, cancelled, rejected by IB or by risk) is 409 with why. What it cannot see (the order filled a moment
ago) execution judges again from its book, and a cancel that finds nothing to cancel is recorded as a no-op in the
order's events. An order approved but not yet at IB may be cancelled: execution refuses its routed order unplaced.
Cancels go whatever the trading state: a halted account still cancels.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.commands import build_command
from api.errors import ApiError, errors
from api.models import CONTROL_SYMBOL_PATTERN, CommandAccepted, OrderSummary
from api.queries.orders import working_view
from api.routes.control import known_scope
from api.routes.deps import OrderId, Trader, publish, warehouse_of
from ibstream.contracts.enums import ControlCommandKind, OrderStatus
from ibstream.telemetry import log_context
from ibstream.trading_states import ACCOUNT

log = logging.getLogger(__name__)

router = APIRouter(tags=["orders"])

#: Parent statuses of an order that is working at IB (or on its way there).
WORKING = frozenset(
    {OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMITTED, OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED}
)


class OrderCancelRequest(BaseModel):
    """Cancel one working order; the reason is recorded on the command."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class CancelAllRequest(BaseModel):
    """Cancel every working order of the account or one symbol (protective legs of filled entries are kept)."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(
        description='"account" or one symbol of the configured universe',
        pattern=rf"^(account|{CONTROL_SYMBOL_PATTERN})$",
    )
    reason: str = Field(min_length=1, max_length=500)


def not_working(order: OrderSummary) -> ApiError | None:
    """409 with why if the order is not working (nothing to cancel or modify), None if it is or may still be."""
    if order.risk == "rejected":
        return ApiError(409, "order_not_working", "risk rejected this order: it was never placed")
    if order.status is None or order.status in WORKING:
        return None  # working, or approved and on its way to IB (execution then refuses to place it)
    if order.status is OrderStatus.FILLED:
        return ApiError(
            409,
            "order_filled",
            f"the order is filled ({order.filled_quantity:g} @ {order.avg_fill_price}): nothing to cancel; its "
            "protective legs stay — flatten closes the position",
        )
    return ApiError(409, "order_not_working", f"the order is {order.status.value}: nothing to cancel")


@router.post(
    "/v1/orders/cancel-all", status_code=202, response_model=CommandAccepted, responses=errors(), tags=["orders"]
)
def cancel_all(principal: Trader, request: Request, body: CancelAllRequest) -> Any:
    """Cancel every working order of the account or one symbol (a ``cancel_all`` command). Working entries are
    cancelled with their untriggered children; the stop and target of filled entries stay. Goes while halted."""
    scope = known_scope(body.scope, request.app.state.settings)
    with log_context(symbol=None if scope == ACCOUNT else scope):
        command = build_command(ControlCommandKind.CANCEL_ALL, scope, body.reason, principal.subject)
        log.warning(
            "cancel all",
            extra={"scope": scope, "actor": principal.subject, "reason": body.reason, "command_id": command.command_id},
        )
        return publish(request, command)


@router.post(
    "/v1/orders/{order_id}/cancel", status_code=202, response_model=CommandAccepted, responses=errors(404, 409)
)
def cancel_order(principal: Trader, request: Request, order_id: OrderId, body: OrderCancelRequest) -> Any:
    """Cancel one working order (a ``cancel_order`` command): 404 if unknown, 409 with why if it is not working."""
    with log_context(order_id=order_id):
        _, order = working_view(warehouse_of(request), order_id)
        refusal = not_working(order)
        if refusal is not None:
            raise refusal
        command = build_command(ControlCommandKind.CANCEL_ORDER, order_id, body.reason, principal.subject)
        log.warning(
            "cancel order",
            extra={"actor": principal.subject, "reason": body.reason, "command_id": command.command_id},
        )
        return publish(request, command)
