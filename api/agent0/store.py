"""Agent0's plans in SQLite, so ``POST /v1/execute`` finds a plan made before a restart."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from api.agent0.models import PlanResponseV1


class PlanStore:
    """Plans by ``plan_id``. The first plan stored under an id stays: ``execute`` compares it with the run's plan on
    orchestration's record, so a later request cannot swap the terms behind an approved run."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS plans (plan_id TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def save(self, response: PlanResponseV1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO plans VALUES (?, ?)", (response.plan_id, response.model_dump_json())
            )

    def get(self, plan_id: str) -> PlanResponseV1 | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM plans WHERE plan_id = ?", (plan_id,)).fetchone()
        return None if row is None else PlanResponseV1.model_validate_json(row[0])
