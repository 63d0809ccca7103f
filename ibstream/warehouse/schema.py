"""ClickHouse tables generated from the `.avsc` files: one table per topic, columns mirroring the Avro fields.

Pure mapping, no I/O: the DDL, the row conversion for inserts and the reverse conversion for reads all come from
the same parsed schema, so the `.avsc` stays the single source of truth and a new field reaches the warehouse
without hand-written SQL.

Naming: ``md.bars.5s.v1`` → table ``md_bars_5s_v1``; every DLQ topic lands in one ``dead_letters`` table.
Every table also carries the Kafka coordinates ``_topic, _partition, _offset, _kafka_ts`` and ``_inserted_at``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Any

from ibstream.contracts import TOPICS, DeadLetter, Record, TopicSpec
from ibstream.contracts.base import to_avro_value
from ibstream.contracts.serde import SchemaStore
from ibstream.warehouse.exceptions import SchemaMappingError

DEAD_LETTER_TABLE = "dead_letters"
DLQ_RETENTION_KEY = "dlq"
PROGRESS_TABLE = "_sink_progress"
MIGRATIONS_TABLE = "_migrations"

#: Kafka coordinates and sink time, in this order, after the record's own columns.
META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_topic", "LowCardinality(String)"),
    ("_partition", "Int32"),
    ("_offset", "Int64"),
    ("_kafka_ts", "DateTime64(3, 'UTC')"),
    ("_inserted_at", "DateTime64(6, 'UTC')"),
)

_PRIMITIVES = {
    "string": "String",
    "bytes": "String",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "boolean": "Bool",
}

_LOGICAL = {
    "timestamp-micros": "DateTime64(6, 'UTC')",
    "timestamp-millis": "DateTime64(3, 'UTC')",
}


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier: Avro field names such as ``end``, ``open`` or ``limit`` are SQL keywords."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Column:
    """One record field as a ClickHouse column. ``has_bytes``: read it back with the ``bytes`` column format."""

    name: str
    ch_type: str
    has_bytes: bool


@dataclass(frozen=True)
class TableSpec:
    """A warehouse table and the record type it holds."""

    name: str
    record: type[Record]
    columns: tuple[Column, ...]
    retention_key: str
    _names: tuple[str, ...] = dataclass_field(init=False, repr=False, compare=False)
    #: Columns whose values may hold nested records (Tuple, Array, Map): the only ones ``to_row`` converts.
    _nested: tuple[int, ...] = dataclass_field(init=False, repr=False, compare=False)
    #: Top-level timestamp columns and their tick (µs or ms): the ones ``tick_row`` holds as integers.
    _ticks: tuple[tuple[int, timedelta], ...] = dataclass_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(column.name for column in self.columns))
        ticks = tuple(
            (index, _TICKS[column.ch_type.removeprefix("Nullable(")[: len("DateTime64(6")]])
            for index, column in enumerate(self.columns)
            if column.ch_type.removeprefix("Nullable(").startswith("DateTime64(")
        )
        object.__setattr__(self, "_ticks", ticks)
        nested = tuple(
            index
            for index, column in enumerate(self.columns)
            if any(kind in column.ch_type for kind in ("Tuple(", "Array(", "Map("))
        )
        object.__setattr__(self, "_nested", nested)

    @property
    def column_names(self) -> list[str]:
        """Record columns then metadata columns, the order rows are built in."""
        return [column.name for column in self.columns] + [name for name, _ in META_COLUMNS]

    def ddl(self, database: str, retention_days: int | None) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for this table.

        ReplacingMergeTree on (topic, partition, offset): a batch re-delivered after a crash replaces itself at merge
        time and reads with FINAL never see it twice. Monthly partitions on the Kafka timestamp let retention drop
        whole parts; the TTL removes expired rows at merges in between.
        """
        columns = [f"    {quote_ident(c.name)} {c.ch_type}" for c in self.columns]
        columns += [f"    {quote_ident(name)} {ch_type}" for name, ch_type in META_COLUMNS]
        ttl = f"\nTTL {ttl_expression(retention_days)}" if retention_days else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{quote_ident(self.name)} (\n"
            + ",\n".join(columns)
            + "\n) ENGINE = ReplacingMergeTree(_inserted_at)\nPARTITION BY toYYYYMM(_kafka_ts)\n"
            "ORDER BY (_topic, _partition, _offset)" + ttl
        )

    def to_row(
        self, record: Record, topic: str, partition: int, offset: int, kafka_ts: datetime, now: datetime
    ) -> list[Any]:
        """The insert row for one record at its Kafka coordinates (values as ``Record.to_avro`` gives them)."""
        # Straight from the model's fields: only nested values need converting, and building the whole Avro dict
        # first cost the sink a sixth of its time.
        fields = record.__dict__
        row = [fields[name] for name in self._names]
        for index in self._nested:
            row[index] = to_avro_value(row[index])
        row += [topic, partition, offset, kafka_ts, now]
        return row

    def fields_row(
        self, fields: Mapping[str, Any], topic: str, partition: int, offset: int, kafka_ms: int, now_us: int
    ) -> list[Any]:
        """The sink's insert row straight from decoded fields (``Codec.decode_fields``: timestamps already ticks),
        the Kafka timestamp in ms and the insert time in µs — no model in between."""
        row = [fields[name] for name in self._names]
        row += [topic, partition, offset, kafka_ms, now_us]
        return row

    def tick_row(
        self, record: Record, topic: str, partition: int, offset: int, kafka_ms: int, now_us: int
    ) -> list[Any]:
        """``to_row`` with every top-level timestamp as integer ticks, like ``fields_row``: one batch may mix both
        (a record by an older writer needs its model), and an insert column must hold one kind of value."""
        row = self.to_row(record, topic, partition, offset, _EPOCH, _EPOCH)
        for index, tick in self._ticks:
            value = row[index]
            if value is not None:
                row[index] = (value - _EPOCH) // tick
        row[-2:] = [kafka_ms, now_us]
        return row

    def tick_select(self) -> str:
        """The record columns as a SELECT list, top-level timestamps as integer ticks (what ``fields_row`` holds and
        ``Codec.encode_fields`` writes)."""
        ticks = dict(self._ticks)
        selected = []
        for index, column in enumerate(self.columns):
            name = quote_ident(column.name)
            tick = ticks.get(index)
            if tick is None:
                selected.append(name)
            else:
                selected.append(f"toUnixTimestamp64{'Micro' if tick == _TICKS['DateTime64(6'] else 'Milli'}({name})")
        return ", ".join(selected)

    def from_row(self, values: Sequence[Any]) -> Record:
        """Rebuild the record from the record columns of a row (as read with ``column_formats``)."""
        data = {
            column.name: _from_clickhouse(value, column) for column, value in zip(self.columns, values, strict=False)
        }
        return self.record.from_avro(data)

    def column_formats(self) -> dict[str, str]:
        """Columns holding Avro bytes must be read as bytes, not text (clickhouse-connect decodes UTF-8 otherwise)."""
        return {column.name: "bytes" for column in self.columns if column.has_bytes}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A DateTime64 column's tick by its precision.
