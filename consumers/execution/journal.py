"""The write-ahead journal: IB order ids are written down (fsync) before an order is placed.

One small JSON file per client id under ``state_dir/execution/``:

* ``hwm``: the highest IB order id ever used. A gateway restart can roll ``nextValidId`` back (LEAN-IB #242);
  ids are allocated above ``max(hwm, nextValidId - 1, ids seen in orders.events.v1)``, so they never go back.
* ``in_doubt``: intents whose IB ids are allocated but whose events are not committed to Kafka yet. After a crash
  such an intent is re-placed with the SAME ids: IB treats a placeOrder for an existing id as a modification, never
  as a second order, so even an order IB did not list yet (in flight, or held with transmit=False) is not doubled.

Loss: the journal lives on persistent storage (a PVC in the chart). An empty journal while the event topics show
orders placed at IB (``journal_lost``) means it was lost (a wiped volume, a new host): the executor then reconciles
with IB before placing anything and treats every orderRef IB holds that its book lacks as in doubt (``placement``).

The file is replaced atomically (write, fsync, rename, fsync the directory), so a crash leaves the old or the new
version, never a torn one. A lock file keeps a second executor with the same client id on this host out.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from consumers.execution.exceptions import ExecutorLockedError


@dataclass(frozen=True)
class InDoubt:
    """An intent whose IB ids were allocated before its events were committed."""

    order_id: str
    symbol: str
    ib_order_ids: tuple[int, ...]


class Journal:
    """The executor's durable local state for one IB client id."""

    def __init__(self, directory: Path, client_id: int) -> None:
        self.directory = directory
        self.path = directory / f"client-{client_id}.json"
        self._lock_path = directory / f"client-{client_id}.lock"
        self._lock_file: IO[str] | None = None
        self.hwm = 0
        self.in_doubt: dict[str, InDoubt] = {}

    def open(self) -> Journal:
        """Take the lock and load the file; ExecutorLockedError if another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_file = self._lock_path.open("a")
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise ExecutorLockedError(f"another executor holds {self._lock_path}") from None
        self._lock_file = lock_file
        if self.path.exists():
            data: dict[str, Any] = json.loads(self.path.read_text())
            self.hwm = int(data.get("hwm", 0))
            self.in_doubt = {
                order_id: InDoubt(order_id, entry["symbol"], tuple(int(i) for i in entry["ib_order_ids"]))
                for order_id, entry in data.get("in_doubt", {}).items()
            }
        return self

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def empty(self) -> bool:
        """Nothing was ever journaled here (no file, or a file that never recorded an id)."""
        return self.hwm == 0 and not self.in_doubt

    def allocate(self, count: int, floor: int) -> list[int]:
        """``count`` fresh ids above both the journal's high-water mark and ``floor`` (the next id IB offers minus
        one, or the highest id our events mention). Not durable until ``begin`` writes them."""
        start = max(self.hwm, floor) + 1
        return list(range(start, start + count))

    def begin(self, entry: InDoubt) -> None:
        """Durably record that ``entry``'s ids are about to be used (call BEFORE placing)."""
        self.in_doubt[entry.order_id] = entry
        self.hwm = max(self.hwm, *entry.ib_order_ids)
        self._write()

    def settle(self, order_ids: list[str]) -> None:
        """The intents' events are committed to Kafka: they are no longer in doubt."""
        if any(order_id in self.in_doubt for order_id in order_ids):
            for order_id in order_ids:
                self.in_doubt.pop(order_id, None)
            self._write()

    def raise_hwm(self, ib_order_id: int) -> None:
        """Remember an id used outside ``begin`` (adopted from IB); written with the next durable change."""
        self.hwm = max(self.hwm, ib_order_id)

    def _write(self) -> None:
        payload = {
            "hwm": self.hwm,
            "in_doubt": {
                e.order_id: {"symbol": e.symbol, "ib_order_ids": list(e.ib_order_ids)} for e in self.in_doubt.values()
            },
        }
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def journal_lost(journal_empty: bool, max_ib_order_id_in_events: int) -> bool:
    """The journal was lost: it is empty, yet the event topics record orders that reached IB (an IB order id)."""
    return journal_empty and max_ib_order_id_in_events > 0
