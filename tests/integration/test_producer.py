"""Market data producer: ibsim (real TWS sockets, accelerated clock) → real Kafka broker.

Ground truth is ibsim's own record of every bar it generated; the checks compare what reached Kafka with it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ibsim import SimConfig, Simulator
from ibsim.config import EXCHANGE_TZ
from ibstream.config import Settings, load_settings
from ibstream.contracts import Alert, Bar, Gap, Quote, alerts, bars, gaps, quotes
from ibstream.contracts.enums import AlertState, GapState, MarketDataSource
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.exceptions import ConfigError
from ibstream.kafka.clients import create_admin
from ibstream.kafka.records import decode_message
from ibstream.kafka.topics import catalogue, ensure_topics
from producers.market_data import build, check_kafka
from producers.market_data.health import HealthServer
from producers.market_data.service import MarketDataProducer
from tests.integration.kafka_helpers import consume_all
from tooling.stack import KafkaStack

pytestmark = pytest.mark.integration

MONDAY_10AM = dt.datetime(2025, 1, 6, 10, 0, tzinfo=EXCHANGE_TZ)
SYMBOLS = ["AAPL", "MSFT", "SPY"]
CODEC = SingleObjectCodec(SchemaStore())


@dataclass
class Running:
    sim: Simulator
    producer: MarketDataProducer
    settings: Settings
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "producer did not stop"
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def run_producer(settings: Settings) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(sim_overrides: dict[str, Any] | None = None, **setting_overrides: Any) -> Running:
        sim_config = {
            "port": 0,
            "control_port": None,
            "start_time": MONDAY_10AM,
            "speed": 60.0,
            "seed": 7,
            **(sim_overrides or {}),
        }
        sim = Simulator(SimConfig(**sim_config)).start()
        values: dict[str, Any] = {
            **settings.model_dump(),
            "ib_port": sim.port,
            "symbols": SYMBOLS,
            "stale_after_seconds": 1.0,
            "heartbeat_seconds": 0.5,
            "ib_reconnect_base_seconds": 0.2,
            "ib_reconnect_cap_seconds": 1.0,
            "ib_connect_timeout_seconds": 3.0,
            **setting_overrides,
        }
        producer_settings = load_settings(**values)
        producer, _ = build(producer_settings)
        stop = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                producer.run(stop)
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        running = Running(sim, producer, producer_settings, stop, thread, errors)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(30)
        running.sim.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read(settings: Settings, spec: Any, minimum: int = 1, timeout: float = 30.0) -> list[Any]:
    messages = consume_all(settings, settings.kafka.topic_prefix + spec.name, minimum, timeout)
    return [decode_message(CODEC, spec, message) for message in messages]


def read_all_bars(settings: Settings) -> list[Bar]:
    return read_all(settings, bars.TOPIC)


def read_all(settings: Settings, spec: Any) -> list[Any]:
    """Every record in the topic (read until no new message for a while)."""
    from confluent_kafka import Consumer

    from ibstream.kafka.clients import consumer_config

    consumer = Consumer(consumer_config(settings, f"check-{time.monotonic_ns()}", **{"enable.auto.commit": False}))
    consumer.subscribe([settings.kafka.topic_prefix + spec.name])
    out: list[Any] = []
    # Joining the group can take seconds (longer right after a broker restart): wait up to 30 s for the first
    # record, then stop once the topic has been quiet for 3 s.
    idle_since = time.monotonic() + 27.0
    try:
        while time.monotonic() - idle_since < 3.0:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            idle_since = time.monotonic()
            out.append(decode_message(CODEC, spec, message))
    finally:
        consumer.close()
    return out


def bars_by_symbol(all_bars: list[Bar]) -> dict[str, list[Bar]]:
    grouped: dict[str, list[Bar]] = {}
    for bar in all_bars:
        grouped.setdefault(bar.symbol, []).append(bar)
    return grouped


def assert_matches_ground_truth(sim: Simulator, published: list[Bar]) -> dict[str, int]:
    """Every ground-truth bar between a symbol's first and last published bar is in Kafka, with its values."""
    counts = {}
    for symbol, symbol_bars in bars_by_symbol(published).items():
        starts = {int(bar.start.timestamp()): bar for bar in symbol_bars}
        first, last = min(starts), max(starts)
        truth = [b for b in sim.ground_truth_bars(symbol) if first <= b.time <= last]
        missing = [b.time for b in truth if b.time not in starts]
        assert not missing, f"{symbol}: {len(missing)} of {len(truth)} bars missing, first at {missing[0]}"
        for expected in truth:
            got = starts[expected.time]
            assert (got.open, got.high, got.low, got.close, got.volume) == (
                expected.open,
                expected.high,
                expected.low,
                expected.close,
                float(expected.volume),
            )
        counts[symbol] = len(truth)
    return counts


