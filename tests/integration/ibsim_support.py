"""Shared helpers for the ibsim socket tests: simulator factory and an ibapi recording client.

Kept in a ``test_ibsim_*`` module (not a conftest) so the ibsim tests own their fixtures.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order_cancel import OrderCancel
from ibapi.wrapper import EWrapper

from ibsim import SimConfig, Simulator
from ibsim.config import EXCHANGE_TZ

#: A Monday 10:00 New York: the market is open and an hour of history exists.
MONDAY_10AM = dt.datetime(2025, 1, 6, 10, 0, tzinfo=EXCHANGE_TZ)

CALLBACKS = (
    "nextValidId",
    "managedAccounts",
    "currentTime",
    "contractDetails",
    "contractDetailsEnd",
    "tickPrice",
    "tickSize",
    "tickString",
    "tickGeneric",
    "tickSnapshotEnd",
    "marketDataType",
    "realtimeBar",
    "historicalData",
    "historicalDataEnd",
    "historicalDataUpdate",
    "headTimestamp",
    "familyCodes",
    "mktDepthExchanges",
    "newsProviders",
    "softDollarTiers",
    "openOrder",
    "openOrderEnd",
    "completedOrder",
    "completedOrdersEnd",
    "orderStatus",
    "execDetails",
    "execDetailsEnd",
    "position",
    "positionEnd",
    "accountSummary",
    "accountSummaryEnd",
    "updateAccountValue",
    "updatePortfolio",
    "updateAccountTime",
    "accountDownloadEnd",
    "pnl",
    "pnlSingle",
    "connectionClosed",
)


class Recorder(EWrapper, EClient):  # type: ignore[misc]
    """Official ibapi 10.x client that records every callback as ``(name, *args)``.

    Two callbacks are recorded in the shape the tests have always read (9.81's): ``error`` without 10.x's errorTime
    and advancedOrderRejectJson, and 10.x's ``commissionAndFeesReport`` as ``commissionReport``.
    """

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.events: list[tuple[Any, ...]] = []
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def record(self, name: str, *args: Any) -> None:
        with self.cond:
            self.events.append((name, *args))
            self.cond.notify_all()

    def error(
        self, reqId: int, errorTime: int, errorCode: int, errorString: str, advancedOrderRejectJson: str = ""
    ) -> None:
        self.record("error", reqId, errorCode, errorString)

    def commissionAndFeesReport(self, commissionAndFeesReport: Any) -> None:
        self.record("commissionReport", commissionAndFeesReport)

    def cancelOrder(self, orderId: int, orderCancel: OrderCancel | None = None) -> None:
        """10.x's cancelOrder takes an OrderCancel (manual cancel time, ...); the tests cancel plainly."""
        EClient.cancelOrder(self, orderId, orderCancel or OrderCancel())

    def of(self, name: str, req_id: int | None = None) -> list[tuple[Any, ...]]:
        with self.cond:
            return [e for e in self.events if e[0] == name and (req_id is None or e[1] == req_id)]

    def errors(self, code: int | None = None) -> list[tuple[Any, ...]]:
        return [e for e in self.of("error") if code is None or e[2] == code]

    def wait_for(self, pred: Callable[[], Any], timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; last events: {self.events[-8:]}")
                self.cond.wait(min(left, 0.05))

    def wait_event(
        self, name: str, req_id: int | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[tuple[Any, ...]]:
        return list(self.wait_for(lambda: (lambda r: r if len(r) >= count else None)(self.of(name, req_id)), timeout))

    def start(self, port: int, client_id: int) -> Recorder:
        self.connect("127.0.0.1", port, client_id)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.isConnected():
            self.disconnect()
        if self.thread is not None:
            self.thread.join(5)


def _make_recorder_method(name: str) -> Callable[..., None]:
    def method(self: Recorder, *args: Any) -> None:
        self.record(name, *args)

    method.__name__ = name
    return method


for _name in CALLBACKS:
    setattr(Recorder, _name, _make_recorder_method(_name))


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Simulator]]:
    """Start simulators (accelerated clock, OS-chosen ports); all are stopped at teardown."""
    sims: list[Simulator] = []

    def make(**overrides: Any) -> Simulator:
        cfg = replace(
            SimConfig(port=0, control_port=0, speed=60.0, start_time=MONDAY_10AM, tick_interval=0.05), **overrides
        )
        sim = Simulator(cfg).start()
        sims.append(sim)
        return sim

    yield make
    for s in sims:
        s.stop()


@pytest.fixture
def ibapi_factory() -> Iterator[Callable[[Simulator, int], Recorder]]:
    """Connected ibapi clients (ready: nextValidId received); disconnected at teardown."""
    clients: list[Recorder] = []

    def make(sim: Simulator, client_id: int) -> Recorder:
        r = Recorder().start(sim.port, client_id)
        clients.append(r)
        r.wait_event("nextValidId")
        return r

    yield make
    for c in clients:
        c.stop()
