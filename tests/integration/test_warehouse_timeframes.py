"""The warehouse and the new topics: a warehouse created before them gets their tables on its next start (before the
views that read them), and the ``bars_{tf}_latest`` views keep the highest revision of each (symbol, start)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibstream.config import load_settings
from ibstream.contracts import Bar, bars, signal_outcomes
from ibstream.contracts.enums import MarketDataSource
from ibstream.warehouse import Warehouse

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def minute_bar(close: float, revision: int, source: MarketDataSource = MarketDataSource.LIVE) -> Bar:
    return Bar(
        symbol="AAPL",
        start=START,
        open=100.0,
        high=max(100.0, close),
        low=min(100.0, close),
        close=close,
        volume=1000.0 + revision,
        wap=100.0,
        count=40,
        event_time=START + timedelta(minutes=1),
        ingest_time=START + timedelta(minutes=1, seconds=revision),
        source=source,
        revision=revision,
    )


def test_tables_of_new_topics_are_created_on_an_older_warehouse_and_the_latest_revision_wins(tmp_path: Path) -> None:
    settings = load_settings(warehouse_dir=tmp_path / "wh")
    with Warehouse.open(settings) as warehouse:
        minute = warehouse.schema.for_topic(bars.AGGREGATE_TOPICS["1m"]).name
        outcomes = warehouse.schema.for_topic(signal_outcomes.TOPIC).name
        # As a warehouse from before this change: no tables for the new topics, views of the old generation.
        for timeframe in bars.AGGREGATE_TOPICS:
            warehouse.command(f"DROP VIEW IF EXISTS bars_{timeframe}_latest")
        for table in {warehouse.schema.for_topic(spec).name for spec in bars.AGGREGATE_TOPICS.values()} | {outcomes}:
            warehouse.command(f"DROP TABLE {table}")
        warehouse.command("INSERT INTO _migrations VALUES (3, 'views', 'older', now64(6))")
    with Warehouse.open(settings) as warehouse:
        tables = {row[0] for row in warehouse.query("SELECT name FROM system.tables WHERE database = 'ibstream'").rows}
        assert {minute, outcomes, "bars_1m_latest", "bars_1d_latest"} <= tables
        spec = warehouse.schema.for_topic(bars.AGGREGATE_TOPICS["1m"])
        rows = [
            (minute_bar(101.0, 0), 0, 0, START + timedelta(minutes=1)),
            (minute_bar(99.0, 1, MarketDataSource.BACKFILL), 0, 1, START + timedelta(minutes=9)),
            (minute_bar(101.0, 0), 0, 2, START + timedelta(minutes=10)),  # the first emission redelivered late
        ]
        warehouse.insert_records(spec, "md.bars.1m.v1", rows)
        latest = warehouse.query("SELECT revision, close, source FROM bars_1m_latest WHERE symbol = 'AAPL'").rows
        assert latest == [(1, 99.0, "backfill")]
        assert warehouse.migrate() == []
