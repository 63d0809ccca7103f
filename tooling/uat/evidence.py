"""Child process of the UAT harness: run named SQL queries against one session's warehouse, print JSON.

``python -m tooling.uat.evidence --state-dir DIR`` reads ``[[name, sql], …]`` on stdin and prints
``{name: {"columns": […], "rows": […]}}``. A query that fails answers ``{"columns": ["error"], "rows": [[msg]]}``
so one missing table does not hide the rest of the evidence.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, list | tuple):
        return [_cell(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    from ibstream.config import load_settings
    from ibstream.warehouse import Warehouse

    parser = argparse.ArgumentParser(prog="tooling.uat.evidence")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    queries: list[list[str]] = json.loads(sys.stdin.read())
    settings = load_settings(state_dir=args.state_dir, warehouse_dir=args.state_dir / "warehouse")
    answers: dict[str, dict[str, Any]] = {}
    with Warehouse.open(settings) as warehouse:
        for name, sql in queries:
            try:
                result = warehouse.query(sql)
                answers[name] = {
                    "columns": list(result.columns),
                    "rows": [[_cell(v) for v in row] for row in result.rows],
                }
            except Exception as error:  # reported as evidence; the scenario judging it fails with the message
                answers[name] = {"columns": ["error"], "rows": [[str(error)[:500]]]}
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
