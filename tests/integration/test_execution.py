"""Execution consumer, in process: ibsim (real TWS sockets) + the real Kafka broker.

Every test reads its outcome from the topics (read_committed) and checks ibsim's order book as ground truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consumers.execution import build
from consumers.execution.service import Executor, State
from ibsim import SimConfig, Simulator
from ibstream.config import Settings, load_settings
from ibstream.contracts import alerts, executions, order_events
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus, OrderType, Side
from tests.integration.test_execution_support import MONDAY_10AM, Reader, kill_switch, routed, send, wait_for

pytestmark = pytest.mark.integration


@dataclass
class Running:
    sim: Simulator
    executor: Executor
    settings: Settings
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "executor did not stop"
        self.executor.journal.close()
        if self.errors:
            raise self.errors[0]

    def ib_orders(self, order_id: str) -> list[Any]:
        return [o for o in self.sim.orders() if o.order_ref == order_id]


@pytest.fixture
def run_executor(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(sim_overrides: dict[str, Any] | None = None, *, ready: bool = True, **overrides: Any) -> Running:
        sim_config = {"port": 0, "control_port": None, "start_time": MONDAY_10AM, "speed": 60.0, "seed": 7,
                      **(sim_overrides or {})}  # fmt: skip
        sim = Simulator(SimConfig(**sim_config)).start()
        values: dict[str, Any] = {
            **settings.model_dump(), "ib_port": sim.port, "state_dir": tmp_path, "ib_reconnect_base_seconds": 0.2,
            "ib_reconnect_cap_seconds": 0.5, "ib_connect_timeout_seconds": 3.0, **overrides,
        }  # fmt: skip
        executor = build(load_settings(**values))
        executor.journal.open()
        stop = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                executor.run(stop)
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=target, name="executor", daemon=True)
        thread.start()
        running = Running(sim, executor, executor.settings, stop, thread, errors)
        started.append(running)
        if ready:
            wait_for(lambda: executor.state is State.READY or bool(errors), timeout=20)
            assert not errors, errors
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(30)
        running.executor.journal.close()
        running.sim.stop()


def statuses(events: list[Any], order_id: str, leg: OrderLeg = OrderLeg.PARENT) -> list[OrderStatus]:
    return [e.status for e in events if e.order_id == order_id and e.leg is leg]


def test_market_order_is_placed_once_and_filled(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    order = routed("AAPL", Side.BUY, 25)
    events = Reader(running.settings, order_events.TOPIC)
    fills = Reader(running.settings, executions.TOPIC)
    send(running.settings, order)

    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, order.order_id))
    assert statuses(recorded, order.order_id) == [
        OrderStatus.PENDING_SUBMIT, OrderStatus.ACKNOWLEDGED, OrderStatus.FILLED
    ]  # fmt: skip
    filled = [e for e in recorded if e.status is OrderStatus.FILLED][0]
    assert filled.filled_quantity == 25 and filled.remaining_quantity == 0
    assert filled.broker_status == "Filled" and filled.source is ExecutionSource.LIVE
    assert len({e.event_id for e in recorded}) == len(recorded)

    (execution,) = fills.wait(lambda xs: len(xs) >= 1)
    at_ib = running.ib_orders(order.order_id)
    assert len(at_ib) == 1 and at_ib[0].status == "Filled"
    (ib_exec,) = at_ib[0].executions
    assert execution.exec_id == ib_exec.exec_id and execution.order_id == order.order_id
    assert execution.side is Side.BUY and execution.quantity == 25 and execution.price == ib_exec.price
    assert execution.commission == pytest.approx(ib_exec.commission)
    assert execution.ib_order_id == at_ib[0].order_id == filled.ib_order_id
    assert at_ib[0].request.account == "DU1234567" and at_ib[0].request.order_type == "MKT"
    events.close()
    fills.close()
