"""What every read shares: deduplicated record fetches, keyset pagination, filters and time ranges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from api.cursor import decode_cursor, encode_cursor
from ibstream.contracts import Record, TopicSpec
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import quote_ident

R = TypeVar("R", bound=Record)


def micros(value: datetime) -> int:
    """Microseconds since the epoch: compared as integers in SQL, so cursors keep full precision."""
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def topic_table(warehouse: Warehouse, spec: TopicSpec[Any]) -> str:
    return warehouse.table(warehouse.schema.for_topic(spec).name)


def fetch_records(
    warehouse: Warehouse,
    spec: TopicSpec[R],
    where: str,
    parameters: Mapping[str, Any],
    order_by: str,
    dedup_by: str,
) -> list[R]:
    """Records of one topic matching ``where``, deduplicated by ``dedup_by``, in ``order_by`` order."""
    table = warehouse.schema.for_topic(spec)
    names = ", ".join(quote_ident(column.name) for column in table.columns)
    sql = (
        f"SELECT {names} FROM (SELECT * FROM {warehouse.table(table.name)} FINAL WHERE {where} "
        f"ORDER BY _kafka_ts, _offset LIMIT 1 BY {dedup_by}) ORDER BY {order_by}"
    )
    result = warehouse.query(sql, parameters, column_formats=table.column_formats())
    return [table.from_row(row) for row in result.rows]  # type: ignore[misc]  # from_row builds spec.record


def keyset(
    conditions: list[str],
    parameters: dict[str, Any],
    cursor: str | None,
    filters: Mapping[str, Any],
    time_column: str,
    id_column: str,
) -> None:
    if cursor is None:
        return
    time, item_id = decode_cursor(cursor, filters)
    conditions.append(
        f"(toUnixTimestamp64Micro({time_column}), {id_column}) < ({{cursor_us:Int64}}, {{cursor_id:String}})"
    )
    parameters.update(cursor_us=micros(time), cursor_id=item_id)


def time_range(
    conditions: list[str], parameters: dict[str, Any], column: str, since: datetime | None, until: datetime | None
) -> None:
    if since is not None:
        conditions.append(f"toUnixTimestamp64Micro({column}) >= {{since_us:Int64}}")
        parameters["since_us"] = micros(since)
    if until is not None:
        conditions.append(f"toUnixTimestamp64Micro({column}) < {{until_us:Int64}}")
        parameters["until_us"] = micros(until)


def equals(conditions: list[str], parameters: dict[str, Any], column: str, value: str | None) -> None:
    if value is not None:
        conditions.append(f"{column} = {{{column}_eq:String}}")
        parameters[f"{column}_eq"] = value


def next_cursor(items: Sequence[Any], limit: int, time_of: str, id_of: str, filters: Mapping[str, Any]) -> str | None:
    """The cursor after the last item of a full page (``items`` holds up to limit + 1 rows); None at the end."""
    if len(items) <= limit:
        return None
    last = items[limit - 1]
    return encode_cursor(getattr(last, time_of), getattr(last, id_of), filters)


def where_clause(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "1"


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
