"""Operator order commands, trader role (issue #20 item 5): ``POST /v1/orders/{order_id}/cancel``,
``POST /v1/orders/cancel-all`` {scope} and ``POST /v1/orders/{order_id}/modify``. Each is a command on ``control.v1``
(``cancel_order`` and ``modify_order`` targeting the order id, ``cancel_all`` the account or a symbol), answered 202
only once Kafka has it, applied by execution (consumers/execution/operator_orders.py) and visible in the order trail
(the command, risk's decision on a modification, and what execution and IB did).

A modification is judged by risk again (``ibstream.order_modifications``): the command carries the order's complete
new terms — its current terms (the intent's, or the latest approved modification's) with the requested changes — and
execution applies it only with risk's approval of exactly those terms. What may change: the entry's limit price (LMT,
STP_LMT), its stop price (STP, STP_LMT), the quantity (above what has filled; the stop and target legs follow it), the
stop-loss leg's stop and the take-profit leg's limit (only if the order has them). A market order has no price to
change: 422 ``order_not_modifiable``; a change the order's type or shape does not have, or none at all: 422
``invalid_modification``.

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
from ibstream.contracts.enums import ControlCommandKind, OrderStatus, OrderType
from ibstream.contracts.order_terms import OrderTerms
from ibstream.order_modifications import MODIFIABLE, terms_parameters
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


class ModifyOrderRequest(BaseModel):
    """New prices or quantity for a working order; at least one. Judged by risk again before execution applies it."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    quantity: float | None = Field(default=None, gt=0, le=1e9, description="new total quantity (above the filled)")
    limit_price: float | None = Field(default=None, gt=0, le=1e9, description="the entry's limit (LMT, STP_LMT)")
    stop_price: float | None = Field(default=None, gt=0, le=1e9, description="the entry's stop (STP, STP_LMT)")
    stop_loss: float | None = Field(default=None, gt=0, le=1e9, description="the stop-loss leg's stop")
    take_profit: float | None = Field(default=None, gt=0, le=1e9, description="the take-profit leg's limit")


#: The entry's own prices each order type has.
_PRICES = {
    OrderType.LMT: {"limit_price"},
    OrderType.STP: {"stop_price"},
    OrderType.STP_LMT: {"limit_price", "stop_price"},
}


def market_order(current: OrderTerms) -> ApiError | None:
    """422 ``order_not_modifiable`` for a market order: it has no price to change and fills at once."""
    if current.order_type is OrderType.MKT:
        return ApiError(422, "order_not_modifiable", "a market order has no price to modify; cancel it instead")
    return None


def modified_terms(current: OrderTerms, filled: float, body: ModifyOrderRequest) -> tuple[OrderTerms, list[str]]:
    """The order's terms with the requested changes, and the names changed; ApiError 422 when the order cannot take
    them (a market order; a price its type or shape lacks; a quantity not above the filled; no change)."""
    refusal = market_order(current)
    if refusal is not None:
        raise refusal
    requested = {name: value for name in MODIFIABLE if (value := getattr(body, name)) is not None}
    allowed = {"quantity"} | _PRICES[current.order_type]
    allowed |= {name for name in ("stop_loss", "take_profit") if getattr(current, name) is not None}
    refused = sorted(set(requested) - allowed)
    if refused:
        raise ApiError(
            422,
            "invalid_modification",
            f"a {current.order_type.value} order{' without a bracket' if current.stop_loss is None else ''} has no "
            f"{', '.join(refused)} to modify (it may change: {', '.join(sorted(allowed))})",
        )
    changes = sorted(name for name, value in requested.items() if getattr(current, name) != value)
    if not changes:
        raise ApiError(422, "invalid_modification", "nothing to modify: give a new quantity or price")
    if "quantity" in changes and requested["quantity"] <= filled:
        raise ApiError(422, "invalid_modification", f"the new quantity must be above the {filled:g} already filled")
    return OrderTerms(**{**current.terms(), **requested}), changes


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
    return ApiError(409, "order_not_working", f"the order is {order.status.value}: it is not working")


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
        refusal = not_working(working_view(warehouse_of(request), order_id).summary)
        if refusal is not None:
            raise refusal
        command = build_command(ControlCommandKind.CANCEL_ORDER, order_id, body.reason, principal.subject)
        log.warning(
            "cancel order",
            extra={"actor": principal.subject, "reason": body.reason, "command_id": command.command_id},
        )
        return publish(request, command)


@router.post(
    "/v1/orders/{order_id}/modify", status_code=202, response_model=CommandAccepted, responses=errors(404, 409)
)
def modify_order(principal: Trader, request: Request, order_id: OrderId, body: ModifyOrderRequest) -> Any:
    """Change a working order's limit/stop price or quantity (a ``modify_order`` command), judged by risk again:
    404 if unknown, 409 if not working, 422 for a market order or a change the order cannot take."""
    with log_context(order_id=order_id):
        view = working_view(warehouse_of(request), order_id)
        # A market order is never modifiable (422 whatever its status); any other must still be working (409).
        refusal = market_order(view.terms) or not_working(view.summary)
        if refusal is not None:
            raise refusal
        terms, changes = modified_terms(view.terms, view.summary.filled_quantity, body)
        command = build_command(
            ControlCommandKind.MODIFY_ORDER,
            order_id,
            body.reason,
            principal.subject,
            parameters=terms_parameters(terms, changes),
        )
        log.warning(
            "modify order",
            extra={"actor": principal.subject, "changes": ",".join(changes), "command_id": command.command_id},
        )
        return publish(request, command)
