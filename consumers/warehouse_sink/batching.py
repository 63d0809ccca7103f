"""The sink's batch: rows per table and the offsets they cover, bounded by size and age. Pure, no I/O."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ibstream.warehouse import TableSpec


@dataclass
class Batch:
    """Rows waiting for one insert per table, and the next offset to commit per (topic, partition) once they are in.

    Offsets cover every consumed message, including those that went to a DLQ instead of a table: after the insert
    (and the DLQ delivery) they are all handled. ``sources`` keeps, per table and parallel to its rows, the consumed
    message each row came from: a row the warehouse refuses goes to the DLQ with its original bytes.
    """

    max_rows: int
    max_seconds: float
    clock: Callable[[], float] = time.monotonic
    rows: dict[str, tuple[TableSpec, list[list[Any]]]] = field(default_factory=dict)
    sources: dict[str, list[Any]] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    messages: int = 0
    started: float | None = None

    def add(
        self,
        table: TableSpec | None,
        row: list[Any] | None,
        topic: str,
        partition: int,
        offset: int,
        source: Any = None,
    ) -> None:
        """Account for one consumed message (``source``); ``table``/``row`` are None for a message routed to a DLQ."""
        if self.started is None:
            self.started = self.clock()
        if table is not None and row is not None:
            self.rows.setdefault(table.name, (table, []))[1].append(row)
            self.sources.setdefault(table.name, []).append(source)
        key = (topic, partition)
        # Offsets only move forward: a re-delivered older message must not roll the commit back.
        self.next_offsets[key] = max(self.next_offsets.get(key, 0), offset + 1)
        self.messages += 1

    def full(self) -> bool:
        """Size bound reached."""
        return self.messages >= self.max_rows

    def due(self) -> bool:
        """Non-empty and either full or older than the time bound."""
        if self.started is None:
            return False
        return self.full() or self.clock() - self.started >= self.max_seconds

    def clear(self) -> None:
        """Start a new batch."""
        self.rows.clear()
        self.sources.clear()
        self.next_offsets.clear()
        self.messages = 0
        self.started = None
