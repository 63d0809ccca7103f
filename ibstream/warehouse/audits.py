"""Ready-made audit queries, kept as `.sql` files next to this module (``sql/<name>.sql``).

Each file documents its definitions in its header comment. Table names in them are unqualified: they run with the
warehouse database as the session default. Parameters use ClickHouse server-side binding
(``{start:Nullable(DateTime64(6, 'UTC'))}``); a NULL parameter is no filter.

Filters, the same for ``ibstream audit`` and ``GET /v1/audits/{name}``: ``day`` (a UTC day) or ``from``/``to`` (a
half-open time window [from, to), either end open), ``symbol``, ``strategy``, ``order_id``. Each audit declares the
ones it takes and what its window applies to; any other filter is refused naming it, never silently ignored (a filter
that does nothing would widen the answer without saying so). ``audit_parameters`` turns filters into the SQL's
parameters and is pure, so the CLI checks its input before it opens the warehouse or calls the API.

Output: rows are normalised to JSON values first (``jsonable``: ISO 8601 times, no NaN), and the table, CSV and JSON
renderings are made from those, so an audit read directly and one read through the API (which sends the same
normalised rows) print the same text.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any, Literal

from ibstream.warehouse.client import QueryResult, Warehouse
from ibstream.warehouse.exceptions import AuditParameterError, UnknownAuditError

OutputFormat = Literal["table", "csv", "json"]

#: The window filters: a UTC day, or from/to. An audit taking one takes all three.
WINDOW = ("day", "from", "to")
#: Every filter name, in the order they are listed to callers.
FILTERS = (*WINDOW, "symbol", "strategy", "order_id")


@dataclass(frozen=True)
class Audit:
    """One audit: its SQL file, what it answers, the filters it takes and what its time window applies to."""

    name: str
    file: str
    doc: str
    filters: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    window: str = ""

    def sql(self) -> str:
        """The query text."""
        return resources.files("ibstream.warehouse").joinpath("sql", self.file).read_text()

    @property
    def parameters(self) -> tuple[str, ...]:
        """The SQL's parameter names (``start``/``end`` stand for the window filters)."""
        names = [name for name in self.filters if name not in WINDOW]
        return (("start", "end") if "day" in self.filters else ()) + tuple(names)


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
        Audit(
            "feed-gaps",
            "feed_gaps.sql",
            "bars, gaps and feed lag by symbol and day",
            (*WINDOW, "symbol"),
            window="a bar's start, a gap's first missing bar, a quote's or bar's event time",
        ),
        Audit(
            "signal-outcomes",
            "signal_outcomes.sql",
            "hit rate, average R and P&L by strategy",
            (*WINDOW, "symbol", "strategy"),
            window="the signal's created_time",
        ),
        Audit(
            "strategy-scores",
            "strategy_scores.sql",
            "hit rate, expectancy and profit factor of every scored signal by strategy, symbol and day",
            (*WINDOW, "symbol", "strategy"),
            window="the signal's signal_time",
        ),
        Audit(
            "risk-rejections",
            "risk_rejections.sql",
            "rejected orders by failed risk check and day",
            (*WINDOW, "symbol"),
            window="the decision's decided_time",
        ),
        Audit(
            "unreconciled-orders",
            "unreconciled_orders.sql",
            "orders whose records do not reconcile",
            ("symbol",),
        ),
        Audit(
            "dlq-contents",
            "dlq_contents.sql",
            "dead letters from every DLQ",
            WINDOW,
            window="the dead letter's failed_time",
        ),
        Audit(
            "trade-reviews",
            "trade_reviews_audit.sql",
            "closed trades: plan against fills, slippage, P&L, R, exit reason",
            (*WINDOW, "symbol", "strategy"),
            window="the trade's exit_time (trades closed in the window)",
        ),
    )
}


