"""Warehouse sink and replay throughput on this machine: ``python -m bench.sink [--records N]``.

Prints rows/s for (1) raw batched inserts into embedded chDB (the ceiling), (2) the whole sink path (consume, Avro
decode straight to rows where the model checks nothing Avro has not, batch insert, commit) once the sink has joined
its group, and its ratio to (1), and (3) replay records/s from Kafka and from the warehouse.
Needs a broker (``IBSTREAM_KAFKA_BOOTSTRAP_SERVERS``, default the local stack); uses throwaway topics and directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.history import emit_figures
from consumers.warehouse_sink import SinkThread
from ibstream.config import Settings, load_settings
from ibstream.contracts import Quote, quotes
from ibstream.contracts.enums import MarketDataSource
from ibstream.kafka.clients import create_admin, create_producer
from ibstream.kafka.records import RecordProducer, codec_from_settings
from ibstream.kafka.topics import TopicLayout, catalogue, delete_topics, ensure_topics
from ibstream.warehouse import Warehouse
from tooling.replay import replay


def _sink_rate(settings: Settings, warehouse: Warehouse, topic: str, total: int) -> float:
    """Rows/s the sink lands once it has joined its group: timed from its first batch in the table to the last, so
    the group join (seconds on a loaded machine, once per start) does not count as throughput."""
    sink = SinkThread(settings, warehouse).start()
    sql = "SELECT count() FROM md_quotes_v1 WHERE _topic = {t:String}"
    try:
        landed = 0
        while landed == 0:
            time.sleep(0.01)
            landed = warehouse.query(sql, {"t": topic}).rows[0][0]
        first, began = landed, time.perf_counter()
        while landed < total:
            time.sleep(0.02)
            landed = warehouse.query(sql, {"t": topic}).rows[0][0]
        elapsed = time.perf_counter() - began
    finally:
        sink.stop()
    return (total - first) / elapsed if elapsed > 0 and total > first else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    total = args.records
    figures: dict[str, float] = {}
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    with tempfile.TemporaryDirectory() as directory:
        settings = load_settings(
            kafka_topic_prefix=prefix, warehouse_dir=Path(directory) / "wh", warehouse_batch_rows=10_000
        )
        admin = create_admin(settings)
        layouts = [*catalogue(prefix), TopicLayout(prefix + "bench.replay.v1", 6, 3_600_000, "delete")]
        ensure_topics(admin, layouts)
        try:
            now = datetime.now(UTC)
            records = [
                Quote(
                    symbol=f"S{i % 50:02d}",
                    con_id=i,
                    bid=100.0 + i % 7,
                    ask=100.1 + i % 7,
                    last=100.05,
                    bid_size=100.0,
                    ask_size=200.0,
                    last_size=10.0,
                    event_time=now + timedelta(microseconds=i),
                    ingest_time=now + timedelta(microseconds=i + 900),
                    source=MarketDataSource.LIVE,
                )
                for i in range(total)
            ]
            with Warehouse.open(settings) as warehouse:
                table = warehouse.schema.for_topic(quotes.TOPIC)
                rows = [table.to_row(r, "raw", 0, i, now, now) for i, r in enumerate(records)]
                began = time.perf_counter()
                for start in range(0, total, 10_000):
                    warehouse.insert(table, rows[start : start + 10_000])
                raw = total / (time.perf_counter() - began)
                print(f"chDB batched insert (10k rows/batch, quotes): {raw:,.0f} rows/s")
                figures["chdb_insert_rows_per_s"] = raw

                producer = RecordProducer(create_producer(settings, "bulk"), codec_from_settings(settings), prefix)
                began = time.perf_counter()
                for record in records:
                    producer.send(quotes.TOPIC, record)
                producer.flush(120)
                produced = total / (time.perf_counter() - began)
                print(f"produce (for reference):                      {produced:,.0f} records/s")
                figures["produce_records_per_s"] = produced

                sink_rate = _sink_rate(settings, warehouse, prefix + quotes.TOPIC.name, total)
                print(f"sink end to end (Kafka → decode → chDB):      {sink_rate:,.0f} rows/s")
                figures["sink_rows_per_s"] = sink_rate
                figures["sink_to_chdb_ceiling"] = round(sink_rate / raw, 3)
            window = (now - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=5))
            report = replay(settings, quotes.TOPIC.name, *window, target_topic="bench.replay.v1", source="kafka")
            print(f"replay from Kafka:                            {report.rate:,.0f} records/s ({report.emitted})")
            figures["replay_kafka_records_per_s"] = report.rate
            report = replay(settings, quotes.TOPIC.name, *window, target_topic="bench.replay.v1", source="warehouse")
            print(f"replay from the warehouse:                    {report.rate:,.0f} records/s ({report.emitted})")
            figures["replay_warehouse_records_per_s"] = report.rate
            emit_figures(figures)
        finally:
            delete_topics(admin, [layout.name for layout in layouts])


if __name__ == "__main__":
    main()
