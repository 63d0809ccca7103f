"""Finding the rows that fail an insert by bisection: pure, over any ``insert`` callable.

One row ClickHouse refuses (a violated constraint, a value its type cannot hold) fails the whole insert it is in.
Rather than fail the batch forever, the batch is split in halves and each half inserted on its own, recursively,
until every failing row stands alone; the rest land. With one poison row among n that costs about 2·log2(n)
inserts. Halves that succeed are in the table at once, so an error that escapes ``insert`` (anything but
``WarehouseError``, e.g. the warehouse going away mid-split) leaves some rows inserted: harmless, because a
re-delivered batch replaces them (ReplacingMergeTree on topic, partition, offset).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ibstream.warehouse import WarehouseError

T = TypeVar("T")


def insert_bisecting(
    rows: Sequence[T], insert: Callable[[Sequence[T]], None], first_error: WarehouseError
) -> list[tuple[int, WarehouseError]]:
    """Insert ``rows``, which failed together with ``first_error``, in ever smaller halves; returns the index and
    error of each row that failed alone (in row order). Every other row has been inserted."""
    if len(rows) == 1:
        return [(0, first_error)]
    failed: list[tuple[int, WarehouseError]] = []
    middle = len(rows) // 2
    pending = [(middle, len(rows)), (0, middle)]  # a stack: the first half is tried first
    while pending:
        start, end = pending.pop()
        try:
            insert(rows[start:end])
        except WarehouseError as error:
            if end - start == 1:
                failed.append((start, error))
                continue
            middle = (start + end) // 2
            pending += [(middle, end), (start, middle)]
    return sorted(failed, key=lambda item: item[0])
