"""Errors as JSON with a stable ``code`` and a human ``message`` — never a stack trace, for every status.

Clients switch on ``code``; the message may change wording. Every route declares these in OpenAPI (``ERRORS``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ibstream.exceptions import IbstreamError


class ErrorBody(BaseModel):
    """The body of every error response."""

    code: str = Field(description="stable, machine-readable error code", examples=["forbidden"])
    message: str = Field(description="what went wrong, for humans")
    details: list[dict[str, Any]] | None = Field(default=None, description="per-field problems (validation)")


class ApiError(IbstreamError):
    """An error the API answers on purpose, with its status, stable code and message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return ErrorBody(code=self.code, message=self.message).model_dump(exclude_none=True)


def unauthorized(code: str, message: str) -> ApiError:
    """A 401 with the RFC 6750 challenge header."""
    return ApiError(401, code, message, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


#: HTTP status → the code used when a framework error (routing, validation) has no code of its own.
DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_COMMON: dict[int | str, dict[str, Any]] = {
    400: _error("bad request (e.g. an invalid cursor)"),
    401: _error("missing, expired or invalid bearer token"),
    403: _error("the token's role may not do this"),
    413: _error("request body larger than the configured limit"),
    422: _error("request failed validation"),
    429: _error("rate limit exceeded; see Retry-After"),
    500: _error("internal error"),
    503: _error("a dependency (Kafka, the warehouse) is unavailable"),
}


def errors(*extra: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: the common errors plus route-specific ones (404, 409)."""
    described = {
        404: "not found",
        406: "no representation the Accept header allows",
        409: "conflicts with the current state",
    }
    responses = dict(_COMMON)
    for status in extra:
        responses[status] = _error(described.get(status, "error"))
    return responses