@dataclass(frozen=True)
class AuditFilters:
    """What a caller asked to filter by (None: not given). ``start``/``end`` are the ``from``/``to`` filters."""

    day: date | None = None
    start: datetime | None = None
    end: datetime | None = None
    symbol: str | None = None
    strategy: str | None = None
    order_id: str | None = None

    def given(self) -> list[str]:
        """The names of the filters given, in ``FILTERS`` order."""
        values = {
            "day": self.day,
            "from": self.start,
            "to": self.end,
            "symbol": self.symbol,
            "strategy": self.strategy,
            "order_id": self.order_id,
        }
        return [name for name in FILTERS if values[name] is not None]


def find_audit(name: str) -> Audit:
    """The audit called ``name``; UnknownAuditError naming the known ones otherwise."""
    audit = AUDITS.get(name)
    if audit is None:
        raise UnknownAuditError(f"no audit {name!r}; known: {', '.join(sorted(AUDITS))}")
    return audit


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def window_of(filters: AuditFilters) -> tuple[datetime | None, datetime | None]:
    """The half-open window [start, end) the filters select (a day is its UTC midnight to the next one)."""
    if filters.day is not None:
        if filters.start is not None or filters.end is not None:
            raise AuditParameterError("day", "give either day or from/to, not both")
        midnight = datetime.combine(filters.day, time(0), tzinfo=UTC)
        return midnight, midnight + timedelta(days=1)
    start, end = _utc(filters.start), _utc(filters.end)
    if start is not None and end is not None and end <= start:
        raise AuditParameterError("to", f"to ({end.isoformat()}) must be after from ({start.isoformat()})")
    return start, end


def audit_parameters(audit: Audit, filters: AuditFilters) -> dict[str, Any]:
    """The SQL parameters for ``audit`` under ``filters``; AuditParameterError naming the first filter the audit does
    not take, a required one that is missing, or a window that is empty or given twice."""
    for name in filters.given():
        if name not in audit.filters:
            takes = ", ".join(audit.filters) or "no filters"
            raise AuditParameterError(name, f"audit {audit.name} does not take the {name} filter (it takes: {takes})")
    given = set(filters.given())
    for name in audit.required:
        if name not in given:
            raise AuditParameterError(name, f"audit {audit.name} needs the {name} filter")
    start, end = window_of(filters)
    values: dict[str, Any] = {
        "start": start,
        "end": end,
        "symbol": filters.symbol,
        "strategy": filters.strategy,
        "order_id": filters.order_id,
    }
    return {name: values[name] for name in audit.parameters}


def execute_audit(warehouse: Warehouse, name: str, filters: AuditFilters) -> QueryResult:
    """Run the audit called ``name`` under ``filters`` (checked first: see ``audit_parameters``)."""
    audit = find_audit(name)
    return warehouse.query(audit.sql(), audit_parameters(audit, filters))


def run_audit(
    warehouse: Warehouse,
    name: str,
    *,
    day: date | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    symbol: str | None = None,
    strategy: str | None = None,
    order_id: str | None = None,
) -> QueryResult:
    """``execute_audit`` with the filters as keywords."""
    filters = AuditFilters(day=day, start=start, end=end, symbol=symbol, strategy=strategy, order_id=order_id)
    return execute_audit(warehouse, name, filters)


def jsonable_value(value: Any) -> Any:
    """One cell as a JSON value: times as ISO 8601, non-finite floats as null, sequences as lists; idempotent."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable_value(item) for key, item in value.items()}
    return str(value)  # UUID, Decimal, IP addresses: their text


def jsonable(result: QueryResult) -> QueryResult:
    """The result with every cell a JSON value (see ``jsonable_value``)."""
    return QueryResult(list(result.columns), [tuple(jsonable_value(v) for v in row) for row in result.rows])


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return value


def render(result: QueryResult, output: OutputFormat) -> str:
    """The result as an aligned text table, CSV or a JSON array of objects (from its JSON values)."""
    result = jsonable(result)
    if output == "json":
        return json.dumps(result.dicts(), indent=2)
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
