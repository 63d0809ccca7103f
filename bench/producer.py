"""Producer path throughput: Quote objects → Avro (single-object) → Kafka (idempotent, acks=all), one core.

Needs a broker: uses IBSTREAM_KAFKA_BOOTSTRAP_SERVERS (default: the local stack; `ibstream stack up`). Creates a
throwaway topic set, produces N quotes per run (median of repeated runs, min and max shown), waits for every
delivery report, and prints records/s and the process's peak RSS. Each run is followed by the Python ceiling (plain
fastavro + confluent-kafka, ``plain_rate``) on the same quotes; ``producer_to_python_ceiling`` is the median of the
runs' ratios.
Run: .venv/bin/python -m bench.producer [--records 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import time
import uuid
from datetime import UTC, datetime

import fastavro

from bench.history import emit_figures
from ibstream.config import Settings, load_settings
from ibstream.contracts import Quote, quotes
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import SINGLE_OBJECT_MAGIC, SchemaStore, SingleObjectCodec
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
    store = SchemaStore()
    codec = SingleObjectCodec(store)
    rates, ceilings, cpu_rates, cpu_ceilings = [], [], [], []
    try:
        # Interleaved, so both see the same machine: a busy neighbour slows one pair, not one side.
        for _ in range(runs):
            sink = RecordProducer(create_producer(settings, "quotes"), codec, prefix)
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(records):
                sink.send(quotes.TOPIC, batch[i % len(batch)])
            remaining = sink.flush(120)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert remaining == 0 and sink.failed == 0 and sink.delivered == records
            rates.append(records / elapsed)
            cpu_rates.append(records / cpu)
            ceiling, ceiling_cpu = plain_rate(settings, prefix + quotes.TOPIC.name, store, batch, records)
            ceilings.append(ceiling)
            cpu_ceilings.append(ceiling_cpu)
    finally:
        delete_topics(admin, [layout.name for layout in layouts])
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "ceiling_median": statistics.median(ceilings),
        "producer_to_python_ceiling": round(statistics.median(r / c for r, c in zip(rates, ceilings, strict=True)), 3),
        # The same ratio in records per CPU second of this process (librdkafka's threads included): what a loaded
        # machine disturbs least.
        "producer_to_python_ceiling_cpu": round(
            statistics.median(r / c for r, c in zip(cpu_rates, cpu_ceilings, strict=True)), 3
        ),
        "record_bytes": float(len(codec.encode("t", batch[0]))),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def plain_rate(
    settings: Settings, topic: str, store: SchemaStore, batch: list[Quote], records: int
) -> tuple[float, float]:
    """The Python ceiling: the same quotes as plain dicts, written by fastavro and produced by confluent-kafka with
    the same producer settings, the same single-object header, a delivery callback that counts (a program that does
    not check its deliveries is not a producer) and ``poll(0)`` after each produce — none of our layer. Returns
    records per wall second and per CPU second of this process."""
    schema = store.current("quote")
    header = SINGLE_OBJECT_MAGIC + schema.fingerprint
    dicts = [(quote.symbol.encode(), quote.to_avro()) for quote in batch]
    producer = create_producer(settings, "quotes")
    outcomes = {"delivered": 0, "failed": 0}

    def report(error: object, message: object) -> None:
        outcomes["failed" if error is not None else "delivered"] += 1

    start, cpu = time.perf_counter(), time.process_time()
    for i in range(records):
        key, values = dicts[i % len(dicts)]
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema.parsed, values)
        producer.produce(topic, header + buffer.getvalue(), key, on_delivery=report)
        producer.poll(0)
    remaining = producer.flush(120)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert remaining == 0 and outcomes == {"delivered": records, "failed": 0}
    return records / elapsed, records / cpu


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
    print(
        f"plain fastavro + confluent-kafka: median {figures['ceiling_median']:,.0f} records/s; "
        f"producer / that ceiling: {figures['producer_to_python_ceiling']:.2f} "
        f"(per CPU second: {figures['producer_to_python_ceiling_cpu']:.2f})"
    )
    emit_figures(
        {
            "records_per_s": figures["median"],
            "python_ceiling_records_per_s": figures["ceiling_median"],
            "producer_to_python_ceiling": figures["producer_to_python_ceiling"],
            "producer_to_python_ceiling_cpu": figures["producer_to_python_ceiling_cpu"],
            "peak_rss_mb": figures["peak_rss_mb"],
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