_TICKS = {"DateTime64(6": timedelta(microseconds=1), "DateTime64(3": timedelta(milliseconds=1)}


def ttl_expression(days: int) -> str:
    """The TTL clause body for a retention in days."""
    return f"toDateTime(_kafka_ts) + toIntervalDay({int(days)})"


def _from_clickhouse(value: Any, column: Column) -> Any:
    # With the bytes format, clickhouse-connect also returns Map keys as bytes; Avro map keys are always strings.
    if column.has_bytes and isinstance(value, dict):
        return {key.decode() if isinstance(key, bytes) else key: item for key, item in value.items()}
    return value


def clickhouse_type(schema: Any, named: Mapping[str, Any] | None = None) -> tuple[str, bool]:
    """Map a parsed Avro schema to a ClickHouse type; the flag says whether Avro bytes occur inside it."""
    named = dict(named or {})
    if isinstance(schema, list):
        return _union_type(schema, named)
    if isinstance(schema, str):
        return _type_by_name(schema, named)
    if not isinstance(schema, dict):
        raise SchemaMappingError(f"unexpected Avro schema {schema!r}")
    return _complex_type(schema, named)


def _union_type(schema: list[Any], named: dict[str, Any]) -> tuple[str, bool]:
    """``[null, T]`` → ``Nullable(T)`` (inside ``LowCardinality`` if T is one); ``[T]`` → T."""
    branches = [branch for branch in schema if branch != "null"]
    if len(branches) != 1:
        raise SchemaMappingError(f"only [null, T] unions map to ClickHouse columns, got {schema!r}")
    inner, has_bytes = clickhouse_type(branches[0], named)
    if len(branches) == len(schema):
        return inner, has_bytes
    if inner.startswith(("Array(", "Map(")):
        raise SchemaMappingError(f"ClickHouse cannot make {inner} Nullable")
    if inner.startswith("LowCardinality("):
        return f"LowCardinality(Nullable({inner[len('LowCardinality(') : -1]}))", has_bytes
    return f"Nullable({inner})", has_bytes


def _type_by_name(schema: str, named: dict[str, Any]) -> tuple[str, bool]:
    """A primitive, or a named type declared earlier (by full or short name)."""
    if schema in _PRIMITIVES:
        return _PRIMITIVES[schema], schema == "bytes"
    short = schema.rsplit(".", 1)[-1]
    for key in (schema, short):
        if key in named:
            return clickhouse_type(named[key], named)
    raise SchemaMappingError(f"unknown Avro type {schema!r}")


