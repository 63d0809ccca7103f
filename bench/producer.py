"""Producer path throughput: Quote objects → Avro (single-object) → Kafka (idempotent, acks=all), one core.

Needs a broker: uses IBSTREAM_KAFKA_BOOTSTRAP_SERVERS (default: the local stack; `ibstream stack up`). Creates a
throwaway topic set, produces N quotes per run (median of repeated runs, min and max shown), waits for every
delivery report, and prints records/s and the process's peak RSS.
Run: .venv/bin/python -m bench.producer [--records 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import uuid
from datetime import UTC, datetime

from bench.history import emit_figures
from ibstream.config import load_settings
from ibstream.contracts import Quote, quotes
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import create_admin, create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.kafka.topics import catalogue, delete_topics, ensure_topics

SYMBOLS = ["AAPL", "MSFT", "AMZN", "GOOGL", "NVDA", "TSLA", "META", "SPY", "QQQ", "IWM"]


def measure(records: int, runs: int) -> dict[str, float]:
    """Producer-path records/s (median, min, max of ``runs``), record size and peak RSS."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = load_settings(kafka_topic_prefix=prefix)
    admin = create_admin(settings)
    layouts = [layout for layout in catalogue(prefix) if layout.name == prefix + quotes.TOPIC.name]
    ensure_topics(admin, layouts)
    now = datetime.now(UTC)
    batch = [
        Quote(
            symbol=SYMBOLS[i % len(SYMBOLS)],
            con_id=1000 + i % len(SYMBOLS),
            bid=100.0 + i % 7,
            ask=100.02 + i % 7,
            last=100.01,
            bid_size=300.0,
            ask_size=200.0,
            last_size=100.0,
            event_time=now,
            ingest_time=now,
            source=MarketDataSource.LIVE,
        )
        for i in range(10_000)
    ]
    codec = SingleObjectCodec(SchemaStore())
    rates = []
    try:
        for _ in range(runs):
            sink = RecordProducer(create_producer(settings, "quotes"), codec, prefix)
            start = time.perf_counter()
            for i in range(records):
                sink.send(quotes.TOPIC, batch[i % len(batch)])
            remaining = sink.flush(120)
            elapsed = time.perf_counter() - start
            assert remaining == 0 and sink.failed == 0 and sink.delivered == records
            rates.append(records / elapsed)
    finally:
        delete_topics(admin, [layout.name for layout in layouts])
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "record_bytes": float(len(codec.encode("t", batch[0]))),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    figures = measure(args.records, args.runs)
    print(
        f"quote record {figures['record_bytes']:.0f} bytes; {args.records:,} records x {args.runs} runs, "
        "acks=all, idempotent, linger.ms=1"
    )
    print(
        f"producer path: median {figures['median']:,.0f} records/s (min {figures['min']:,.0f}, "
        f"max {figures['max']:,.0f}); peak RSS {figures['peak_rss_mb']:.0f} MB"
    )
    emit_figures({"records_per_s": figures["median"], "peak_rss_mb": figures["peak_rss_mb"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