def test_steady_run_every_bar_in_order(run_producer: Callable[..., Running], settings: Settings) -> None:
    running = run_producer()
    wait_until(lambda: running.producer.sink.delivered > 200, what="records delivered")
    time.sleep(3)
    running.halt()
    published = read_all_bars(settings)
    assert {bar.symbol for bar in published} == set(SYMBOLS)
    counts = assert_matches_ground_truth(running.sim, published)
    assert min(counts.values()) >= 20
    for symbol_bars in bars_by_symbol(published).values():
        live = [bar.start for bar in symbol_bars if bar.source is MarketDataSource.LIVE]
        assert live == sorted(live) and len(live) == len(set(live)), "live bars out of order or duplicated"
    assert all(bar.source is MarketDataSource.LIVE for bar in published)
    quote_records: list[Quote] = read_all(settings, quotes.TOPIC)
    assert {q.symbol for q in quote_records} == set(SYMBOLS)
    latest = {q.symbol: q for q in quote_records}  # per-key order is Kafka's promise: the last one per symbol
    assert all(q.bid is not None and q.ask is not None and q.bid <= q.ask for q in latest.values())
    assert all(q.source is MarketDataSource.LIVE for q in quote_records)


def test_disconnects_and_refused_window_lose_no_bar(run_producer: Callable[..., Running], settings: Settings) -> None:
    running = run_producer()
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 50, what="first records")
    interruptions = 0
    for _ in range(5):
        generation = producer.generation
        assert sim.drop_connections() >= 1
        interruptions += 1
        wait_until(
            lambda g=generation: producer.generation > g and producer.state.value == "connected", what="reconnect"
        )
        time.sleep(1.5)
    generation = producer.generation
    sim.refuse_connections(2.0, drop_existing=True)
    interruptions += 1
    wait_until(
        lambda: producer.generation > generation and producer.state.value == "connected",
        timeout=30,
        what="reconnect after refused window",
    )
    wait_until(lambda: not producer.tracker.gaps and producer.sink.in_flight() == 0, what="backfills done")
    time.sleep(1.5)
    running.halt()

    published = read_all_bars(settings)
    counts = assert_matches_ground_truth(running.sim, published)
    assert min(counts.values()) > 50
    backfilled = [bar for bar in published if bar.source is MarketDataSource.BACKFILL]
    assert backfilled, "interruptions at 60x must have needed a backfill"

    final = [
        gap for gap in read_all(settings, gaps.TOPIC) if gap.state in (GapState.BACKFILLED, GapState.UNRECOVERABLE)
    ]
    assert all(gap.state is GapState.BACKFILLED for gap in final), [g.reason for g in final]
    per_symbol = {symbol: [g for g in final if g.symbol == symbol] for symbol in SYMBOLS}
    for symbol, symbol_gaps in per_symbol.items():
        assert len(symbol_gaps) == interruptions, f"{symbol}: {len(symbol_gaps)} gaps for {interruptions} drops"
        assert all(g.recovered_bars == g.missing_bars > 0 for g in symbol_gaps)
    assert producer.reconnect_count == interruptions
    # No pacing violation in a normal run: the governor kept every backfill under IB's limits.
    assert producer.session.governor.waited_seconds >= 0.0


