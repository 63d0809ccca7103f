"""Crash safety: the execution deployable as a real subprocess, SIGKILLed at each point of the placement protocol.

The process honours the test hook ``IBSTREAM_EXECUTION_CRASH_AT`` (before_place | mid_bracket | after_place |
after_event) for the order named by ``IBSTREAM_EXECUTION_CRASH_ORDER`` with ``os.kill(os.getpid(), SIGKILL)``. Each
run crashes on a new order after recovering the previous crash; a last clean run recovers the final one. ibsim's
order book must then show exactly one IB order per intent (per leg for a bracket), and the committed events must tell
each order's true state.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ibsim import SimConfig, Simulator
from ibstream.config import PROJECT_ROOT, Settings
from ibstream.contracts import order_events
from ibstream.contracts.enums import OrderLeg, OrderStatus, OrderType, Side
from tests.integration.execution_support import MONDAY_10AM, Reader, routed, send, wait_for

pytestmark = pytest.mark.integration

POINTS = ("before_place", "after_place", "after_event")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(SimConfig(port=0, control_port=None, start_time=MONDAY_10AM, speed=60.0, seed=11)).start()
    yield simulator
    simulator.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def spawn(settings: Settings, sim: Simulator, state_dir: Path, log: Path, **hooks: str) -> subprocess.Popen[bytes]:
    """``python -m consumers.execution`` against the test's broker, topics and ibsim."""
    env = {
        **os.environ,
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "IBSTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "IBSTREAM_IB_PORT": str(sim.port),
        "IBSTREAM_STATE_DIR": str(state_dir),
        "IBSTREAM_EXECUTION_HEALTH_PORT": "0",
        "IBSTREAM_IB_RECONNECT_BASE_SECONDS": "0.2",
        "IBSTREAM_IB_RECONNECT_CAP_SECONDS": "0.5",
        **hooks,
    }
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "consumers.execution"], cwd=PROJECT_ROOT, env=env, stdout=handle, stderr=handle
        )


def test_sigkill_at_every_placement_point_never_duplicates(settings: Settings, sim: Simulator, tmp_path: Path) -> None:
    log = tmp_path / "execution.log"
    state_dir = tmp_path / "state"
    # Market orders fill at once (found again by their executions); resting limit orders stay open (found again
    # among the open orders).
    price = sim.quote("MSFT").last
    plan: list[tuple[str, Any]] = []
    for point in POINTS:
        plan.append((point, routed("AAPL", Side.BUY, 10)))
        plan.append((point, routed("MSFT", Side.BUY, 5, order_type=OrderType.LMT, limit_price=round(price * 0.8, 2))))
    # A bracket killed between its held parent (transmit=False) and its children: IB does not list held orders, so
    # only the journal's ids (re-sent: a modification, not a new order) keep the restart from doubling it.
    aapl = sim.quote("AAPL").last
    bracket = routed("AAPL", Side.BUY, 4, stop_loss=round(aapl * 0.9, 2), take_profit=round(aapl * 1.1, 2))
    plan.append(("mid_bracket", bracket))
    started = time.monotonic()
    for point, order in plan:
        process = spawn(
            settings,
            sim,
            state_dir,
            log,
            IBSTREAM_EXECUTION_CRASH_AT=point,
            IBSTREAM_EXECUTION_CRASH_ORDER=order.order_id,
        )
        send(settings, order)
        assert process.wait(30) == -signal.SIGKILL, log.read_text()[-3000:]
        at_ib = [o for o in sim.orders() if o.order_ref == order.order_id]
        assert len(at_ib) == {"before_place": 0, "mid_bracket": 1}.get(point, 1), (point, at_ib)

    events = Reader(settings, order_events.TOPIC)
    health_port = free_port()
    final = spawn(settings, sim, state_dir, log, IBSTREAM_EXECUTION_HEALTH_PORT=str(health_port))
    fresh = routed("AAPL", Side.SELL, 10)  # after recovery, business as usual
    send(settings, fresh)
    plan.append(("none", fresh))
    try:

        def settled(records: list[Any]) -> bool:
            latest = {e.order_id: e.status for e in records if e.leg is OrderLeg.PARENT}
            return all(
                latest.get(o.order_id)
                == (OrderStatus.FILLED if o.order_type is OrderType.MKT else OrderStatus.ACKNOWLEDGED)
                for _, o in plan
            )

        recorded = events.wait(settled, timeout=30)
        assert get(health_port, "/health")[0] == 200
        wait_for(lambda: get(health_port, "/ready")[0] == 200, timeout=10)
        metrics = get(health_port, "/metrics")[1]
        assert re.search(r'^ibstream_execution_orders_total\{[^}]*outcome="filled"[^}]*\} [1-9]', metrics, re.M)
        assert "ibstream_execution_intent_to_ack_seconds_bucket" in metrics
        assert "ibstream_execution_ack_to_fill_seconds_bucket" in metrics
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(30) == 0, log.read_text()[-3000:]
        events.close()
    elapsed = time.monotonic() - started

    for point, order in plan:
        at_ib = sorted((o for o in sim.orders() if o.order_ref == order.order_id), key=lambda o: o.order_id)
        if order is bracket:
            assert [o.status for o in at_ib] == ["Filled", "Submitted", "Submitted"], at_ib
            assert [o.request.parent_id for o in at_ib[1:]] == [at_ib[0].order_id] * 2
            continue
        assert len(at_ib) == 1, (point, order.order_type, at_ib)
        expected = "Filled" if order.order_type is OrderType.MKT else "Submitted"
        assert at_ib[0].status == expected
        mine = [e for e in recorded if e.order_id == order.order_id]
        assert {e.ib_order_id for e in mine} == {at_ib[0].order_id}
    # Ids are never reused: every IB order has its own id (the bracket has three).
    ids = [o.order_id for o in sim.orders()]
    assert len(ids) == len(set(ids)) == len(plan) + 2
    # The after_event crashes really died inside a transaction: read_uncommitted sees their aborted pending_submit
    # events, read_committed never does. (IB's answers handled before the commit ride in the same transaction: the
    # placement's events wait one loop turn for them, ``service.Executor.step``.)
    raw = Reader(settings, order_events.TOPIC, committed=False)
    uncommitted = raw.poll(2.0)
    raw.close()
    committed_ids = {e.event_id for e in recorded}
    for point, order in plan:
        if point == "after_event":
            aborted = [e for e in uncommitted if e.order_id == order.order_id and e.event_id not in committed_ids]
            aborted_statuses = [e.status for e in aborted]
            assert aborted_statuses[:1] == [OrderStatus.PENDING_SUBMIT], aborted
            assert aborted_statuses.count(OrderStatus.PENDING_SUBMIT) == 1, aborted
    # A committed event id never repeats (re-emits after a crash carry the aborted attempt's id, which
    # read_committed readers never see).
    assert len({e.event_id for e in recorded}) == len(recorded)
    print(f"{len(POINTS) * 2 + 1} crashes + recovery in {elapsed:.1f}s")


