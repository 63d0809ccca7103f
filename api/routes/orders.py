"""Orders: ``GET /v1/orders`` and ``GET /v1/orders/{order_id}`` (viewer)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.errors import errors
from api.models import OrderDetail, OrderPage
from api.queries import orders as queries
from api.routes.deps import Cursor, IdFilter, Limit, OrderId, Since, Symbol, Until, Viewer, utc, warehouse_of
from ibstream.contracts.enums import OrderStatus
from ibstream.telemetry import log_context

router = APIRouter(tags=["orders"])


@router.get("/v1/orders", response_model=OrderPage, responses=errors())
def list_orders(
    principal: Viewer,
    request: Request,
    limit: Limit = 100,
    cursor: Cursor = None,
    symbol: Symbol = None,
    run_id: IdFilter = None,
    status: OrderStatus | None = None,
    since: Since = None,
    until: Until = None,
) -> OrderPage:
    """Orders newest first with their risk verdict and latest broker status."""
    return queries.list_orders(
        warehouse_of(request),
        symbol=symbol,
        run_id=run_id,
        status=status.value if status else None,
        since=utc(since),
        until=utc(until),
        limit=limit,
        cursor=cursor,
    )


@router.get("/v1/orders/{order_id}", response_model=OrderDetail, responses=errors(404))
def get_order(principal: Viewer, request: Request, order_id: OrderId) -> OrderDetail:
    """The order's full trail: intent, risk decision with each check, events, fills, reconciliation, audit."""
    with log_context(order_id=order_id):
        return queries.get_order(warehouse_of(request), order_id)
