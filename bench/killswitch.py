"""Kill switch latency: `python -m bench.killswitch [--entries 20] [--runs 3]`.

Per run, on the configured broker (topics under a fresh prefix) and an in-process ibsim: the executor runs in a
thread, ``--entries`` resting entries (limits 20% under the market) are routed to it with their approved decisions,
and once ibsim lists every one working the kill switch is published as the API publishes it (``KafkaCommandSink``:
idempotent producer, waits for Kafka's ack); the figure is the time from that call to ibsim listing the last entry
Cancelled. The ceiling, measured in the same run on the same ibsim: an ibapi client of its own places as many resting
orders and cancels them all directly; the time to the last one Cancelled is what no pipeline can beat (the gateway's
cancel round trip). Reported: medians of both and their ratio (pipeline / direct). The API's HTTP hop is left out here
(tests/integration/test_flatten.py measures the whole API call → cancelled at ibsim).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from api.commands import KafkaCommandSink, build_command
from bench.history import emit_figures
from consumers.execution import build
from consumers.execution.service import State
from ibsim import SimConfig, Simulator
from ibsim.config import EXCHANGE_TZ
from ibstream.config import Settings, load_settings
from ibstream.contracts import RiskDecision, RoutedOrder, risk_decisions, routed_orders, utc_now
from ibstream.contracts.enums import ControlCommandKind, OrderType, Side
from ibstream.contracts.order_terms import terms_digest
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.ib.session import IbSession, OrderTicket, stock_contract
from ibstream.kafka.clients import create_admin, create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.kafka.topics import catalogue, delete_topics, ensure_topics

SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")
MONDAY_10AM = dt.datetime(2025, 1, 6, 10, 0, tzinfo=EXCHANGE_TZ)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` every millisecond; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.001)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def _resting(sim: Simulator, index: int) -> RoutedOrder:
    symbol = SYMBOLS[index % len(SYMBOLS)]
    bid = sim.quote(symbol).bid
    return RoutedOrder(
        order_id=str(uuid.uuid4()),
        symbol=symbol,
        side=Side.BUY,
        quantity=1,
        order_type=OrderType.LMT,
        limit_price=round(bid * 0.8, 2),
        stop_loss=round(bid * 0.7, 2),
        take_profit=round(bid * 0.9, 2),
        decision_id=str(uuid.uuid4()),
        routed_time=utc_now(),
    )


def _approval(order: RoutedOrder) -> RiskDecision:
    return RiskDecision(
        decision_id=order.decision_id,
        order_id=order.order_id,
        symbol=order.symbol,
        approved=True,
        checks=[],
        intent_time=order.routed_time,
        decided_time=order.routed_time,
        terms_digest=terms_digest(order),
    )


def through_the_pipeline(settings: Settings, sim: Simulator, entries: int, state_dir: Path) -> float:
    """Seconds from publishing the kill switch to the last of ``entries`` resting entries Cancelled at ibsim."""
    executor = build(settings.with_overrides(ib_port=sim.port, state_dir=state_dir))
    executor.journal.open()
    stop = threading.Event()
    thread = threading.Thread(target=executor.run, args=(stop,), name="executor", daemon=True)
    thread.start()
    sink = KafkaCommandSink(settings)
    try:
        _wait(lambda: executor.state is State.READY, 30, "the executor ready")
        out = RecordProducer(create_producer(settings), SingleObjectCodec(SchemaStore()), settings.kafka.topic_prefix)
        orders = [_resting(sim, index) for index in range(entries)]
        for order in orders:
            out.send(risk_decisions.TOPIC, _approval(order))
            out.send(routed_orders.TOPIC, order)
        out.flush(10)
        refs = {order.order_id for order in orders}

        def parents(status: set[str]) -> int:
            return sum(
                1 for o in sim.orders() if o.order_ref in refs and o.request.parent_id == 0 and o.status in status
            )

        _wait(lambda: parents({"Submitted"}) == entries, 60, "every entry working at ibsim")
        sink.reachable()  # connected before the clock starts
        started = time.monotonic()
        sink.publish(build_command(ControlCommandKind.KILL_SWITCH_ON, "global", "bench", "bench"))
        done = _wait(lambda: parents({"Cancelled"}) == entries, 30, "every entry cancelled")
        return done - started
    finally:
        sink.close()
        stop.set()
        thread.join(30)
        executor.journal.close()


def directly(sim: Simulator, entries: int, client_id: int) -> float:
    """Seconds from sending ``entries`` cancels straight to ibsim to the last one Cancelled (the ceiling)."""
    session = IbSession("127.0.0.1", sim.port, client_id)
    connected = session.connect()
    try:
        first = connected.next_valid_id
        refs = {f"direct-{client_id}-{index}" for index in range(entries)}
        for index in range(entries):
            symbol = SYMBOLS[index % len(SYMBOLS)]
            ticket = OrderTicket("BUY", 1, "LMT", f"direct-{client_id}-{index}", round(sim.quote(symbol).bid * 0.8, 2))
            session.place_order(first + index, stock_contract(symbol), ticket)

        def count(status: str) -> int:
            return sum(1 for o in sim.orders() if o.order_ref in refs and o.status == status)

        _wait(lambda: count("Submitted") == entries, 30, "every direct order working")
        started = time.monotonic()
        for index in range(entries):
            session.cancel_order(first + index)
        return _wait(lambda: count("Cancelled") == entries, 30, "every direct order cancelled") - started
    finally:
        session.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.killswitch", description=__doc__)
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    base = load_settings()
    pipeline: list[float] = []
    direct: list[float] = []
    for run in range(args.runs):
        prefix = f"benchkill{uuid.uuid4().hex[:6]}."
        settings = load_settings(kafka_bootstrap_servers=base.kafka.bootstrap_servers, kafka_topic_prefix=prefix)
        admin = create_admin(settings)
        layouts = catalogue(prefix)
        ensure_topics(admin, layouts)
        sim = Simulator(SimConfig(port=0, control_port=None, start_time=MONDAY_10AM, speed=60.0, seed=run)).start()
        try:
            with TemporaryDirectory() as state:
                pipeline.append(through_the_pipeline(settings, sim, args.entries, Path(state)))
            direct.append(directly(sim, args.entries, client_id=90 + run))
        finally:
            sim.stop()
            delete_topics(admin, [layout.name for layout in layouts])
    through, floor = statistics.median(pipeline), statistics.median(direct)
    print(
        f"kill switch, {args.entries} resting entries: published → last cancelled at ibsim median "
        f"{through * 1000:.0f} ms (min {min(pipeline) * 1000:.0f}, max {max(pipeline) * 1000:.0f}); direct cancels at "
        f"ibsim (ceiling) median {floor * 1000:.0f} ms; ratio {through / floor:.1f}x over {args.runs} runs"
    )
    emit_figures(
        {"pipeline_ms": through * 1000, "direct_ms": floor * 1000, "pipeline_to_direct_ratio": through / floor}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
