"""Ready-made audit queries, kept as `.sql` files next to this module (``sql/<name>.sql``).

Each file documents its definitions in its header comment. Table names in them are unqualified: they run with the
warehouse database as the session default. Parameters use ClickHouse server-side binding (``{day:Nullable(Date)}``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any, Literal

from ibstream.warehouse.client import QueryResult, Warehouse
from ibstream.warehouse.exceptions import WarehouseError

OutputFormat = Literal["table", "csv", "json"]


@dataclass(frozen=True)
class Audit:
    """One audit: its SQL file, what it answers, and the parameters it takes."""

    name: str
    file: str
    doc: str
    parameters: tuple[str, ...]
    required: tuple[str, ...] = ()

    def sql(self) -> str:
        """The query text."""
        return resources.files("ibstream.warehouse").joinpath("sql", self.file).read_text()


AUDITS: dict[str, Audit] = {
    audit.name: audit
    for audit in (
        Audit(
            "order-trail",
            "order_trail.sql",
            "signal → run → intent → risk → order events → fills for one order",
            ("order_id",),
            ("order_id",),
        ),
        Audit("feed-gaps", "feed_gaps.sql", "bars, gaps and feed lag by symbol and day", ("day",)),
        Audit("signal-outcomes", "signal_outcomes.sql", "hit rate, average R and P&L by strategy", ("day",)),
        Audit(
            "strategy-scores",
            "strategy_scores.sql",
            "hit rate, expectancy and profit factor of every scored signal by strategy, symbol and day",
            ("day",),
        ),
        Audit("risk-rejections", "risk_rejections.sql", "rejected orders by failed risk check and day", ("day",)),
        Audit("unreconciled-orders", "unreconciled_orders.sql", "orders whose records do not reconcile", ()),
        Audit("dlq-contents", "dlq_contents.sql", "dead letters from every DLQ", ("day",)),
    )
}


def run_audit(warehouse: Warehouse, name: str, *, day: date | None = None, order_id: str | None = None) -> QueryResult:
    """Run an audit by name; a required parameter that is missing is an error naming it."""
    audit = AUDITS.get(name)
    if audit is None:
        raise WarehouseError(f"no audit {name!r}; known: {', '.join(sorted(AUDITS))}")
    given: dict[str, Any] = {"day": day, "order_id": order_id}
    for required in audit.required:
        if given[required] is None:
            raise WarehouseError(f"audit {name} needs --{required.replace('_', '-')}")
    return warehouse.query(audit.sql(), {key: given[key] for key in audit.parameters})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return value


def render(result: QueryResult, output: OutputFormat) -> str:
    """The result as an aligned text table, CSV or a JSON array of objects."""
    if output == "json":
        return json.dumps(result.dicts(), default=str, indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.columns)
        writer.writerows([[_cell(value) for value in row] for row in result.rows])
        return buffer.getvalue()
    cells = [[("" if value is None else str(_cell(value))) for value in row] for row in result.rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(result.columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(result.columns, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"({len(cells)} rows)")
    return "\n".join(lines)
