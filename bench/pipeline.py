"""End-to-end latency and memory at a steady quote load: `python -m bench.pipeline [--seconds 30]`.

Runs ibsim in real time (24 h market, 10 symbols, a tick every 10 ms: about 1,000 quotes/s), the producer, streams
(risk) and execution as real processes on the configured broker, and injects order intents at a steady rate. From
the timestamps the records carry it reports p50/p95/p99 of:
* quote ingest → a consumer receives it (what the risk view sees under load),
* intent created → risk decision (`created_time` → `decided_time`),
* routed order → acknowledged at ibsim (`routed_time` → the `acknowledged` event's `event_time`: when IB's answer
  reached execution), split at the parent's placeOrder (its `pending_submit` event): routed → placed and placed →
  acknowledged; and routed → the acknowledged event produced to Kafka (its record timestamp: in the transaction
  that commits it, so what the rest of the pipeline can see first),
* intent → acknowledged (the whole order path),
and the peak RSS and the CPU (share of one core) of each deployable (sampled every 0.5 s). Times are wall clock on
one machine, so no clock skew.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

from bench.history import emit_figures, numeric_leaves
from ibstream import ids
from ibstream.config import load_settings
from ibstream.contracts import (
    OrderEvent,
    OrderIntent,
    Quote,
    RiskDecision,
    RoutedOrder,
    order_events,
    order_intents,
    quotes,
    risk_decisions,
    routed_orders,
)
from ibstream.contracts.enums import OrderStatus, OrderType, Side
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.kafka.clients import consumer_config, create_admin, create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.kafka.topics import catalogue, delete_topics, ensure_topics
from tooling.processes import ProcessGroup, free_port

SYMBOLS = ["AAPL", "MSFT", "AMZN", "GOOGL", "NVDA", "TSLA", "META", "SPY", "QQQ", "IWM"]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(values),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(values),
    }


def read_topic(settings: Any, topic: str, record_type: Any, codec: SingleObjectCodec) -> list[tuple[Any, int]]:
    """(record, Kafka timestamp ms) of every message in a topic."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        consumer_config(settings, f"bench-read-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False})
    )
    consumer.subscribe([topic])
    out: list[tuple[Any, int]] = []
    idle_since = time.monotonic() + 20
    try:
        while time.monotonic() - idle_since < 2.0:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            idle_since = time.monotonic()
            record = codec.decode(topic, record_type, message.value(), message.partition(), message.offset())
            out.append((record, message.timestamp()[1]))
    finally:
        consumer.close()
    return out


