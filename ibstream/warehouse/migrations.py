"""Versioned, idempotent schema migrations, recorded in the ``_migrations`` table.

Two kinds, as in Flyway:
* versioned steps run once, in order (tables, the progress table);
* repeatable steps (views) run again whenever their generated SQL changes (checksum recorded).
After them, ``reconcile`` brings every table in line with the current `.avsc` and retention settings: columns added
to a schema are added to its table (BACKWARD_TRANSITIVE evolution only ever adds fields with defaults) and a changed
retention becomes a new TTL. Every statement is safe to run twice, so two processes migrating at once are harmless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources

from ibstream.contracts.bars import AGGREGATE_TOPICS
from ibstream.warehouse.schema import (
    MIGRATIONS_TABLE,
    PROGRESS_TABLE,
    TableSpec,
    WarehouseSchema,
    quote_ident,
)


@dataclass(frozen=True)
class Migration:
    """One step: its version, name, statements (generated for a database) and whether it is repeatable."""

    version: int
    name: str
    statements: Callable[[str], list[str]]
    repeatable: bool = False

    def checksum(self, database: str) -> str:
        """Hash of the generated SQL: a repeatable step re-runs when it changes."""
        return hashlib.sha256("\n;\n".join(self.statements(database)).encode()).hexdigest()[:16]


def migrations_table_ddl(database: str) -> str:
    """The bookkeeping table itself (created before anything else, idempotently)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{MIGRATIONS_TABLE} (version UInt32, name String, "
        "checksum String, applied_at DateTime64(6, 'UTC')) ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )


def _progress_ddl(database: str) -> list[str]:
    # One row per partition per sink flush: what was committed and how far behind the partition's end it was.
    return [
        f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{PROGRESS_TABLE} ("
        "group_id LowCardinality(String), topic LowCardinality(String), partition Int32, committed_offset Int64, "
        "high_watermark Int64, lag Int64, time DateTime64(6, 'UTC')) ENGINE = MergeTree "
        "PARTITION BY toYYYYMM(time) ORDER BY (group_id, topic, partition, time) "
        "TTL toDateTime(time) + toIntervalDay(30)"
    ]


def _q(database: str, table: str) -> str:
    return f"{quote_ident(database)}.{quote_ident(table)}"


def view_statements(schema: WarehouseSchema, database: str) -> list[str]:
    """The lag views and the deduplicated bar view, generated from the table list."""
    bars = _q(database, schema.by_topic["md.bars.5s.v1"].name)
    quotes = _q(database, schema.by_topic["md.quotes.v1"].name)
    sink_lag_parts = [
        f"SELECT '{table.name}' AS table, _topic AS topic, _partition AS partition, _offset AS offset, _kafka_ts AS "
        f"kafka_ts, _inserted_at AS inserted_at, dateDiff('millisecond', _kafka_ts, _inserted_at) AS lag_ms "
        f"FROM {_q(database, table.name)} FINAL"
        for table in schema.tables
    ]
    return [
        # Feed lag: how long after IB's event time our producer had the record (ingest_time − event_time).
        f"CREATE OR REPLACE VIEW {_q(database, 'feed_lag')} AS "
        f"SELECT 'quote' AS kind, symbol, source, event_time, ingest_time, "
        f"dateDiff('millisecond', event_time, ingest_time) AS lag_ms FROM {quotes} FINAL "
        f"UNION ALL SELECT 'bar' AS kind, symbol, source, event_time, ingest_time, "
        f"dateDiff('millisecond', event_time, ingest_time) AS lag_ms FROM {bars} FINAL",
        # Sink lag: how long a record waited between its Kafka timestamp and landing in ClickHouse.
        f"CREATE OR REPLACE VIEW {_q(database, 'sink_lag')} AS " + " UNION ALL ".join(sink_lag_parts),
        # Consumer lag: the latest flush per (group, topic, partition).
        f"CREATE OR REPLACE VIEW {_q(database, 'consumer_lag')} AS "
        f"SELECT group_id, topic, partition, argMax(committed_offset, time) AS committed_offset, "
        f"argMax(high_watermark, time) AS high_watermark, argMax(lag, time) AS lag, max(time) AS updated_time "
        f"FROM {_q(database, PROGRESS_TABLE)} GROUP BY group_id, topic, partition",
        # Bars are identified by (symbol, start) across live, backfill and replay: the latest record wins.
        f"CREATE OR REPLACE VIEW {_q(database, 'bars_latest')} AS "
        f"SELECT * FROM {bars} FINAL ORDER BY symbol, start, _kafka_ts DESC, _offset DESC LIMIT 1 BY symbol, start",
        # Aggregates likewise, the highest revision winning (a late 5-second bar re-emits its aggregate revised).
        *(
            f"CREATE OR REPLACE VIEW {_q(database, f'bars_{timeframe}_latest')} AS "
            f"SELECT * FROM {_q(database, schema.by_topic[spec.name].name)} FINAL "
            "ORDER BY symbol, start, revision DESC, _kafka_ts DESC, _offset DESC LIMIT 1 BY symbol, start"
            for timeframe, spec in AGGREGATE_TOPICS.items()
        ),
    ]


#: UAT sessions recorded by `ibstream uat` (one row per session; `ibstream uat --verdict` reads them).
UAT_SESSIONS_TABLE = "uat_sessions"
#: Sign-offs recorded by `ibstream uat --sign-off` (who, when, the verdict, the trading days and sessions it rests on).
UAT_SIGNOFFS_TABLE = "uat_signoffs"


def trade_review_statements(database: str) -> list[str]:
    """The post-trade review view (definitions in ``sql/trade_reviews.sql``), qualified for ``database``."""
    text = resources.files("ibstream.warehouse").joinpath("sql", "trade_reviews.sql").read_text()
    return [text.replace("$db.", f"{quote_ident(database)}.").strip()]


def _uat_sessions_ddl(database: str) -> list[str]:
    # One row per UAT session; a re-recorded session (same id) replaces the earlier row.
    return [
        f"CREATE TABLE IF NOT EXISTS {_q(database, UAT_SESSIONS_TABLE)} ("
        "session_id String, started_at DateTime64(6, 'UTC'), finished_at DateTime64(6, 'UTC'), "
        "target LowCardinality(String), passed Bool, scenarios_total UInt32, scenarios_passed UInt32, "
        "scenarios_skipped UInt32, failed_scenarios Array(String), results String, report_path String) "
        "ENGINE = ReplacingMergeTree(finished_at) ORDER BY session_id"
    ]


def _uat_session_days_ddl(database: str) -> list[str]:
    # What the verdict needs per session: gateway or ibsim rehearsal, the exchange calendar's date, how much of the
    # regular session it covered. Rows recorded before this step have kind '' and a null date: the verdict reads
    # them from the target and the start time.
    table = _q(database, UAT_SESSIONS_TABLE)
    return [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT ''",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS market_date Nullable(Date32)",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS coverage String DEFAULT ''",
    ]


def _uat_signoffs_ddl(database: str) -> list[str]:
    # One row per sign-off, never replaced: the record of who accepted what, when.
    return [
        f"CREATE TABLE IF NOT EXISTS {_q(database, UAT_SIGNOFFS_TABLE)} ("
        "signoff_id String, signed_at DateTime64(6, 'UTC'), signed_by String, note String, "
        "verdict LowCardinality(String), required UInt32, trading_days Array(Date32), session_ids Array(String)) "
        "ENGINE = MergeTree ORDER BY (signed_at, signoff_id)"
    ]


def build_migrations(schema: WarehouseSchema, retention: Callable[[TableSpec], int | None]) -> list[Migration]:
    """Every migration, in order."""
    return [
        Migration(1, "topic tables", lambda db: [t.ddl(db, retention(t)) for t in schema.tables]),
        Migration(2, "sink progress", _progress_ddl),
        Migration(3, "views", lambda db: view_statements(schema, db), repeatable=True),
        Migration(4, "post-trade review view", trade_review_statements, repeatable=True),
        Migration(5, "uat sessions", _uat_sessions_ddl),
        Migration(6, "uat session trading days", _uat_session_days_ddl),
        Migration(7, "uat sign-offs", _uat_signoffs_ddl),
    ]


def pending(migrations: list[Migration], applied: Mapping[int, str], database: str) -> list[Migration]:
    """Migrations to run: versioned ones not yet applied, repeatable ones whose SQL changed."""
    todo = []
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is None or (migration.repeatable and recorded != migration.checksum(database)):
            todo.append(migration)
    return todo
