"""Quote encode and decode throughput on one core (registry-less single-object codec).

Prints records/s for: our codec encode (model → Avro bytes) and decode (bytes → validated model), next to raw
fastavro schemaless write/read of the same dict, so the cost of our layer is visible.
Run: .venv/bin/python -m bench.serde [--seconds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import fastavro

from bench.history import emit_figures
from ibstream.contracts import Quote
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec


def rate(operation: Callable[[], object], seconds: float, repeats: int = 5) -> tuple[float, float, float]:
    """Median, min and max operations per second over ``repeats`` timed runs."""
    results = []
    for _ in range(repeats):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / repeats
        while True:
            for _ in range(1000):
                operation()
            count += 1000
            now = time.perf_counter()
            if now >= deadline:
                break
        results.append(count / (now - start))
    return statistics.median(results), min(results), max(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)

    store = SchemaStore()
    codec = SingleObjectCodec(store)
    now = datetime.now(UTC)
    quote = Quote(
        symbol="AAPL",
        con_id=265598,
        bid=189.1,
        ask=189.12,
        last=189.11,
        bid_size=300.0,
        ask_size=200.0,
        last_size=100.0,
        event_time=now,
        ingest_time=now,
        source=MarketDataSource.LIVE,
    )
    encoded = codec.encode("md.quotes.v1", quote)
    schema = store.current("quote").parsed
    as_dict = quote.to_avro()

    def raw_write() -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, as_dict)
        return buffer.getvalue()

    body = raw_write()

    rows = [
        ("codec encode (Quote → bytes)", rate(lambda: codec.encode("md.quotes.v1", quote), args.seconds)),
        ("codec decode (bytes → Quote)", rate(lambda: codec.decode("t", Quote, encoded, 0, 0), args.seconds)),
        ("fastavro write (dict → bytes)", rate(raw_write, args.seconds)),
        (
            "fastavro read (bytes → dict)",
            rate(lambda: fastavro.schemaless_reader(io.BytesIO(body), schema, schema), args.seconds),
        ),
    ]
    print(f"quote record: {len(encoded)} bytes on the wire ({len(body)} body + 10 header)")
    print(f"{'operation':34} {'median/s':>12} {'min/s':>12} {'max/s':>12}")
    for name, (median, low, high) in rows:
        print(f"{name:34} {median:12,.0f} {low:12,.0f} {high:12,.0f}")
    # Named by the operation's first words: "codec encode (Quote → bytes)" → codec_encode_per_s.
    emit_figures({"_".join(name.split(" (")[0].split()) + "_per_s": median for name, (median, _, _) in rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
