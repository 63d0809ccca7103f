"""Streams benchmark on the real broker: events/s of one Faust worker for signals and for risk, and bar→signal /
intent→decision latency percentiles, each as a ratio to the streams ceiling measured in the same run.

    python -m bench.streams [--bars 6000] [--intents 3000] [--symbols 100] [--phases faust,signals,risk]

Each phase runs a fresh worker subprocess (one worker = one process) on its own topic prefix. Throughput: the
input is produced as fast as possible after a warm-up and timed until the last output arrived. Latency: inputs
paced at ~50/s, each timed from produce to the output's arrival at a consumer (so it includes both Kafka hops).
The ``faust`` phase is the ceiling: a bare Faust agent (``bench.faust_ceiling``) on the same settings doing
consume → table write → produce for the risk phase's records; ``risk_to_faust_ceiling`` and
``signals_to_faust_ceiling`` divide each phase's events/s by it. The last line is ``json: {...}`` with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench.history import emit_figures
from ibstream.config import PROJECT_ROOT, Settings, load_settings
from ibstream.contracts import (
    Bar,
    OrderIntent,
    Quote,
    RiskDecision,
    Signal,
    bars,
    order_intents,
    quotes,
    risk_decisions,
    signals,
    utc_now,
)
from ibstream.contracts.enums import MarketDataSource, OrderType, Side
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import consumer_config, create_admin, create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.kafka.topics import catalogue, delete_topics, ensure_topics

CODEC = SingleObjectCodec(SchemaStore())
CHANNEL = [99.0, 101.0] * 12


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Reader:
    """Reads one output topic; ``record`` None keeps the raw bytes (the ceiling's outputs are not decoded)."""

    def __init__(self, settings: Settings, topic: str, record: type[Any] | None) -> None:
        self.topic = settings.kafka.topic_prefix + topic
        self.record = record
        self.consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex[:8]}", **{"fetch.wait.max.ms": 5}))
        self.consumer.subscribe([self.topic])

    def read(self, count: int, timeout: float) -> list[tuple[float, Any]]:
        got: list[tuple[float, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            # poll, not consume(n, timeout): consume waits out its timeout unless n messages came, which would add
            # its timeout to every latency sample.
            message = self.consumer.poll(0.005)
            if message is None or message.error():
                continue
            now = time.monotonic()
            if self.record is None:
                got.append((now, message.value()))
            else:
                got.append((now, CODEC.decode(self.topic, self.record, message.value(), None, None)))
        return got


#: ``--profile DIR``: run each worker under py-spy and write its folded stacks there.
PROFILE_DIR: Path | None = None
_PROFILERS: dict[int, subprocess.Popen[bytes]] = {}


def start_worker(settings: Settings, agents: str, data: Path, **env: str) -> subprocess.Popen[bytes]:
    """A streams worker running ``agents``."""
    command = ["streams.app", "--agents", agents, "--data-dir", str(data / "faust"), "--loglevel", "warning"]
    return _spawn(settings, command, data, f"streams-{agents}", env)


def start_ceiling(settings: Settings, data: Path, source: str, sink: str, partitions: int) -> subprocess.Popen[bytes]:
    """The bare Faust agent of ``bench.faust_ceiling``."""
    command = ["bench.faust_ceiling", "--source", source, "--sink", sink, "--partitions", str(partitions)]
    return _spawn(settings, [*command, "--data-dir", str(data / "faust")], data, "faust-ceiling", {})


def _spawn(
    settings: Settings, module_args: list[str], data: Path, name: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "IBSTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "IBSTREAM_STATE_DIR": str(data),
        **{f"IBSTREAM_{k.upper()}": v for k, v in env.items()},
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", *module_args],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=(data / "worker.log").open("wb"),
    )
    if PROFILE_DIR is not None:
        # py-spy samples the worker until stop_worker interrupts it (folded stacks: `sort -t' ' -k2 -n`, or any
        # flame graph tool).
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        out = PROFILE_DIR / f"{name}.folded"
        spy = str(Path(sys.executable).parent / "py-spy")
        _PROFILERS[worker.pid] = subprocess.Popen(
            [spy, "record", "--format", "raw", "--rate", "250", "--pid", str(worker.pid), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return worker


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    profiler = _PROFILERS.pop(process.pid, None)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on an interrupt
        profiler.wait(30)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def bar(symbol: str, i: int, close: float, start: datetime) -> Bar:
    at = start + timedelta(seconds=5 * i)
    return Bar(
        symbol=symbol,
        start=at,
        open=close,
        high=close + 0.5,
        low=close - 0.5,
        close=close,
        volume=1,
        wap=close,
        count=1,
        event_time=at,
        ingest_time=utc_now(),
        source=MarketDataSource.SIM,
    )


def bench_signals(settings: Settings, data: Path, total_bars: int, symbol_count: int) -> dict[str, float]:
    out = RecordProducer(create_producer(settings, **{"linger.ms": 5}), CODEC, settings.kafka.topic_prefix)
    reader = Reader(settings, signals.TOPIC.name, Signal)
    worker = start_worker(settings, "signals", data)
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        for i, close in enumerate([*CHANNEL, 103.0]):  # warm-up: one symbol until its signal arrives
            out.send(bars.TOPIC, bar("WARM", i, close, start))
        out.flush()
        if not reader.read(1, 90):
            raise SystemExit("signals worker did not answer; see " + str(data / "worker.log"))
        reader.read(10, 1.0)
        sent, got, elapsed = _signal_throughput(out, reader, start, total_bars, symbol_count)
        latencies = _signal_latencies(out, reader, start, symbol_count)
        return {
            "bars": sent,
            "signals": len(got),
            "seconds": elapsed,
            "per_second": sent / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "samples": len(latencies),
        }
    finally:
        stop_worker(worker)


def _signal_throughput(
    out: RecordProducer, reader: Reader, start: datetime, total_bars: int, symbol_count: int
) -> tuple[int, list[tuple[float, Any]], float]:
    """Channel history for every symbol, the last bar of each a breakout (2 signals per symbol): bars sent, the
    signals read, seconds from the first bar to the last signal."""
    per_symbol = max(len(CHANNEL) + 1, total_bars // symbol_count)
    symbols = [f"S{n:04d}" for n in range(symbol_count)]
    history = [99.0 + (i % 2) * 2 for i in range(per_symbol - 1)]
    began = time.monotonic()
    for i, close in enumerate(history):
        for symbol in symbols:
            out.send(bars.TOPIC, bar(symbol, i, close, start))
    for symbol in symbols:
        out.send(bars.TOPIC, bar(symbol, per_symbol - 1, 103.0, start))
    out.flush()
    got = reader.read(2 * symbol_count, 300)
    elapsed = (got[-1][0] if got else time.monotonic()) - began
    return per_symbol * symbol_count, got, elapsed


def _signal_latencies(out: RecordProducer, reader: Reader, start: datetime, symbol_count: int) -> list[float]:
    """One more breakout per symbol after a quiet bar, paced, timed produce → signal (seconds).
    (The z-score and Donchian slots are taken, so use new symbols with fresh history.)"""
    lat_symbols = [f"L{n:03d}" for n in range(min(200, symbol_count * 2))]
    for i, close in enumerate(CHANNEL):
        for symbol in lat_symbols:
            out.send(bars.TOPIC, bar(symbol, i, close, start))
    out.flush()
    reader.read(10**9, 3.0)  # drain
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    for symbol in lat_symbols:
        sent_at[symbol] = time.monotonic()
        out.send(bars.TOPIC, bar(symbol, len(CHANNEL), 103.0, start))
        out.flush()
        for arrived, record in reader.read(1, 0.02):
            if record.symbol in sent_at and record.strategy == "donchian_breakout":
                latencies.append(arrived - sent_at[record.symbol])
    for arrived, record in reader.read(10**9, 3.0):
        if record.symbol in sent_at and record.strategy == "donchian_breakout":
            latencies.append(arrived - sent_at[record.symbol])
    return latencies


def intent(order_id: str, symbol: str) -> OrderIntent:
    return OrderIntent(
        order_id=order_id,
        symbol=symbol,
        side=Side.BUY,
        quantity=1,
        order_type=OrderType.LMT,
        limit_price=100.0,
        stop_loss=98.0,
        take_profit=104.0,
        requested_by="bench",
        created_time=utc_now(),
    )


def bench_risk(settings: Settings, data: Path, total: int) -> dict[str, float]:
    out = RecordProducer(create_producer(settings, **{"linger.ms": 5}), CODEC, settings.kafka.topic_prefix)
    reader = Reader(settings, risk_decisions.TOPIC.name, RiskDecision)
    # Every intent buys one AAPL share and stays in flight (nothing executes them): lift the position and exposure
    # limits so each is approved and routed, the path the benchmark measures.
    worker = start_worker(
        settings,
        "risk",
        data,
        risk_max_orders_per_minute=str(10**6),
        risk_quote_max_age_seconds="3600",
        risk_max_position=str(10**9),
        risk_max_gross_exposure=str(10**12),
    )
    try:
        now = utc_now()
        out.send(
            quotes.TOPIC,
            Quote(
                symbol="AAPL",
                con_id=1,
                bid=99.99,
                ask=100.01,
                last=100.0,
                event_time=now,
                ingest_time=now,
                source=MarketDataSource.SIM,
            ),
        )
        got, elapsed = _timed_intents(out, reader, total, "risk worker", data)
        approved = sum(1 for _, d in got if d.approved)
        latencies: list[float] = []
        for n in range(200):
            sent = time.monotonic()
            out.send(order_intents.TOPIC, intent(f"l{n}", "AAPL"))
            out.flush()
            for arrived, _ in reader.read(1, 2.0):
                latencies.append(arrived - sent)
            time.sleep(0.02)
        return {
            "intents": total,
            "decisions": len(got),
            "approved": approved,
            "seconds": elapsed,
            "per_second": len(got) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "samples": len(latencies),
        }
    finally:
        stop_worker(worker)


def _timed_intents(out: RecordProducer, reader: Reader, total: int, worker: str, data: Path) -> tuple[list[Any], float]:
    """One warm-up intent answered, then ``total`` intents: what came back and the seconds from the first sent to
    the last answer (the risk phase and its Faust ceiling are timed the same way)."""
    out.send(order_intents.TOPIC, intent("warm-up", "AAPL"))
    out.flush()
    if not reader.read(1, 90):
        raise SystemExit(f"{worker} did not answer; see {data / 'worker.log'}")
    began = time.monotonic()
    for n in range(total):
        out.send(order_intents.TOPIC, intent(f"t{n}", "AAPL"))
    out.flush()
    got = reader.read(total, 300)
    return got, (got[-1][0] if got else time.monotonic()) - began


def bench_faust_ceiling(settings: Settings, data: Path, total: int) -> dict[str, float]:
    """The ceiling: the bare agent over the risk phase's input (the same intents, as bytes), timed the same way."""
    prefix = settings.kafka.topic_prefix
    out = RecordProducer(create_producer(settings, **{"linger.ms": 5}), CODEC, prefix)
    reader = Reader(settings, risk_decisions.TOPIC.name, None)
    source, sink = prefix + order_intents.TOPIC.name, prefix + risk_decisions.TOPIC.name
    worker = start_ceiling(settings, data, source, sink, order_intents.TOPIC.partitions)
    try:
        got, elapsed = _timed_intents(out, reader, total, "Faust ceiling worker", data)
        return {"events": total, "outputs": len(got), "seconds": elapsed, "per_second": len(got) / elapsed}
    finally:
        stop_worker(worker)


def ceiling_ratios(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each phase's events/s over the bare Faust agent's, measured in the same run (pure)."""
    ceiling = results.get("faust", {}).get("per_second")
    if not ceiling:
        return {}
    return {
        f"{phase}_to_faust_ceiling": round(results[phase]["per_second"] / ceiling, 3)
        for phase in ("risk", "signals")
        if phase in results
    }


def _run_phase(phase: str, settings: Settings, data: Path, args: argparse.Namespace) -> dict[str, float]:
    if phase == "faust":
        return bench_faust_ceiling(settings, data, args.intents)
    if phase == "signals":
        return bench_signals(settings, data, args.bars, args.symbols)
    if phase == "risk":
        return bench_risk(settings, data, args.intents)
    raise SystemExit(f"unknown phase {phase!r}: faust, signals, risk")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=6000)
    parser.add_argument("--intents", type=int, default=3000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each worker; folded stacks go here")
    parser.add_argument("--phases", default="faust,signals,risk")
    args = parser.parse_args(argv)
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    base = load_settings()
    admin = create_admin(base)
    results: dict[str, dict[str, float]] = {}
    for phase in args.phases.split(","):
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        settings = load_settings(kafka_topic_prefix=prefix)
        layouts = catalogue(prefix)
        ensure_topics(admin, layouts)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results[phase] = _run_phase(phase, settings, Path(tmp), args)
        finally:
            names = [layout.name for layout in layouts]
            names += [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
            delete_topics(admin, sorted(set(names)))
        figures = ", ".join(f"{key}={value:,.1f}" for key, value in results[phase].items())
        print(f"{phase}: {figures}", flush=True)
    ratios = ceiling_ratios(results)
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.3f}", flush=True)
    print("json: " + json.dumps({**results, **ratios}), flush=True)
    emit_figures({**results, **ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
