"""Errors of the warehouse port, rooted in the project's IbstreamError."""

from __future__ import annotations

from ibstream.exceptions import IbstreamError


class WarehouseError(IbstreamError):
    """Root of warehouse errors: connection, DDL, insert or query failures."""


class WarehouseLockedError(WarehouseError):
    """The embedded chDB directory is held by another process (chDB allows one process per directory)."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(
            f"the warehouse directory {path} is held by another process ({holder}). Embedded chDB lets only one "
            "process open a directory: stop that process, run the command where the sink runs (the API process "
            "started with `ibstream run api --with-sink` serves reads), or point every process at a ClickHouse "
            "server with IBSTREAM_CLICKHOUSE_URL"
        )
        self.path = path
        self.holder = holder


class SchemaMappingError(WarehouseError):
    """An Avro type has no ClickHouse column mapping."""


class AuditRequestError(IbstreamError):
    """An audit asked for in a way it cannot answer: the caller's mistake, not a warehouse failure (the API answers
    404/422 with this message, the CLI exits 1 with it)."""


class UnknownAuditError(AuditRequestError):
    """No audit has that name; the message lists the known ones."""


class AuditParameterError(AuditRequestError):
    """A filter the audit does not take, a required one missing, or values that contradict each other."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class ApiReadError(IbstreamError):
    """The API could not be used to read the warehouse: unreachable, no or a refused token, or an unexpected answer."""


class ApiAnswerError(ApiReadError):
    """The API answered with an error status other than 401/403 (the caller's request, as the API judged it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
