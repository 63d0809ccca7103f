"""Helpers for the warehouse, sink and replay tests: settings with a per-test chDB directory, polling, producing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ibstream.config import Settings
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.warehouse import Warehouse

CODEC = SingleObjectCodec(SchemaStore())
ALL_TIME = (datetime(1990, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


def warehouse_settings(settings: Settings, directory: Path, **overrides: Any) -> Settings:
    """The test's Kafka settings plus its own chDB directory and small, fast batches."""
    values: dict[str, Any] = {
        "warehouse_dir": directory,
        "warehouse_batch_rows": 500,
        "warehouse_batch_seconds": 0.2,
    }
    values.update(overrides)
    return settings.with_overrides(**values)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition`` until true, failing with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def count_final(warehouse: Warehouse, table: str, topic: str | None = None) -> int:
    """Deduplicated row count of a table (optionally of one source topic)."""
    where = " WHERE _topic = {t:String}" if topic is not None else ""
    rows = warehouse.query(f"SELECT count() FROM {warehouse.table(table)} FINAL{where}", {"t": topic}).rows
    return int(rows[0][0])
