"""The write-ahead journal: IB order ids are written down (fsync) before an order is placed.

One small file per client id under ``state_dir/execution/``, ``client-<id>.jsonl``: JSON lines, each a change
appended and made durable with one ``fdatasync`` (a placement waits for it):

* ``hwm``: the highest IB order id ever used. A gateway restart can roll ``nextValidId`` back (LEAN-IB #242);
  ids are allocated above ``max(hwm, nextValidId - 1, ids seen in orders.events.v1)``, so they never go back.
* ``in_doubt``: intents whose IB ids are allocated but whose events are not committed to Kafka yet. After a crash
  such an intent is re-placed with the SAME ids: IB treats a placeOrder for an existing id as a modification, never
  as a second order, so even an order IB did not list yet (in flight, or held with transmit=False) is not doubled.

Lines: a snapshot ``{"hwm": …, "in_doubt": {order_id: {symbol, ib_order_ids}}}`` first, then ``{"begin": {…},
"hwm": …}`` and ``{"settle": [order_id, …]}``; replayed in order on open. Appending costs one fdatasync where
rewriting the whole file atomically cost two fsyncs (the file's and its directory's): on this project's dev machine
0.17 against 0.55 ms at the median and 0.3 against 3.4 ms at p95. Every ``COMPACT_AFTER`` lines the file is rewritten
as one snapshot, atomically (write, fsync, rename, fsync the directory), so a crash leaves the old or the new file.
A crash in the middle of an append leaves a torn last line: it was never acknowledged (so nothing was placed on it),
it is ignored, and the file is compacted at once so the next append does not join it. A journal of the format
before (``client-<id>.json``, one snapshot) is read and rewritten as the new file.

Loss: the journal lives on persistent storage (a PVC in the chart). An empty journal while the event topics show
orders placed at IB (``journal_lost``) means it was lost (a wiped volume, a new host): the executor then reconciles
with IB before placing anything and treats every orderRef IB holds that its book lacks as in doubt (``placement``).

A lock file keeps a second executor with the same client id on this host out.
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


#: Lines appended before the journal is rewritten as one snapshot (at a ``settle``, off the placement path).
COMPACT_AFTER = 1000


class Journal:
    """The executor's durable local state for one IB client id."""

    def __init__(self, directory: Path, client_id: int) -> None:
        self.directory = directory
        self.path = directory / f"client-{client_id}.jsonl"
        self._legacy_path = directory / f"client-{client_id}.json"
        self._lock_path = directory / f"client-{client_id}.lock"
        self._lock_file: IO[str] | None = None
        self._log: IO[str] | None = None
        self._lines = 0
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
        clean = True
        if self.path.exists():
            clean = self._replay(self.path)
        elif self._legacy_path.exists():
            self._replay(self._legacy_path)  # the old format: one snapshot, the record the new one starts with
            clean = False
        if not clean:
            self._compact()  # a torn last line or the old format: start from one clean snapshot
        if self._legacy_path.exists():
            self._legacy_path.unlink()
        self._log = self._open_log()
        return self

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
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
        self._append({"begin": {"order_id": entry.order_id, **_entry_json(entry)}, "hwm": self.hwm})

    def settle(self, order_ids: list[str]) -> None:
        """The intents' events are committed to Kafka: they are no longer in doubt."""
        if any(order_id in self.in_doubt for order_id in order_ids):
            for order_id in order_ids:
                self.in_doubt.pop(order_id, None)
            if self._lines >= COMPACT_AFTER:
                self._compact()
            else:
                self._append({"settle": order_ids, "hwm": self.hwm})

    def raise_hwm(self, ib_order_id: int) -> None:
        """Remember an id used outside ``begin`` (adopted from IB); written with the next durable change."""
        self.hwm = max(self.hwm, ib_order_id)

    def _replay(self, path: Path) -> bool:
        """Apply the file's lines in order; False when its last line is torn (ignored: never acknowledged)."""
        loaded = replay(path.read_text(), str(path))
        self.hwm, self.in_doubt, self._lines = loaded.hwm, loaded.in_doubt, loaded.lines
        return loaded.clean

    def _open_log(self) -> IO[str]:
        """The append handle, on a file that starts with a snapshot (written now when there is no file yet)."""
        if not self.path.exists():
            self._compact()
        return self.path.open("a")

    def _append(self, record: dict[str, Any]) -> None:
        if self._log is None:  # written without ``open`` (tests, tools): no lock, the file as it is
            self.directory.mkdir(parents=True, exist_ok=True)
            self._log = self._open_log()
        self._log.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._log.flush()
        os.fdatasync(self._log.fileno())
        self._lines += 1

    def _compact(self) -> None:
        """Rewrite the file as one snapshot line, atomically."""
        payload = _snapshot_json(self.hwm, self.in_doubt)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            handle.write(json.dumps(payload, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._lines = 1
        if self._log is not None:
            self._log.close()
            self._log = self.path.open("a")


@dataclass(frozen=True)
class Replayed:
    """What a journal file holds: the high-water mark, the intents in doubt, its line count, and whether it ended
    cleanly (False: a torn last line, ignored)."""

    hwm: int
    in_doubt: dict[str, InDoubt]
    lines: int
    clean: bool


def replay(text: str, source: str = "journal") -> Replayed:
    """Apply a journal file's lines in order (pure). A damaged line before the last is an error (ValueError)."""
    hwm, in_doubt = 0, dict[str, InDoubt]()
    lines = text.splitlines()
    complete = text.endswith("\n") or not lines
    for number, line in enumerate(lines):
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            if number == len(lines) - 1 and not complete:
                return Replayed(hwm, in_doubt, number, clean=False)
            raise ValueError(f"{source}: line {number + 1} is not a journal record") from None
        if "in_doubt" in record:
            in_doubt = {order_id: _entry(order_id, data) for order_id, data in record["in_doubt"].items()}
        if "begin" in record:
            begun = _entry(record["begin"]["order_id"], record["begin"])
            in_doubt[begun.order_id] = begun
        for order_id in record.get("settle", ()):
            in_doubt.pop(order_id, None)
        hwm = int(record["hwm"]) if "in_doubt" in record else max(hwm, int(record.get("hwm", 0)))
    return Replayed(hwm, in_doubt, len(lines), clean=complete)


def on_disk(path: Path) -> dict[str, Any]:
    """A journal file's state as one snapshot (``hwm``, ``in_doubt`` by order id), without taking its lock."""
    loaded = replay(path.read_text(), str(path))
    return _snapshot_json(loaded.hwm, loaded.in_doubt)


def _snapshot_json(hwm: int, in_doubt: dict[str, InDoubt]) -> dict[str, Any]:
    return {"hwm": hwm, "in_doubt": {order_id: _entry_json(entry) for order_id, entry in in_doubt.items()}}


def _entry_json(entry: InDoubt) -> dict[str, Any]:
    return {"symbol": entry.symbol, "ib_order_ids": list(entry.ib_order_ids)}


def _entry(order_id: str, data: dict[str, Any]) -> InDoubt:
    return InDoubt(order_id, data["symbol"], tuple(int(i) for i in data["ib_order_ids"]))


def journal_lost(journal_empty: bool, max_ib_order_id_in_events: int) -> bool:
    """The journal was lost: it is empty, yet the event topics record orders that reached IB (an IB order id)."""
    return journal_empty and max_ib_order_id_in_events > 0
