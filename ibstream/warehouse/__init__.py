"""The warehouse: ClickHouse tables generated from the `.avsc` files, migrations, lag views, audits, replay reads.

The only package importing clickhouse-connect (and, through it, chDB). Embedded chDB under ``warehouse_dir`` by
default; a ClickHouse server when ``IBSTREAM_CLICKHOUSE_URL`` is set — the same client API and SQL either way.
"""

from __future__ import annotations

from ibstream.warehouse.client import QueryResult, StoredRecord, Warehouse, lock_holder
from ibstream.warehouse.exceptions import (
    AuditParameterError,
    AuditRequestError,
    SchemaMappingError,
    UnknownAuditError,
    WarehouseError,
    WarehouseLockedError,
)
from ibstream.warehouse.schema import TableSpec, WarehouseSchema

__all__ = [
    "AuditParameterError",
    "AuditRequestError",
    "QueryResult",
    "SchemaMappingError",
    "StoredRecord",
    "TableSpec",
    "UnknownAuditError",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
    "WarehouseSchema",
    "lock_holder",
]