def _complex_type(schema: dict[str, Any], named: dict[str, Any]) -> tuple[str, bool]:
    """A schema object: a logical type, enum, array, map, record, or a type wrapped in ``{"type": …}``."""
    logical = schema.get("logicalType")
    if logical in _LOGICAL:
        return _LOGICAL[logical], False
    kind = schema["type"]
    if kind in ("enum", "record", "fixed") and "name" in schema:
        named[schema["name"]] = schema
        named[schema["name"].rsplit(".", 1)[-1]] = schema
    if kind == "enum":
        # LowCardinality(String) rather than Enum8: adding a symbol to the .avsc needs no ALTER of old data.
        return "LowCardinality(String)", False
    if kind == "array":
        inner, has_bytes = clickhouse_type(schema["items"], named)
        return f"Array({inner})", has_bytes
    if kind == "map":
        inner, has_bytes = clickhouse_type(schema["values"], named)
        return f"Map(String, {inner})", has_bytes
    if kind == "record":
        return _record_type(schema, named)
    if isinstance(kind, str | list | dict):
        return clickhouse_type(kind, named)
    raise SchemaMappingError(f"unsupported Avro schema {schema!r}")


def _record_type(schema: dict[str, Any], named: dict[str, Any]) -> tuple[str, bool]:
    parts = []
    has_bytes = False
    for field in schema["fields"]:
        inner, field_bytes = clickhouse_type(field["type"], named)
        has_bytes = has_bytes or field_bytes
        parts.append(f"{quote_ident(field['name'])} {inner}")
    return f"Tuple({', '.join(parts)})", has_bytes


def table_name(topic_name: str) -> str:
    """``md.bars.5s.v1`` → ``md_bars_5s_v1`` (no prefix: the full topic name is kept in ``_topic``)."""
    return "".join(ch if ch.isalnum() else "_" for ch in topic_name)


def _columns(store: SchemaStore, record: type[Record]) -> tuple[Column, ...]:
    # Use the raw JSON (not fastavro's parsed form) so named types are resolved the way the file declares them.
    raw = json.loads(store.current(record.schema_name).text)
    named: dict[str, Any] = {}
    columns = []
    for field in raw["fields"]:
        ch_type, has_bytes = clickhouse_type(field["type"], named)
        columns.append(Column(field["name"], ch_type, has_bytes))
        _collect_named(field["type"], named)
    return tuple(columns)


def _collect_named(schema: Any, named: dict[str, Any]) -> None:
    # Named types declared in one field may be referenced by name in later fields (e.g. previous_state: RunState).
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("enum", "record", "fixed") and "name" in schema:
            named[schema["name"]] = schema
            named[schema["name"].rsplit(".", 1)[-1]] = schema
        for key in ("items", "values"):
            if key in schema:
                _collect_named(schema[key], named)
        for field in schema.get("fields", []):
            _collect_named(field["type"], named)


@dataclass(frozen=True)
class WarehouseSchema:
    """Every table: one per catalogue topic plus the shared dead-letter table."""

    by_topic: Mapping[str, TableSpec]
    dead_letters: TableSpec

    @classmethod
    def build(cls, store: SchemaStore | None = None) -> WarehouseSchema:
        """Generate every table from the schemas in ``avro/``."""
        store = store or SchemaStore()
        by_topic = {
            spec.name: TableSpec(table_name(spec.name), spec.record, _columns(store, spec.record), spec.name)
            for spec in TOPICS
        }
        dead = TableSpec(DEAD_LETTER_TABLE, DeadLetter, _columns(store, DeadLetter), DLQ_RETENTION_KEY)
        return cls(by_topic, dead)

    @property
    def tables(self) -> list[TableSpec]:
        """Topic tables in catalogue order, then the dead-letter table."""
        return [*self.by_topic.values(), self.dead_letters]

    def for_topic(self, spec: TopicSpec[Any]) -> TableSpec:
        """The table of a catalogue topic."""
        return self.by_topic[spec.name]


#: The first millisecond of year 10000: a Kafka timestamp from there on is no ``datetime`` (nor a warehouse time).
_YEAR_10000_MS = 253_402_300_800_000


def kafka_ms(timestamp_ms: int, fallback_ms: int) -> int:
    """A Kafka message timestamp (ms) for the warehouse: a missing one (≤ 0) falls back to the given time; ValueError
    for one past year 9999, as ``utc_from_kafka_ms`` (a row that cannot be built: the sink dead-letters it)."""
    if timestamp_ms <= 0:
        return fallback_ms
    if timestamp_ms >= _YEAR_10000_MS:
        raise ValueError(f"Kafka timestamp {timestamp_ms} ms is past year 9999: out of range")
    return timestamp_ms


def utc_from_kafka_ms(timestamp_ms: int, fallback: datetime) -> datetime:
    """A Kafka message timestamp (ms) as UTC; a missing timestamp (≤ 0) falls back to the given time."""
    if timestamp_ms <= 0:
        return fallback
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