def test_restarted_producer_backfills_what_it_missed_while_down(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    from producers.market_data import published_bar_starts

    first = run_producer()
    wait_until(lambda: first.producer.sink.delivered > 100, what="records before the crash")
    first.halt()
    sim = first.sim
    time.sleep(2.0)  # 120 market seconds at 60x: about 24 bars per symbol go by with no producer
    seeded = published_bar_starts(first.settings)
    assert set(seeded) == set(SYMBOLS)
    producer, _ = build(first.settings, published_bars=seeded)
    stop = threading.Event()
    thread = threading.Thread(target=producer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: producer.state.value == "connected", what="second producer connected")
        wait_until(
            lambda: (
                producer.metrics.m_gaps is not None
                and not producer.tracker.gaps
                and producer.reconnect_count == 0
                and all(producer.tracker.last_start(s) != seeded[s] for s in SYMBOLS)
            ),
            what="restart gap closed",
        )
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(30)
    published = read_all_bars(settings)
    assert_matches_ground_truth(sim, published)  # no hole across the restart
    restart_gaps = [g for g in read_all(settings, gaps.TOPIC) if g.cause == "producer_restart"]
    final = {g.symbol: g for g in restart_gaps if g.state in (GapState.BACKFILLED, GapState.UNRECOVERABLE)}
    assert set(final) == set(SYMBOLS)
    assert all(g.state is GapState.BACKFILLED and g.recovered_bars == g.missing_bars > 10 for g in final.values())


def test_restarted_producer_finishes_the_gaps_its_predecessor_left_open(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    from ibstream.ib.pacing import PacingLimits
    from producers.market_data import published_bar_starts, unfinished_gaps

    first = run_producer()
    # One historical request per hour: after a drop, one symbol's backfill goes out, the others wait (open).
    first.producer.session.governor.limits = PacingLimits(historical_per_window=1, historical_window_seconds=3600)
    wait_until(lambda: first.producer.sink.delivered > 100, what="records before the drop")
    generation = first.producer.generation
    assert first.sim.drop_connections() >= 1
    wait_until(
        lambda: first.producer.generation > generation and len(first.producer.tracker.gaps) >= 2,
        what="gaps detected after the drop",
    )
    time.sleep(1.0)
    left_open = set(first.producer.tracker.gaps)
    first.halt()  # the process ends with gaps open, as a SIGKILL would leave them
    assert len(left_open) >= 2

    unfinished = unfinished_gaps(first.settings)
    assert {gap.gap_id for gap in unfinished} == left_open
    producer, _ = build(first.settings, published_bars=published_bar_starts(first.settings), open_gaps=unfinished)
    stop = threading.Event()
    thread = threading.Thread(target=producer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: producer.state.value == "connected" and not producer.tracker.gaps,
            timeout=60,
            what="the inherited gaps backfilled",
        )
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(30)
    assert_matches_ground_truth(first.sim, read_all_bars(settings))  # no hole where the gaps were
    final = {g.gap_id: g for g in read_all(settings, gaps.TOPIC) if g.state is GapState.BACKFILLED}
    assert left_open <= set(final)


def test_stalled_symbol_alerts_within_twice_the_threshold(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    running = run_producer()
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 30, what="first records")
    stalled_at = time.monotonic()
    sim.stall("MSFT")
    wait_until(lambda: "stale_feed:MSFT" in producer.alerts.firing, timeout=5, what="stale alert")
    fired_after = time.monotonic() - stalled_at
    assert fired_after <= 2 * producer.settings.feed.stale_after_seconds + 0.5
    sim.resume("MSFT")
    wait_until(lambda: "stale_feed:MSFT" not in producer.alerts.firing, timeout=5, what="alert resolved")
    wait_until(lambda: not producer.tracker.gaps, what="stall gap backfilled")
    running.halt()
    records: list[Alert] = read_all(settings, alerts.TOPIC)
    msft = [a for a in records if a.alert_id == "stale_feed:MSFT"]
    assert [a.state for a in msft] == [AlertState.FIRING, AlertState.RESOLVED]
    assert not [a for a in records if a.kind == "stale_feed" and a.symbol != "MSFT"]
    gap_records: list[Gap] = read_all(settings, gaps.TOPIC)
    assert any(g.symbol == "MSFT" and g.cause == "stale_feed" and g.state is GapState.BACKFILLED for g in gap_records)


def test_no_stale_alerts_outside_trading_hours(run_producer: Callable[..., Running]) -> None:
    evening = dt.datetime(2025, 1, 6, 17, 0, tzinfo=EXCHANGE_TZ)
    running = run_producer({"start_time": evening})
    wait_until(lambda: running.producer.state.value == "connected", what="connected")
    time.sleep(3 * running.producer.settings.feed.stale_after_seconds)
    assert not running.producer.alerts.firing
    ready, details = running.producer.readiness()
    assert details["market_open"] is False
    assert ready  # a closed market is not a fault: connected and subscribed is ready
    running.halt()


def test_delayed_data_is_marked_delayed(run_producer: Callable[..., Running], settings: Settings) -> None:
    running = run_producer({"live_data_entitled": False}, market_data_type=3)
    wait_until(lambda: running.producer.sink.delivered > 30, what="records")
    running.halt()
    quote_records: list[Quote] = read_all(settings, quotes.TOPIC)
    assert quote_records and all(q.source is MarketDataSource.DELAYED for q in quote_records)


def test_health_endpoint_reports_readiness(run_producer: Callable[..., Running]) -> None:
    import json
    import urllib.request

    running = run_producer()
    health = HealthServer("127.0.0.1", 0, running.producer.readiness).start()
    try:
        wait_until(lambda: running.producer.readiness()[0], what="ready")
        with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/ready", timeout=5) as response:
            body = json.loads(response.read())
        assert response.status == 200 and body["ready"] is True
        assert body["connection_state"] == "connected" and body["kafka_reachable"] is True
        assert set(body["tick_age_seconds"]) == set(SYMBOLS)
        running.sim.drop_connections()
        running.sim.refuse_connections(3.0)
        wait_until(lambda: not running.producer.readiness()[0], what="not ready while disconnected")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health.port}/ready", timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as error:
            assert error.code == 503
        with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/health", timeout=5) as response:
            assert response.status == 200
    finally:
        health.stop()
        running.halt()


def test_unknown_symbol_stops_startup_naming_the_setting(run_producer: Callable[..., Running]) -> None:
    running = run_producer(symbols=["AAPL", "NOSUCH"])
    running.thread.join(30)
    assert running.errors and isinstance(running.errors[0], ConfigError)
    assert running.errors[0].setting == "IBSTREAM_SYMBOLS" and "NOSUCH" in str(running.errors[0])


def test_unreachable_kafka_stops_startup_naming_the_setting() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(ConfigError) as caught:
        check_kafka(
            load_settings(
                kafka_bootstrap_servers=f"127.0.0.1:{port}",
                kafka_client_config={"socket.connection.setup.timeout.ms": "2000"},
            ),
            timeout=2,
        )
    assert caught.value.setting == "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS"


def test_live_port_without_live_setting_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(ib_port=7496)
    assert caught.value.setting == "IBSTREAM_IB_PORT"
    assert load_settings(ib_port=7496, ib_live_account="U1234567").ib.port == 7496


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_kafka_broker_restart_loses_no_record(run_producer: Callable[..., Running], tmp_path: Path) -> None:
    # Its own broker: stopping the session's shared broker would break other tests.
    port = _free_port()
    stack = KafkaStack(
        load_settings(
            state_dir=tmp_path, stack_kafka_port=port, stack_controller_port=_free_port(), stack_kafka_heap="384m"
        )
    )
    stack.up()
    try:
        bootstrap = f"127.0.0.1:{port}"
        own = load_settings(kafka_bootstrap_servers=bootstrap, kafka_topic_prefix="restart.")
        ensure_topics(create_admin(own), catalogue("restart."))
        running = run_producer(kafka_bootstrap_servers=bootstrap, kafka_topic_prefix="restart.")
        producer = running.producer
        wait_until(lambda: producer.sink.delivered > 100, what="records before the restart")
        stack.down()
        time.sleep(2.0)
        stack.up()
        wait_until(
            lambda: producer.sink.delivered > 0 and producer.sink.in_flight() == 0,
            timeout=90,
            what="queued records delivered after the restart",
        )
        time.sleep(2.0)
        running.halt()
        assert producer.sink.failed == 0
        published = read_all_bars(own)
        counts = assert_matches_ground_truth(running.sim, published)
        assert min(counts.values()) > 20
    finally:
        stack.down()


def test_historical_pacing_holds_backfills_back_never_live_data(
    run_producer: Callable[..., Running], settings: Settings
) -> None:
    """IB allows 60 historical requests per 10 minutes; a run of disconnects can use that up. The backfills must
    then wait their turn while quotes keep flowing, not stall the producer until the window frees."""
    from ibstream.ib.pacing import PacingLimits

    running = run_producer()
    producer = running.producer
    # The budget shrunk to 2 requests per 6 s: three drops of three symbols need 9.
    producer.session.governor.limits = PacingLimits(historical_per_window=2, historical_window_seconds=6.0)
    _drop_three_times_and_backfill(running, timeout=90)

    published = read_all_bars(settings)
    assert_matches_ground_truth(running.sim, published)
    assert producer.session.governor.waited_seconds < 1.0, "the loop slept on historical pacing"
    for symbol, symbol_quotes in _by_symbol(read_all(settings, quotes.TOPIC)).items():
        times = sorted(q.ingest_time for q in symbol_quotes)
        longest = max((b - a).total_seconds() for a, b in itertools.pairwise(times))
        assert longest < 4.0, f"{symbol}: no quote for {longest:.1f}s while backfills waited for pacing"


def test_pacing_violations_delay_backfills_but_lose_no_bar(
    run_producer: Callable[..., Running], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IB's pacing counters can hold requests this process never made (a predecessor's, before a restart): its
    violations must pause the backfills, not use up their attempts and leave bars unrecoverable."""
    import ibsim.pacing
    from ibstream.ib.pacing import PacingLimits

    # The gateway allows 3 requests per 6 s; the producer's governor believes IB's 60 per 10 minutes.
    monkeypatch.setattr(ibsim.pacing, "GLOBAL_LIMIT", 3)
    monkeypatch.setattr(ibsim.pacing, "GLOBAL_WINDOW", 6.0)
    monkeypatch.setattr(ibsim.pacing, "IDENTICAL_WINDOW", 0.5)
    running = run_producer(ib_historical_pacing_backoff_seconds=1.0)
    producer, sim = running.producer, running.sim
    producer.session.governor.limits = PacingLimits(historical_identical_seconds=0.5)
    _drop_three_times_and_backfill(running, timeout=60)

    assert producer.pacing_violations > 0, "the gateway never refused a request: the test proves nothing"
    assert_matches_ground_truth(sim, read_all_bars(settings))
    final = [g for g in read_all(settings, gaps.TOPIC) if g.state in (GapState.BACKFILLED, GapState.UNRECOVERABLE)]
    assert final and all(g.state is GapState.BACKFILLED for g in final), [g.reason for g in final]


def _drop_three_times_and_backfill(running: Running, timeout: float) -> None:
    """Three socket drops half a second apart, then every gap closed and every record delivered; halts the producer."""
    producer, sim = running.producer, running.sim
    wait_until(lambda: producer.sink.delivered > 50, what="first records")
    for _ in range(3):
        generation = producer.generation
        assert sim.drop_connections() >= 1
        wait_until(
            lambda g=generation: producer.generation > g and producer.state.value == "connected", what="reconnect"
        )
        time.sleep(0.5)
    wait_until(
        lambda: not producer.tracker.gaps and producer.sink.in_flight() == 0, timeout=timeout, what="backfills done"
    )
    time.sleep(1.5)
    running.halt()


def _by_symbol(records: list[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for record in records:
        grouped.setdefault(record.symbol, []).append(record)
    return grouped
