"""DDL generation from the `.avsc` files, row conversion, batching and replay rewriting — no I/O."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.warehouse_sink.batching import Batch
from ibstream.cli import build_parser
from ibstream.contracts import TOPICS, Bar, Execution, Quote
from ibstream.contracts.enums import ExecutionSource, MarketDataSource, Side
from ibstream.contracts.serde import SchemaStore
from ibstream.warehouse.audits import AUDITS
from ibstream.warehouse.exceptions import SchemaMappingError
from ibstream.warehouse.migrations import build_migrations, pending
from ibstream.warehouse.schema import WarehouseSchema, clickhouse_type, table_name
from tooling.replay import as_replay, parse_symbols

SCHEMA = WarehouseSchema.build()
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


def test_every_avro_field_becomes_a_column_in_schema_order() -> None:
    store = SchemaStore()
    for spec in TOPICS:
        table = SCHEMA.for_topic(spec)
        fields = [f["name"] for f in json.loads(store.current(spec.schema_name).text)["fields"]]
        assert [c.name for c in table.columns] == fields
        assert table.column_names[-5:] == ["_topic", "_partition", "_offset", "_kafka_ts", "_inserted_at"]
    assert [c.name for c in SCHEMA.dead_letters.columns][:3] == ["original_topic", "partition", "offset"]


@pytest.mark.parametrize(
    ("avro", "expected"),
    [
        ("string", "String"),
        ("long", "Int64"),
        ("int", "Int32"),
        ("double", "Float64"),
        ("boolean", "Bool"),
        (["null", "double"], "Nullable(Float64)"),
        ({"type": "long", "logicalType": "timestamp-micros"}, "DateTime64(6, 'UTC')"),
        ({"type": "enum", "name": "E", "symbols": ["a"]}, "LowCardinality(String)"),
        (["null", {"type": "enum", "name": "E", "symbols": ["a"]}], "LowCardinality(Nullable(String))"),
        ({"type": "map", "values": "double"}, "Map(String, Float64)"),
        (
            {"type": "array", "items": {"type": "record", "name": "R", "fields": [{"name": "end", "type": "long"}]}},
            "Array(Tuple(`end` Int64))",
        ),
    ],
)
def test_avro_types_map_to_clickhouse_types(avro: Any, expected: str) -> None:
    assert clickhouse_type(avro)[0] == expected


def test_unmappable_types_are_refused() -> None:
    with pytest.raises(SchemaMappingError):
        clickhouse_type(["null", "string", "long"])
    with pytest.raises(SchemaMappingError):
        clickhouse_type(["null", {"type": "map", "values": "string"}])


def test_bytes_columns_are_read_as_bytes() -> None:
    assert SCHEMA.dead_letters.column_formats() == {"key": "bytes", "value": "bytes", "headers": "bytes"}
    assert SCHEMA.for_topic(TOPICS[0]).column_formats() == {}


def test_tables_dedup_on_kafka_coordinates_and_take_retention() -> None:
    table = SCHEMA.by_topic["md.bars.5s.v1"]
    assert table.name == table_name("md.bars.5s.v1") == "md_bars_5s_v1"
    ddl = table.ddl("ib", 365)
    assert "ENGINE = ReplacingMergeTree(_inserted_at)" in ddl
    assert "ORDER BY (_topic, _partition, _offset)" in ddl
    assert "TTL toDateTime(_kafka_ts) + toIntervalDay(365)" in ddl
    assert "TTL" not in SCHEMA.by_topic["orders.events.v1"].ddl("ib", None)
    assert re.search(r"`end` DateTime64\(6, 'UTC'\)", SCHEMA.by_topic["md.gaps.v1"].ddl("ib", None))


def test_row_round_trip_through_the_row_shape() -> None:
    bar = Bar(
        symbol="AAA",
        start=NOW,
        open=1,
        high=2,
        low=0.5,
        close=1.5,
        volume=10,
        wap=1.2,
        count=3,
        event_time=NOW,
        ingest_time=NOW,
        source=MarketDataSource.LIVE,
    )
    table = SCHEMA.by_topic["md.bars.5s.v1"]
    row = table.to_row(bar, "t", 1, 42, NOW, NOW)
    assert row[-5:] == ["t", 1, 42, NOW, NOW]
    assert table.from_row(row[: len(table.columns)]) == bar


def test_migrations_rerun_only_when_needed() -> None:
    migrations = build_migrations(SCHEMA, lambda table: None)
    assert [m.version for m in migrations] == [1, 2, 3, 4, 5, 6, 7]
    assert pending(migrations, {}, "ib") == migrations
    applied = {m.version: m.checksum("ib") for m in migrations}
    assert pending(migrations, applied, "ib") == []
    # A repeatable step (views) re-runs when its SQL changes; a versioned one never does.
    changed = {**applied, 1: "old", 3: "old"}
    assert [m.version for m in pending(migrations, changed, "ib")] == [3]


def test_batch_is_bounded_by_size_and_age_and_offsets_only_move_forward() -> None:
    now = [0.0]
    batch = Batch(max_rows=3, max_seconds=1.0, clock=lambda: now[0])
    table = SCHEMA.by_topic["md.quotes.v1"]
    assert not batch.due()
    batch.add(table, ["r"], "t", 0, 5)
    assert not batch.due()
    now[0] = 1.0
    assert batch.due()  # age bound
    batch.clear()
    batch.add(table, ["r"], "t", 0, 7)
    batch.add(None, None, "t", 0, 6)  # a DLQ'd, re-delivered older record
    batch.add(table, ["r"], "t", 1, 0)
    assert batch.full() and batch.due()  # size bound
    assert batch.next_offsets == {("t", 0): 8, ("t", 1): 1}
    assert len(batch.rows["md_quotes_v1"][1]) == 2


def test_replay_marks_market_records_only() -> None:
    quote = Quote(symbol="A", con_id=1, event_time=NOW, ingest_time=NOW, source=MarketDataSource.LIVE)
    assert as_replay(quote).source == MarketDataSource.REPLAY
    fill = Execution(
        exec_id="e",
        order_id="o",
        symbol="A",
        account="DU1",
        side=Side.BUY,
        quantity=1,
        price=1,
        cumulative_quantity=1,
        avg_price=1,
        source=ExecutionSource.LIVE,
        exec_time=NOW,
        ingest_time=NOW + timedelta(seconds=1),
    )
    assert as_replay(fill) == fill  # its source is an ExecutionSource: not market data, unchanged
    assert parse_symbols(["AAA,BBB", "CCC"]) == ["AAA", "BBB", "CCC"]


def test_cli_audit_choices_match_the_registry_and_sql_files_exist() -> None:
    args = build_parser().parse_args(["audit", "feed-gaps", "--day", "2026-03-02", "--format", "csv"])
    assert args.day.isoformat() == "2026-03-02"
    choices = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["audit"]._actions  # type: ignore[union-attr]
        if a.dest == "name"
    ).choices
    assert sorted(choices) == sorted(AUDITS)
    for audit in AUDITS.values():
        sql = audit.sql()
        for parameter in audit.parameters:
            assert "{" + parameter + ":" in sql
    replay_args = build_parser().parse_args(
        ["replay", "--topic", "md.bars.5s.v1", "--from", "2026-03-02T14:00:00", "--to", "2026-03-02T15:00:00Z"]
    )
    assert replay_args.start == datetime(2026, 3, 2, 14, tzinfo=UTC) and replay_args.source == "kafka"
