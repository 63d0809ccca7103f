"""What the routers share: the bearer-token role dependencies, query and path parameters, and access to the
warehouse and the command sink the app holds in ``app.state``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal, Role, TokenVerifier, authorize
from api.commands import CommandSink, Delivered
from api.errors import unauthorized
from api.models import ID_PATTERN, SYMBOL_PATTERN, CommandAccepted
from api.times import IsoTime
from ibstream.contracts import ControlCommand
from ibstream.warehouse import Warehouse

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT with `sub`, `exp`, `iss`, `aud` and a `role` (viewer, trader, admin; service: streams → "
    "Agent0) or `roles` claim.",
)

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")]


Since = Annotated[
    IsoTime | None, Query(description="only items at or after this time (ISO 8601, 1970–2200; naive = UTC)")
]
Until = Annotated[IsoTime | None, Query(description="only items before this time (ISO 8601, 1970–2200; naive = UTC)")]
Symbol = Annotated[str | None, Query(pattern=SYMBOL_PATTERN)]
IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]
SignalId = Annotated[str, Path(pattern=ID_PATTERN)]
RunId = Annotated[str, Path(pattern=ID_PATTERN)]
OrderId = Annotated[str, Path(pattern=ID_PATTERN)]


def utc(value: datetime | None) -> datetime | None:
    """A naive time read as UTC; None stays None."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Principal:
    """The caller a valid bearer token names (401 without one); the app holds its verifier in ``app.state``."""
    if credentials is None:
        raise unauthorized("unauthorized", "a bearer token is required (Authorization: Bearer <jwt>)")
    verifier: TokenVerifier = request.app.state.verifier
    return verifier.verify(credentials.credentials)


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting callers whose role includes ``role``."""

    def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        authorize(principal, role)
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Trader = Annotated[Principal, Depends(require(Role.TRADER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not declare: a typo (``?symbl=AAPL``) must not silently widen
    a filter to everything."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: set[str] = set()
    pending = [dependant]
    while pending:  # the route's own parameters and those of its dependencies, recursively
        current = pending.pop()
        known.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"} for name in unknown]
        )


def warehouse_of(request: Request) -> Warehouse:
    """The warehouse the app was built over."""
    warehouse: Warehouse = request.app.state.warehouse
    return warehouse


def _accepted(command: ControlCommand, delivered: Delivered) -> CommandAccepted:
    return CommandAccepted(
        command_id=command.command_id,
        command=command.command,
        target=command.target,
        actor=command.actor,
        reason=command.reason,
        issued_time=command.issued_time,
        topic=delivered.topic,
        partition=delivered.partition,
        offset=delivered.offset,
    )


def publish(request: Request, command: ControlCommand) -> CommandAccepted:
    """Publish a command on the app's sink; the answer names where Kafka stored it."""
    sink: CommandSink = request.app.state.commands
    return _accepted(command, sink.publish(command))