def test_a_journal_lost_with_the_crash_is_detected_and_the_order_ib_holds_is_adopted_not_doubled(
    settings: Settings, sim: Simulator, tmp_path: Path
) -> None:
    """SIGKILL after placeOrder (events uncommitted), then the journal is deleted, as a wiped volume would: the
    restarted executor sees an empty journal while the events record IB orders, reconciles before placing, and finds
    the re-delivered order at IB by its orderRef instead of placing it a second time."""
    log = tmp_path / "execution.log"
    state_dir = tmp_path / "state"
    events = Reader(settings, order_events.TOPIC)
    earlier, crashed = routed("AAPL", Side.BUY, 3), routed("MSFT", Side.BUY, 2)
    process = spawn(
        settings,
        sim,
        state_dir,
        log,
        IBSTREAM_EXECUTION_CRASH_AT="after_place",
        IBSTREAM_EXECUTION_CRASH_ORDER=crashed.order_id,
    )
    send(settings, earlier)
    events.wait(lambda es: any(e.order_id == earlier.order_id and e.status is OrderStatus.FILLED for e in es), 30)
    send(settings, crashed)
    assert process.wait(30) == -signal.SIGKILL, log.read_text()[-3000:]
    assert len([o for o in sim.orders() if o.order_ref == crashed.order_id]) == 1
    journals = list((state_dir / "execution").glob("client-*.jsonl"))
    assert journals, "the crashed executor left no journal"
    for journal in journals:
        journal.unlink()

    final = spawn(settings, sim, state_dir, log)
    try:
        events.wait(lambda es: any(e.order_id == crashed.order_id and e.status is OrderStatus.FILLED for e in es), 30)
        fresh = routed("AAPL", Side.SELL, 3)  # after recovery, fresh orders flow again
        send(settings, fresh)
        events.wait(lambda es: any(e.order_id == fresh.order_id and e.status is OrderStatus.FILLED for e in es), 30)
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(30) == 0, log.read_text()[-3000:]
        events.close()
    text = log.read_text()
    assert "execution journal lost" in text
    assert "order already at IB" in text
    for order in (earlier, crashed, fresh):
        assert len([o for o in sim.orders() if o.order_ref == order.order_id]) == 1, order.order_id
    ids = [o.order_id for o in sim.orders()]
    assert len(ids) == len(set(ids)) == 3
