"""The account: ``GET /v1/account`` (viewer) — its newest values and P&L from IB, from the warehouse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.errors import errors
from api.models import ID_PATTERN, AccountView
from api.queries import account as queries
from api.routes.deps import Viewer, warehouse_of

router = APIRouter(tags=["account"])

AccountFilter = Annotated[str | None, Query(pattern=ID_PATTERN, description="IB account; default: any account")]


@router.get("/v1/account", response_model=AccountView, responses=errors(404))
def get_account(principal: Viewer, request: Request, account: AccountFilter = None) -> AccountView:
    """NetLiquidation, buying power, funds, gross position value and today's P&L as IB last reported them, with
    their age; 404 ``account_not_found`` until execution has published the account's state."""
    state = queries.latest_account_state(warehouse_of(request), account)
    return queries.account_view(state, datetime.now(UTC))
