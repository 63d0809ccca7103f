"""Agent0's plans and executions in SQLite: a restart keeps "at most once"."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from api.agent0.models import PlanResponseV1


class PlanStore:
    """Plans and executions in SQLite. ``claim`` is atomic (primary key), so concurrent executes of one plan
    cannot both win."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS plans (plan_id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS executions (plan_id TEXT PRIMARY KEY, order_id TEXT)")

    def save(self, response: PlanResponseV1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO plans VALUES (?, ?)", (response.plan_id, response.model_dump_json())
            )

    def get(self, plan_id: str) -> PlanResponseV1 | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM plans WHERE plan_id = ?", (plan_id,)).fetchone()
        return None if row is None else PlanResponseV1.model_validate_json(row[0])

    def claim(self, plan_id: str, order_id: str) -> bool:
        """True if this call is the plan's one execution."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO executions VALUES (?, ?)", (plan_id, order_id))
            except sqlite3.IntegrityError:
                return False
        return True

    def release(self, plan_id: str) -> None:
        """Undo a claim whose intent could not be published, so the plan can be executed again."""
        with self._lock:
            self._db.execute("DELETE FROM executions WHERE plan_id = ?", (plan_id,))
