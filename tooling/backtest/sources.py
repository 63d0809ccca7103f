"""Where a backtest's 5-second bars come from: the warehouse, Kafka, or a CSV file. Each source returns the bars of
the symbols whose ``start`` lies in [from, to), one per (symbol, start) (live and backfilled copies of a bar are one
bar), ordered by start then symbol: the order the engine needs.

* ``warehouse`` (the default): the ``md.bars.5s.v1`` table, selected by the bars' own start; while the API holds the
  embedded directory, through the API (``ibstream.warehouse.remote``), which selects by Kafka timestamp: the window
  is widened by ``KAFKA_SLACK`` and filtered by start here (``ibstream history fetch`` stores bars with their start
  as that timestamp, so they are found either way);
* ``kafka``: the topic's records by Kafka timestamp (``tooling.replay.kafka_records``), the same widening;
* ``csv``: a file with a header naming at least ``symbol,start,open,high,low,close`` (``volume``, ``wap`` and
  ``count`` optional); ``start`` in ISO 8601 (UTC when it has no offset) or epoch seconds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from ibstream.config import Settings
from ibstream.contracts import Bar
from ibstream.contracts import bars as bars_topic
from ibstream.contracts.enums import MarketDataSource
from ibstream.kafka.records import codec_from_settings
from tooling.backtest.engine import BacktestError

Source = Literal["warehouse", "kafka", "csv"]
#: How far after ``to`` a bar may have reached Kafka (its producer's lag), when a source selects by Kafka time.
KAFKA_SLACK = timedelta(minutes=10)
REQUIRED_COLUMNS = ("symbol", "start", "open", "high", "low", "close")


def ordered(bars: Iterable[Bar], start: datetime, end: datetime, symbols: Sequence[str]) -> list[Bar]:
    """The bars in the window and of the symbols (all symbols when none), one per (symbol, start; the newest
    revision), by start then symbol."""
    wanted = set(symbols)
    kept: dict[tuple[datetime, str], Bar] = {}
    for bar in bars:
        if start <= bar.start < end and (not wanted or bar.symbol in wanted):
            key = (bar.start, bar.symbol)
            held = kept.get(key)
            if held is None or bar.revision > held.revision:
                kept[key] = bar
    return [kept[key] for key in sorted(kept)]


def _time(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _csv_bar(row: dict[str, str]) -> Bar:
    start = _time(row["start"])
    close = float(row["close"])
    return Bar(
        symbol=row["symbol"].strip(),
        start=start,
        open=float(row["open"]),
        high=float(row["high"]),
        low=float(row["low"]),
        close=close,
        volume=float(row.get("volume") or 0.0),
        wap=float(row.get("wap") or close),
        count=int(float(row.get("count") or 0)),
        event_time=start,
        ingest_time=start,
        source=MarketDataSource.REPLAY,
    )


def csv_bars(path: Path) -> list[Bar]:
    """Every bar of a CSV file (see the module docstring); BacktestError naming the file and line otherwise."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise BacktestError(
                    f"{path}: the header lacks {', '.join(missing)} (needs {','.join(REQUIRED_COLUMNS)})"
                )
            bars = []
            for row in reader:
                try:
                    bars.append(_csv_bar(row))
                except (ValueError, TypeError, KeyError) as error:
                    raise BacktestError(f"{path} line {reader.line_num}: {error}") from None
            return bars
    except OSError as error:
        raise BacktestError(f"cannot read {path}: {error.strerror or error}") from None


def _warehouse_bars(settings: Settings, start: datetime, end: datetime, symbols: Sequence[str]) -> list[Bar]:
    from ibstream.warehouse import Warehouse, WarehouseLockedError
    from ibstream.warehouse.remote import through_api

    topic = settings.kafka.topic_prefix + bars_topic.TOPIC.name
    try:
        warehouse = Warehouse.open(settings)
    except WarehouseLockedError as locked:
        reader = through_api(settings, locked)
        try:
            _, records = reader.records(bars_topic.TOPIC, topic, start, end + KAFKA_SLACK, symbols)
            return ordered((r for r in records if isinstance(r, Bar)), start, end, symbols)
        finally:
            reader.close()
    with warehouse:
        table = warehouse.schema.for_topic(bars_topic.TOPIC)
        names = ", ".join(f"`{column.name}`" for column in table.columns)
        where = (
            "_topic = {topic:String} AND start >= {start:DateTime64(6, 'UTC')} AND start < {end:DateTime64(6, 'UTC')}"
        )
        parameters: dict[str, object] = {"topic": topic, "start": start, "end": end}
        if symbols:
            where += " AND symbol IN {symbols:Array(String)}"
            parameters["symbols"] = list(symbols)
        sql = (
            f"SELECT {names} FROM {warehouse.table(table.name)} FINAL WHERE {where} "
            "ORDER BY start, symbol, revision DESC LIMIT 1 BY start, symbol"
        )
        rows = warehouse.query(sql, parameters, table.column_formats()).rows
        return [bar for row in rows if isinstance(bar := table.from_row(row), Bar)]


def _kafka_bars(settings: Settings, start: datetime, end: datetime, symbols: Sequence[str]) -> list[Bar]:
    from tooling.replay import kafka_records

    topic = settings.kafka.topic_prefix + bars_topic.TOPIC.name
    _, records = kafka_records(
        settings, codec_from_settings(settings), bars_topic.TOPIC, topic, start, end + KAFKA_SLACK, models=True
    )
    return ordered((r for r in records if isinstance(r, Bar)), start, end, symbols)


def load_bars(
    settings: Settings,
    source: Source,
    start: datetime,
    end: datetime,
    symbols: Sequence[str],
    csv_path: Path | None = None,
) -> list[Bar]:
    """The window's bars from ``source`` (see the module docstring)."""
    if end <= start:
        raise BacktestError("--to must be after --from")
    if source == "csv":
        if csv_path is None:
            raise BacktestError("--source csv needs a FILE")
        return ordered(csv_bars(csv_path), start, end, symbols)
    if source == "kafka":
        return _kafka_bars(settings, start, end, symbols)
    return _warehouse_bars(settings, start, end, symbols)
