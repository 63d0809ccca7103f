"""The exception handlers that turn every error into an ``ErrorBody`` (see ``api.errors``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import DEFAULT_CODES, ApiError, ErrorBody
from ibstream.warehouse import WarehouseError

log = logging.getLogger(__name__)


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return _error_response(error)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = DEFAULT_CODES.get(error.status_code, "error")
    message = str(error.detail) if error.detail else code.replace("_", " ")
    return _error_response(ApiError(error.status_code, code, message, dict(error.headers or {})))


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    # Only location, message and type: the raw input may be large, binary or secret.
    details = [
        {
            "loc": [str(part) for part in item.get("loc", ())],
            "msg": str(item.get("msg")),
            "type": str(item.get("type")),
        }
        for item in error.errors()
    ]
    body = ErrorBody(code="validation_error", message="the request is not valid", details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=422)


async def _warehouse_error(request: Request, error: Exception) -> Response:
    log.error("warehouse error", extra={"path": request.url.path, "error": str(error)})
    return _error_response(ApiError(503, "warehouse_unavailable", "the warehouse cannot answer right now"))


async def _internal_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path}, exc_info=error)
    return _error_response(ApiError(500, "internal_error", "internal error; it has been logged"))


def install_error_handlers(app: FastAPI) -> None:
    """Answer API errors, framework errors (routing, validation), warehouse failures and the rest as JSON."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(WarehouseError, _warehouse_error)
    app.add_exception_handler(Exception, _internal_error)
