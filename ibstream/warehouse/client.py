"""The warehouse port: one clickhouse-connect API over embedded chDB (default) or a ClickHouse server.

This module and its package are the only places that import clickhouse-connect. Everything above talks to
``Warehouse``: migrate, insert a batch, query, stream stored records back (replay), run an audit.

Concurrency: chDB binds one engine to one directory per process and lets many handles in that process query at
once, one handle per thread. ``Warehouse`` therefore keeps a client per thread, so a reader (the API) in the
sink's process queries while the sink writes. With a server, per-thread clients avoid sharing an HTTP session.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from ibstream.config import Settings
from ibstream.contracts import Record
from ibstream.warehouse.exceptions import WarehouseError, WarehouseLockedError
from ibstream.warehouse.migrations import build_migrations, migrations_table_ddl, pending
from ibstream.warehouse.schema import (
    MIGRATIONS_TABLE,
    PROGRESS_TABLE,
    TableSpec,
    WarehouseSchema,
    quote_ident,
)

log = logging.getLogger(__name__)

# chDB: one engine path per process. Track it so a second Warehouse on the same path shares the engine and one on
# another path fails with a clear message instead of the engine's.
_engine_lock = threading.Lock()
_engine_path: str | None = None
_engine_users = 0


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class StoredRecord:
    """A record read back from the warehouse with its Kafka coordinates."""

    record: Record
    topic: str
    partition: int
    offset: int
    kafka_ts: datetime


def lock_holder(path: Path) -> str | None:
    """Who holds an embedded chDB directory, or None if it is free.

    ClickHouse keeps an exclusive ``flock`` on ``<dir>/status`` and writes its PID there; probing that lock gives a
    clear answer before the engine fails with a generic "Error initializing EmbeddedServer".
    """
    status = path / "status"
    if not status.exists():
        return None
    fd = os.open(status, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            text = status.read_text(errors="replace")
            pid = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("PID")), "?")
            return f"pid {pid}"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class Warehouse:
    """ClickHouse access for the sink, replay, audits and the API.

    Build with ``Warehouse.open(settings)``; close with ``close()`` (or use it as a context manager). Tables are
    named after topics (``md.bars.5s.v1`` → ``md_bars_5s_v1``) in the ``warehouse_database`` database.
    """

    def __init__(self, settings: Settings, schema: WarehouseSchema | None = None) -> None:
        self.settings = settings
        self.database = settings.warehouse.database
        self.schema = schema or WarehouseSchema.build()
        self.embedded = settings.warehouse.clickhouse_url is None
        self._local = threading.local()
        self._clients: list[Client] = []
        self._clients_lock = threading.Lock()
        self._closed = False
        self._path: str | None = None
        if self.embedded:
            self._acquire_engine(settings.warehouse_path)
        try:
            # The database must exist before clients that USE it are created.
            self._new_client(database=None).command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(self.database)}")
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Warehouse:
        """Connect (embedded directory or server) and, by default, apply pending migrations."""
        warehouse = cls(settings)
        if migrate:
            try:
                warehouse.migrate()
            except BaseException:
                warehouse.close()
                raise
        return warehouse

    # -- connections -----------------------------------------------------------------------------------------------

    def _acquire_engine(self, path: Path) -> None:
        global _engine_path, _engine_users
        resolved = str(path.resolve())
        with _engine_lock:
            if _engine_path is not None and _engine_path != resolved:
                raise WarehouseError(
                    f"this process already has the embedded warehouse {_engine_path} open; chDB allows one directory "
                    f"per process, so {resolved} cannot be opened alongside it"
                )
            if _engine_path is None:
                path.mkdir(parents=True, exist_ok=True)
                holder = lock_holder(path)
                if holder is not None:
                    raise WarehouseLockedError(resolved, holder)
                _engine_path = resolved
            _engine_users += 1
        self._path = resolved

    def _release_engine(self) -> None:
        global _engine_path, _engine_users
        if self._path is None:
            return
        with _engine_lock:
            _engine_users -= 1
            if _engine_users == 0:
                _engine_path = None
        self._path = None

    def _new_client(self, database: str | None) -> Client:
        try:
            if self.embedded:
                client = clickhouse_connect.get_client(
                    interface="chdb", path=str(self.settings.warehouse_path), database=database, tz_mode="aware"
                )
            else:
                password = self.settings.warehouse.clickhouse_password
                client = clickhouse_connect.get_client(
                    dsn=self.settings.warehouse.clickhouse_url,
                    username=self.settings.warehouse.clickhouse_username,
                    password=password.get_secret_value() if password is not None else "",
                    database=database,
                    tz_mode="aware",
                    # One session per client would serialise a thread's queries anyway; none avoids session locks.
                    autogenerate_session_id=False,
                )
        except ClickHouseError as error:
            if self.embedded and "lock" in str(error).lower():
                raise WarehouseLockedError(str(self.settings.warehouse_path), "unknown") from None
            raise WarehouseError(f"cannot connect to the warehouse: {error}") from None
        with self._clients_lock:
            self._clients.append(client)
        return client

    @property
    def client(self) -> Client:
        """This thread's client (created on first use)."""
        if self._closed:
            raise WarehouseError("the warehouse is closed")
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client(self.database)
            self._local.client = client
        return client

    def close(self) -> None:
        """Close every client; the embedded engine's directory is released when its last user closes."""
        self._closed = True
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # closing must not mask the error that brought us here
                log.exception("closing a warehouse client failed")
        self._release_engine()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------------------------------

    def retention_days(self, table: TableSpec) -> int | None:
        """Retention of a table from settings (None or ≤ 0: kept forever)."""
        days = self.settings.warehouse.retention_days.get(table.retention_key)
        return days if days is not None and days > 0 else None

    def table(self, name: str) -> str:
        """A fully qualified, quoted table name."""
        return f"{quote_ident(self.database)}.{quote_ident(name)}"

    def migrate(self) -> list[str]:
        """Apply pending migrations, then reconcile columns and TTLs with the schemas and settings.

        Returns what was done, one line per step (empty when everything was up to date).
        """
        self.command(migrations_table_ddl(self.database))
        done: list[str] = self._create_new_topic_tables()
        applied = {
            int(version): str(checksum)
            for version, checksum in self.query(
                f"SELECT version, argMax(checksum, applied_at) FROM {self.table(MIGRATIONS_TABLE)} GROUP BY version"
            ).rows
        }
        for migration in pending(build_migrations(self.schema, self.retention_days), applied, self.database):
            for statement in migration.statements(self.database):
                self.command(statement)
            self.client.insert(
                f"{self.database}.{MIGRATIONS_TABLE}",
                [[migration.version, migration.name, migration.checksum(self.database), datetime.now(UTC)]],
                column_names=["version", "name", "checksum", "applied_at"],
            )
            done.append(f"migration {migration.version}: {migration.name}")
            log.info("warehouse migration applied", extra={"version": migration.version, "migration": migration.name})
        done += self._reconcile()
        return done

    def _create_new_topic_tables(self) -> list[str]:
        """Tables of topics added to the catalogue since the warehouse was created (migration 1 made the others):
        first, because the views may read them."""
        existing = {
            str(name)
            for (name,) in self.query(
                "SELECT name FROM system.tables WHERE database = {db:String}", {"db": self.database}
            ).rows
        }
        if MIGRATIONS_TABLE not in existing or len(existing) <= 1:
            return []  # a new warehouse: migration 1 creates every table
        done = []
        for table in self.schema.tables:
            if table.name not in existing:
                self.command(table.ddl(self.database, self.retention_days(table)))
                done.append(f"{table.name}: created")
        return done

    def _reconcile(self) -> list[str]:
        existing: dict[str, dict[str, str]] = {}
        for table, column, ch_type in self.query(
            "SELECT table, name, type FROM system.columns WHERE database = {db:String}", {"db": self.database}
        ).rows:
            existing.setdefault(table, {})[column] = ch_type
        ttls = dict(
            self.query(
                "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}", {"db": self.database}
            ).rows
        )
        done: list[str] = []
        for table in self.schema.tables:
            columns = existing.get(table.name, {})
            previous = None
            for column in table.columns:
                if column.name not in columns:
                    # New fields go after their predecessor so SELECT * keeps the schema's order.
                    after = f" AFTER {quote_ident(previous)}" if previous else " FIRST"
                    self.command(
                        f"ALTER TABLE {self.table(table.name)} ADD COLUMN IF NOT EXISTS "
                        f"{quote_ident(column.name)} {column.ch_type}{after}"
                    )
                    done.append(f"{table.name}: added column {column.name}")
                previous = column.name
            days = self.retention_days(table)
            query = str(ttls.get(table.name, ""))
            wanted = f"toIntervalDay({days})" if days else None
            if wanted is not None and wanted not in query:
                # Only new parts are affected until merges run; materialising TTL over old data is a heavy mutation.
                self.command(
                    f"ALTER TABLE {self.table(table.name)} MODIFY TTL toDateTime(_kafka_ts) + {wanted}",
                    settings={"materialize_ttl_after_modify": 0},
                )
                done.append(f"{table.name}: retention {days} days")
            elif wanted is None and " TTL " in query:
                self.command(f"ALTER TABLE {self.table(table.name)} REMOVE TTL")
                done.append(f"{table.name}: retention removed")
        return done

    def enforce_retention(self, now: datetime | None = None) -> list[str]:
        """Drop whole monthly partitions entirely older than each table's retention.

        TTL deletes only at merges (every few hours per part); dropping old partitions makes retention exact at
        partition granularity without waiting. Rows in the boundary month are left to TTL.
        """
        now = now or datetime.now(UTC)
        dropped: list[str] = []
        for table in self.schema.tables:
            days = self.retention_days(table)
            if days is None:
                continue
            rows = self.query(
                "SELECT partition_id, max(max_time) FROM system.parts WHERE database = {db:String} AND "
                "table = {table:String} AND active GROUP BY partition_id",
                {"db": self.database, "table": table.name},
            ).rows
            for partition_id, newest in rows:
                newest_utc = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
                if (now - newest_utc).days > days:
                    self.command(
                        f"ALTER TABLE {self.table(table.name)} DROP PARTITION ID {{p:String}}", {"p": partition_id}
                    )
                    dropped.append(f"{table.name}:{partition_id}")
        return dropped

    # -- reads and writes ------------------------------------------------------------------------------------------

    def command(
        self, sql: str, parameters: Mapping[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> None:
        """Run a statement that returns no rows."""
        try:
            self.client.command(sql, parameters=dict(parameters or {}), settings=settings)
        except ClickHouseError as error:
            raise WarehouseError(f"warehouse statement failed: {error}") from None

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        column_formats: Mapping[str, str] | None = None,
    ) -> QueryResult:
        """Run a query with server-side parameter binding (``{name:Type}`` placeholders)."""
        try:
            result = self.client.query(
                sql, parameters=dict(parameters or {}), column_formats=dict(column_formats or {})
            )
        except ClickHouseError as error:
            raise WarehouseError(f"warehouse query failed: {error}") from None
        return QueryResult(list(result.column_names), [tuple(row) for row in result.result_rows])

    def insert(self, table: TableSpec, rows: Sequence[Sequence[Any]]) -> None:
        """Insert one batch into a table (rows from ``TableSpec.to_row``, or ``tick_row``/``fields_row``)."""
        if not rows:
            return
        # Pivoted here, in C (zip), rather than value by value in clickhouse-connect: a tenth of the sink's time.
        columns = list(zip(*rows, strict=True))
        try:
            self.client.insert(
                f"{self.database}.{table.name}", columns, column_names=table.column_names, column_oriented=True
            )
        except ClickHouseError as error:
            raise WarehouseError(f"insert into {table.name} failed: {error}") from None

    def insert_records(
        self, table: TableSpec, topic: str, records: Sequence[tuple[Record, int, int, datetime]]
    ) -> None:
        """Insert records given as (record, partition, offset, kafka_ts) — tests, tools, backfills."""
        now = datetime.now(UTC)
        self.insert(table, [table.to_row(r, topic, p, o, ts, now) for r, p, o, ts in records])

    def record_progress(self, group_id: str, rows: Sequence[tuple[str, int, int, int]]) -> None:
        """Record the sink's committed offset and high watermark per (topic, partition)."""
        if not rows:
            return
        now = datetime.now(UTC)
        self.client.insert(
            f"{self.database}.{PROGRESS_TABLE}",
            [[group_id, t, p, committed, high, max(high - committed, 0), now] for t, p, committed, high in rows],
            column_names=["group_id", "topic", "partition", "committed_offset", "high_watermark", "lag", "time"],
        )

    def _window_filter(
        self, topic: str, start: datetime, end: datetime, symbols: Sequence[str] | None
    ) -> tuple[str, dict[str, Any]]:
        where = (
            "_topic = {topic:String} AND _kafka_ts >= {start:DateTime64(3, 'UTC')} "
            "AND _kafka_ts < {end:DateTime64(3, 'UTC')}"
        )
        parameters: dict[str, Any] = {"topic": topic, "start": start, "end": end}
        if symbols:
            where += " AND symbol IN {symbols:Array(String)}"
            parameters["symbols"] = list(symbols)
        return where, parameters

    def count_records(
        self, table: TableSpec, topic: str, start: datetime, end: datetime, symbols: Sequence[str] | None = None
    ) -> int:
        """How many stored records of ``topic`` have a Kafka timestamp in [start, end) (deduplicated)."""
        where, parameters = self._window_filter(topic, start, end, symbols)
        rows = self.query(f"SELECT count() FROM {self.table(table.name)} FINAL WHERE {where}", parameters).rows
        return int(rows[0][0])

    def _records_sql(self, table: TableSpec, where: str) -> str:
        names = ", ".join(quote_ident(column.name) for column in table.columns)
        return (
            f"SELECT {names}, _topic, _partition, _offset, _kafka_ts FROM {self.table(table.name)} FINAL "
            f"WHERE {where} ORDER BY _partition, _offset"
        )

    @staticmethod
    def _stored(table: TableSpec, row: Sequence[Any]) -> StoredRecord:
        width = len(table.columns)
        return StoredRecord(table.from_row(row[:width]), row[width], row[width + 1], row[width + 2], row[width + 3])

    def stream_records(
        self, table: TableSpec, topic: str, start: datetime, end: datetime, symbols: Sequence[str] | None = None
    ) -> Iterator[StoredRecord]:
        """Stored records of ``topic`` with a Kafka timestamp in [start, end), deduplicated (FINAL), in
        (partition, offset) order — so per-key order is the order Kafka had."""
        where, parameters = self._window_filter(topic, start, end, symbols)
        sql = self._records_sql(table, where)
        formats: dict[str, str | dict[str, str]] = dict(table.column_formats())
        try:
            with self.client.query_row_block_stream(sql, parameters=parameters, column_formats=formats) as stream:
                for block in stream:
                    for row in block:
                        yield self._stored(table, row)
        except ClickHouseError as error:
            raise WarehouseError(f"reading {table.name} failed: {error}") from None

    def stream_fields(
        self, table: TableSpec, topic: str, start: datetime, end: datetime, symbols: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """``stream_records``'s records as their fields, timestamps as integer ticks, without building models: what
        ``Codec.encode_fields`` writes (replay re-emits them). Same records, same order."""
        where, parameters = self._window_filter(topic, start, end, symbols)
        sql = (
            f"SELECT {table.tick_select()} FROM {self.table(table.name)} FINAL WHERE {where} "
            "ORDER BY _partition, _offset"
        )
        names = [column.name for column in table.columns]
        formats: dict[str, str | dict[str, str]] = dict(table.column_formats())
        try:
            with self.client.query_row_block_stream(sql, parameters=parameters, column_formats=formats) as stream:
                for block in stream:
                    for row in block:
                        yield dict(zip(names, row, strict=True))
        except ClickHouseError as error:
            raise WarehouseError(f"reading {table.name} failed: {error}") from None

    def page_records(
        self,
        table: TableSpec,
        topic: str,
        start: datetime,
        end: datetime,
        symbols: Sequence[str] | None = None,
        *,
        after: tuple[int, int] | None = None,
        limit: int = 1000,
    ) -> list[StoredRecord]:
        """One page of ``stream_records``: at most ``limit`` records after the (partition, offset) ``after`` — the
        same records in the same order, for a reader that cannot hold one query open (the API's replay reads)."""
        where, parameters = self._window_filter(topic, start, end, symbols)
        if after is not None:
            where += " AND (_partition, _offset) > ({after_partition:Int32}, {after_offset:Int64})"
            parameters.update(after_partition=after[0], after_offset=after[1])
        sql = self._records_sql(table, where) + " LIMIT {limit:UInt32}"
        parameters["limit"] = limit
        formats: dict[str, str | dict[str, str]] = dict(table.column_formats())
        try:
            result = self.client.query(sql, parameters=parameters, column_formats=formats)
        except ClickHouseError as error:
            raise WarehouseError(f"reading {table.name} failed: {error}") from None
        return [self._stored(table, row) for row in result.result_rows]