def universe(size: int) -> list[str]:
    """The first ``size`` of the usual symbols, then synthetic ones (ibsim prices any symbol)."""
    return [*SYMBOLS[:size], *(f"SYN{index:03d}" for index in range(max(0, size - len(SYMBOLS))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--intents-per-second", type=float, default=5.0)
    parser.add_argument("--tick-interval", type=float, default=0.01)
    # ibsim moves each book once per simulated second: speed 100 with 10 symbols is about 1,000 quotes/s.
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--directory", type=Path, default=Path(".state") / "bench-pipeline")
    # Issue #24's latency goal is at 2k quotes/s over 100 symbols: --symbols 100 --speed 20.
    parser.add_argument("--symbols", type=int, default=len(SYMBOLS), help="universe size (synthetic beyond 10)")
    args = parser.parse_args(argv)
    symbols = universe(args.symbols)

    prefix = f"benchpipe{uuid.uuid4().hex[:6]}."
    base = load_settings()
    settings = load_settings(kafka_bootstrap_servers=base.kafka.bootstrap_servers, kafka_topic_prefix=prefix)
    admin = create_admin(settings)
    layouts = catalogue(prefix)
    ensure_topics(admin, layouts)
    ports = {name: free_port() for name in ("sim", "control", "producer", "streams", "execution")}
    env = {
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "IBSTREAM_KAFKA_TOPIC_PREFIX": prefix,
        "IBSTREAM_STATE_DIR": str(args.directory),
        "IBSTREAM_IB_PORT": str(ports["sim"]),
        "IBSTREAM_SYMBOLS": ",".join(symbols),
        "IBSTREAM_TRADING_HOURS": "24h",
        "IBSTREAM_MARKET_CLOCK": "feed",
        "IBSTREAM_PRODUCER_HEALTH_PORT": str(ports["producer"]),
        "IBSTREAM_STREAMS_HEALTH_PORT": str(ports["streams"]),
        "IBSTREAM_EXECUTION_HEALTH_PORT": str(ports["execution"]),
        "IBSTREAM_RISK_MAX_ORDERS_PER_MINUTE": "100000",
        "IBSTREAM_RISK_MAX_GROSS_EXPOSURE": "1000000000",
        "IBSTREAM_RISK_MAX_POSITION": "1000000",
        # Quotes come every 0.1 wall s per symbol, i.e. speed/10 market seconds: judge freshness accordingly.
        "IBSTREAM_RISK_QUOTE_MAX_AGE_SECONDS": str(max(10.0, args.speed)),
    }
    group = ProcessGroup(args.directory / "logs")
    control = f"http://127.0.0.1:{ports['control']}"
    rss: dict[str, float] = {}
    #: name → (first, last) sample of (wall seconds, CPU seconds): the share of a core each deployable used.
    cpu: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {}
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.5):
            for name, managed in group.processes.items():
                if managed.pid is None or not managed.alive():
                    continue
                try:
                    process = psutil.Process(managed.pid)
                    total = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(True))
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                rss[name] = max(rss.get(name, 0.0), total / 2**20)
                now = (time.monotonic(), times.user + times.system)
                cpu[name] = (cpu.get(name, (now, now))[0], now)

    try:
        group.ibstream(
            "ibsim",
            "sim",
            "--port",
            str(ports["sim"]),
            "--control-port",
            str(ports["control"]),
            "--hours",
            "24h",
            "--tick-interval",
            str(args.tick_interval),
            "--speed",
            str(args.speed),
            "--symbols",
            *symbols,
            env=env,
            health_url=f"{control}/health",
        )
        group.wait_healthy("ibsim", 30)
        group.ibstream(
            "streams",
            "run",
            "streams",
            "--agents",
            "risk",
            env=env,
            health_url=f"http://127.0.0.1:{ports['streams']}/ready",
        )
        group.ibstream(
            "execution", "run", "execution", env=env, health_url=f"http://127.0.0.1:{ports['execution']}/ready"
        )
        group.ibstream("producer", "run", "producer", env=env, health_url=f"http://127.0.0.1:{ports['producer']}/ready")
        for name in ("streams", "execution", "producer"):
            group.wait_healthy(name, 120)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(3)  # let the risk view see fresh quotes for every symbol

        codec = SingleObjectCodec(SchemaStore())
        quote_lag: list[float] = []
        follow_args = (settings, prefix + quotes.TOPIC.name, codec, quote_lag, stop_sampling)
        quotes_seen = threading.Thread(target=_follow_quotes, args=follow_args, daemon=True)
        quotes_seen.start()
        sink = RecordProducer(create_producer(settings), codec, prefix)
        # Prices move a few basis points during a run: stops 1 % away stay valid with one look-up per symbol.
        # Intents go to the first ten symbols only: ibsim's bar history of all of 100 is slow to fetch under load,
        # and the quote load (what the latency goal is about) comes from every symbol anyway.
        traded = symbols[: len(SYMBOLS)]
        with urllib.request.urlopen(f"{control}/state", timeout=30) as response:
            sim_now = float(json.loads(response.read())["sim_epoch"])
        prices = {symbol: _last_price(control, symbol, sim_now) for symbol in traded}
        sent = 0
        started = time.monotonic()
        interval = 1.0 / args.intents_per_second
        while time.monotonic() - started < args.seconds:
            symbol = traded[sent % len(traded)]
            run_id = f"bench-{uuid.uuid4().hex}"
            price = prices[symbol]
            side = Side.BUY if sent % 2 == 0 else Side.SELL
            sign = 1 if side is Side.BUY else -1
            intent = OrderIntent(
                order_id=ids.order_id(run_id),
                run_id=run_id,
                symbol=symbol,
                side=side,
                quantity=1.0,
                order_type=OrderType.MKT,
                stop_loss=round(price * (1 - sign * 0.01), 2),
                take_profit=round(price * (1 + sign * 0.02), 2),
                requested_by="bench",
                created_time=dt.datetime.now(dt.UTC),
            )
            sink.send(order_intents.TOPIC, intent)
            sink.poll(0)
            sent += 1
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))
        sink.flush(30)
        time.sleep(5)  # the last acks
        stop_sampling.set()
        # Stop the pipeline before reading back, or the producer's quotes never let the topics go quiet.
        group.stop_all()

        quotes_seen.join(10)
        decisions = read_topic(settings, prefix + risk_decisions.TOPIC.name, RiskDecision, codec)
        routed = read_topic(settings, prefix + routed_orders.TOPIC.name, RoutedOrder, codec)
        events = read_topic(settings, prefix + order_events.TOPIC.name, OrderEvent, codec)
    finally:
        stop_sampling.set()
        group.stop_all()
        delete_topics(admin, [layout.name for layout in layouts])

    decision_lag = [(d.decided_time - d.intent_time).total_seconds() * 1000 for d, _ in decisions]
    acks = [(e, ts) for e, ts in events if e.status is OrderStatus.ACKNOWLEDGED and e.leg.value == "parent"]
    acked = {e.order_id: e.event_time for e, _ in acks}
    # When the acknowledged event left execution for Kafka (the record's timestamp, set as it is produced, in the
    # transaction that commits it): the ack as the rest of the pipeline can first see it.
    ack_published = {e.order_id: dt.datetime.fromtimestamp(ts / 1000, dt.UTC) for e, ts in acks}
    # The parent's placeOrder (its pending_submit event) splits routed → ack into execution's part (poll, approval
    # check, journal) and the round trip to IB and back into execution's loop.
    placed = {
        e.order_id: e.event_time
        for e, _ in events
        if e.status is OrderStatus.PENDING_SUBMIT and e.leg.value == "parent" and e.order_id in acked
    }
    intent_time = {d.order_id: d.intent_time for d, _ in decisions}
    routed_lag = [(acked[r.order_id] - r.routed_time).total_seconds() * 1000 for r, _ in routed if r.order_id in acked]
    to_placed = [(placed[r.order_id] - r.routed_time).total_seconds() * 1000 for r, _ in routed if r.order_id in placed]
    published_lag = [
        (ack_published[r.order_id] - r.routed_time).total_seconds() * 1000 for r, _ in routed if r.order_id in acked
    ]
    placed_to_ack = [(acked[o] - placed[o]).total_seconds() * 1000 for o in placed]
    whole = [(acked[o] - intent_time[o]).total_seconds() * 1000 for o in acked if o in intent_time]
    report = {
        "quotes_per_second": len(quote_lag) / args.seconds,
        "intents_sent": sent,
        "decisions": len(decisions),
        "approved": sum(1 for d, _ in decisions if d.approved),
        "acknowledged": len(acked),
        "quote_ingest_to_consumer_ms": percentiles(quote_lag),
        "intent_to_decision_ms": percentiles(decision_lag),
        "routed_to_ack_ms": percentiles(routed_lag),
        "routed_to_ack_published_ms": percentiles(published_lag),
        "routed_to_placed_ms": percentiles(to_placed),
        "placed_to_ack_ms": percentiles(placed_to_ack),
        "intent_to_ack_ms": percentiles(whole),
        "peak_rss_mb": {name: round(value, 1) for name, value in sorted(rss.items())},
        # From the first sample after a deployable started to the last before the pipeline stopped.
        "cpu_cores": {
            name: round((last[1] - first[1]) / (last[0] - first[0]), 3)
            for name, (first, last) in sorted(cpu.items())
            if last[0] > first[0]
        },
    }
    print(json.dumps(report, indent=2))
    print("json: " + json.dumps(report), flush=True)  # one line for `python -m bench` to read back
    emit_figures(numeric_leaves(report))
    return 0


def _follow_quotes(
    settings: Any, topic: str, codec: SingleObjectCodec, lags: list[float], stop: threading.Event
) -> None:
    """Consume quotes live (from the end, like the risk view) and record ingest → received in ms."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        consumer_config(
            settings,
            f"bench-quotes-{uuid.uuid4().hex[:8]}",
            **{"enable.auto.commit": False, "auto.offset.reset": "latest", "fetch.wait.max.ms": 5},
        )
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is None or message.error():
                continue
            received = time.time()
            quote = codec.decode(topic, Quote, message.value(), message.partition(), message.offset())
            lags.append((received - quote.ingest_time.timestamp()) * 1000)
    finally:
        consumer.close()


def _last_price(control: str, symbol: str, now: float) -> float:
    # Only the last simulated minutes before ``now``: the whole series since the session's open is thousands of bars
    # per symbol, built and serialized on ibsim's event loop while it serves the feed.
    with urllib.request.urlopen(f"{control}/bars/{symbol}?start={now - 300:.0f}", timeout=30) as response:
        bars = json.loads(response.read())
    return float(bars[-1]["close"])


if __name__ == "__main__":
    raise SystemExit(main())
