# ruff: noqa: F811  (pytest fixtures imported from ibsim_support are redefined as arguments)
"""One test per fault kind (and the robustness corners): what a client actually sees."""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from ibapi.execution import ExecutionFilter
from ibapi.order import Order

from ibsim import Simulator
from ibsim.pacing import PACING_TEXT
from ibsim.wire import FrameDecoder, encode_message
from tests.integration.ibsim_support import (  # noqa: F401  (fixtures)
    Recorder,
    ibapi_factory,
    sim_factory,
    stock,
)

pytestmark = pytest.mark.integration

SimF = Callable[..., Simulator]
ClientF = Callable[[Simulator, int], Recorder]


def mkt(action: str, qty: float, ref: str = "") -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.orderRef = action, qty, "MKT", ref
    return o


def lmt(action: str, qty: float, price: float, ref: str = "") -> Order:
    o = mkt(action, qty, ref)
    o.orderType, o.lmtPrice = "LMT", price
    return o


class Raw:
    """A hand-rolled protocol client for the corners a real client never produces."""

    def __init__(self, port: int, versions: bytes = b"v100..157") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.dec = FrameDecoder()
        self.frames: list[list[str]] = []
        self.sock.sendall(b"API\0" + struct.pack("!I", len(versions)) + versions)

    def send(self, *fields: Any) -> None:
        self.sock.sendall(encode_message(list(fields)))

    def read_until(self, pred: Callable[[list[str]], bool], timeout: float = 5) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            for f in self.frames:
                if pred(f):
                    return f
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching frame in {self.frames[-5:]}")
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.frames += [p.decode().split("\0")[:-1] for p in self.dec.feed(data)]

    def closed(self, timeout: float = 3) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.frames += [p.decode().split("\0")[:-1] for p in self.dec.feed(data)]
        except (ConnectionResetError, OSError):
            return True


def start_raw(sim: Simulator, client_id: int) -> Raw:
    r = Raw(sim.port)
    r.read_until(lambda f: len(f) == 2)
    r.send(71, 2, client_id, "")
    r.read_until(lambda f: f[0] == "9")
    return r


def barrier(c: Recorder) -> None:
    """Return once the client has recorded everything the gateway sent before now.

    The gateway answers a session's requests in order on one socket, so its currentTime reply comes after every frame
    it had already sent; a sleep instead leaves frames in the socket when the machine is loaded.
    """
    seen = len(c.of("currentTime"))
    c.reqCurrentTime()
    c.wait_event("currentTime", count=seen + 1)


def when_listening(sim: Simulator, timeout: float = 5.0) -> None:
    """Wait until the gateway accepts connections again (after a restart or a refusal window)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", sim.port), timeout=1).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_drop_connections_fills_while_disconnected_and_backfill(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 1)
    oid = c.of("nextValidId")[0][1]
    c.reqRealTimeBars(1, stock("AAPL"), 5, "TRADES", True, [])
    c.wait_event("realtimeBar", 1, count=2)
    # a resting sell limit just above the market: it will fill while we are away
    q = sim.quote("AAPL")
    c.placeOrder(oid, stock("AAPL"), lmt("SELL", 10, round(q.last - 0.05, 2), ref="while-away"))
    c.placeOrder(oid + 1, stock("AAPL"), lmt("BUY", 10, round(q.bid - 100, 2), ref="never"))
    # both orders acknowledged before the drop: the first alone can send two openOrders (ack, fill), and counting
    # messages let the drop race the second placeOrder (then never read by the gateway)
    c.wait_for(lambda: {e[3].orderRef for e in c.of("openOrder")} >= {"while-away", "never"})
    assert sim.drop_connections() == 1
    c.wait_event("connectionClosed")
    last_seen = c.of("realtimeBar", 1)[-1][2]
    time.sleep(0.8)  # about 48 simulated seconds of market without us
    c2 = ibapi_factory(sim, 1)
    # the order filled at the "broker" while the client was gone; reqExecutions recovers it
    c2.reqExecutions(3, ExecutionFilter())
    c2.wait_event("execDetailsEnd", 3)
    got = [(e[3].execId, e[3].orderRef) for e in c2.of("execDetails", 3)]
    assert got == [(e.exec_id, "while-away") for e in sim.executions()] and got
    assert {e[1].execId for e in c2.of("commissionReport")} == {g[0] for g in got}
    c2.reqOpenOrders()
    c2.wait_event("openOrderEnd")
    assert [e[3].orderRef for e in c2.of("openOrder")] == ["never"]
    # backfill: historical 5-second bars after the last bar seen are exactly the generated ones
    c2.reqHistoricalData(4, stock("AAPL"), "", "120 S", "5 secs", "TRADES", 1, 2, False, [])
    c2.wait_event("historicalDataEnd", 4)
    backfill = [e[2] for e in c2.of("historicalData", 4) if int(e[2].date) > last_seen]
    truth = [b for b in sim.ground_truth_bars("AAPL", last_seen + 5) if b.time <= int(backfill[-1].date)]
    assert [(int(b.date), b.open, b.high, b.low, b.close, b.volume) for b in backfill] == [
        (b.time, b.open, b.high, b.low, b.close, b.volume) for b in truth
    ]
    assert len(backfill) >= 8


def test_refuse_connections_for_n_seconds(sim_factory: SimF) -> None:
    sim = sim_factory()
    sim.refuse_connections(0.6)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=2)
    when_listening(sim)
    r = start_raw(sim, 5)
    # nextValidId arrived (farm notices may follow it in the same read, so not necessarily last)
    assert any(frame[0] == "9" for frame in r.frames)


def test_connectivity_1100_then_1102_keeps_subscriptions(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 2)
    c.reqMktData(1, stock("MSFT"), "", False, False, [])
    c.wait_event("tickString", 1)
    sim.connectivity_loss(0.5, restored_code=1102)
    c.wait_for(lambda: c.errors(1102))
    # in the order received: no tick between 1100 and 1102 (counting after the wait races the resumed ticks)
    kinds = [e[0] if e[0] != "error" else e[2] for e in c.events if e[0] == "tickPrice" or e[0] == "error"]
    outage = kinds[kinds.index(1100) : kinds.index(1102)]
    assert "tickPrice" not in outage, "market data flowed during the outage"
    during = len(c.of("tickPrice", 1))
    c.wait_for(lambda: len(c.of("tickPrice", 1)) > during + 2)
    codes = [e[2] for e in c.errors() if e[2] in (1100, 1101, 1102)]
    assert codes == [1100, 1102]


def test_connectivity_1101_drops_subscriptions(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 3)
    c.reqMktData(1, stock("MSFT"), "", False, False, [])
    c.wait_event("tickString", 1)
    sim.connectivity_loss(0.2, restored_code=1101)
    c.wait_for(lambda: c.errors(1101))
    n = len(c.of("tickPrice", 1))
    time.sleep(0.4)
    assert len(c.of("tickPrice", 1)) == n, "1101 means data lost: the client must resubscribe"
    c.reqMktData(2, stock("MSFT"), "", False, False, [])
    c.wait_event("tickPrice", 2)


def test_stale_feed_stall_and_resume(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 4)
    c.reqMktData(1, stock("AAPL"), "", False, False, [])
    c.reqMktData(2, stock("SPY"), "", False, False, [])
    c.reqRealTimeBars(3, stock("AAPL"), 5, "TRADES", True, [])
    c.wait_event("realtimeBar", 3)
    sim.stall("AAPL")
    barrier(c)
    a, s, b = len(c.of("tickPrice", 1)), len(c.of("tickPrice", 2)), len(c.of("realtimeBar", 3))
    time.sleep(0.6)
    assert len(c.of("tickPrice", 1)) == a and len(c.of("realtimeBar", 3)) == b
    assert len(c.of("tickPrice", 2)) > s + 3, "other symbols keep streaming"
    sim.resume("AAPL")
    c.wait_for(lambda: len(c.of("realtimeBar", 3)) > b + 1)
    times = [e[2] for e in c.of("realtimeBar", 3)]
    assert max(y - x for x, y in itertools.pairwise(times)) >= 30  # a visible gap to backfill
    assert len(c.of("tickPrice", 1)) > a


def test_reject_next_order(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 5)
    oid = c.of("nextValidId")[0][1]
    sim.reject_next_order(201, "Order rejected - reason:Insufficient buying power")
    c.placeOrder(oid, stock("AAPL"), mkt("BUY", 1, "rej"))
    c.placeOrder(oid + 1, stock("AAPL"), mkt("BUY", 1, "ok"))
    c.wait_for(lambda: c.errors(201))
    assert c.errors(201)[0][1:] == (oid, 201, "Order rejected - reason:Insufficient buying power")
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 1 and e[2] == "Filled"])
    book = {o.order_ref: o for o in sim.orders()}
    assert (book["rej"].status, book["rej"].reject_code, book["rej"].filled) == ("Inactive", 201, 0)


def test_delayed_acks_and_fills(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 6)
    oid = c.of("nextValidId")[0][1]
    sim.set_delays(ack_seconds=0.5)
    t0 = time.monotonic()
    c.placeOrder(oid, stock("AAPL"), mkt("BUY", 1))
    c.wait_event("openOrder")
    assert time.monotonic() - t0 >= 0.45
    sim.set_delays(fill_seconds=0.6)
    t1 = time.monotonic()
    c.placeOrder(oid + 1, stock("AAPL"), mkt("BUY", 1))
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 1 and e[2] == "Submitted"])
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 1 and e[2] == "Filled"])
    assert time.monotonic() - t1 >= 0.55


def test_trading_halt_accepts_orders_and_trades_nothing_until_it_ends(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 13)
    oid = c.of("nextValidId")[0][1]
    sim.halt_trading(True)
    c.placeOrder(oid, stock("AAPL"), mkt("BUY", 5, "halted"))
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid and e[2] == "Submitted"])
    time.sleep(0.5)  # half a simulated minute of market: a marketable order would have filled at once
    barrier(c)
    assert c.of("execDetails") == [] and [o.filled for o in sim.orders()] == [0]
    sim.halt_trading(False)
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid and e[2] == "Filled"])
    [fill] = sim.executions()
    assert fill.time >= sim.orders()[0].created_at + 20  # traded after the halt, never back-dated into it


def test_historical_pacing_violations_162(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 7)
    args = ("", "60 S", "5 secs", "TRADES", 1, 1, False, [])
    c.reqHistoricalData(1, stock("AAPL"), *args)
    c.wait_event("historicalDataEnd", 1)
    c.reqHistoricalData(2, stock("AAPL"), *args)  # identical within 15 s
    c.wait_for(lambda: c.errors(162))
    assert c.errors(162)[0][1:] == (2, 162, PACING_TEXT)
    for i, dur in enumerate(("120 S", "180 S", "240 S", "300 S", "360 S")):
        c.reqHistoricalData(10 + i, stock("AAPL"), "", dur, "5 secs", "TRADES", 1, 1, False, [])
    c.wait_for(lambda: len(c.errors(162)) >= 2)
    # 1 earlier + 4 more pass; the fifth distinct one is the sixth for AAPL within 2 s
    assert [e[1] for e in c.errors(162)] == [2, 14]
    assert len(c.of("historicalDataEnd")) == 5
    c.reqHistoricalData(20, stock("MSFT"), *args)  # other contract unaffected
    c.wait_event("historicalDataEnd", 20)


def test_gateway_restart_rolls_next_valid_id_back(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(first_order_id=38_095)
    c = ibapi_factory(sim, 8)
    oid = c.of("nextValidId")[0][1]
    for k in range(8):
        c.placeOrder(oid + k, stock("AAPL"), mkt("BUY", 1, f"pre-{k}"))
    c.wait_for(lambda: len([e for e in c.of("orderStatus") if e[2] == "Filled"]) == 8)
    assert sim.next_order_id == 38_103
    sim.restart_gateway(downtime_seconds=0.3, rollback=4)
    c.wait_event("connectionClosed")
    when_listening(sim)
    c2 = ibapi_factory(sim, 8)
    rolled = c2.of("nextValidId")[0][1]
    assert rolled == 38_099  # the LEAN-IB #242 numbers
    c2.placeOrder(rolled, stock("AAPL"), mkt("BUY", 1, "reused"))
    c2.wait_for(lambda: c2.errors(103))
    assert c2.errors(103)[0][1] == rolled
    assert len([o for o in sim.orders() if o.status == "Filled"]) == 8  # the broker kept everything


def _held_bracket(c: Recorder, parent_id: int, ref: str) -> None:
    """A bracket whose parent and stop-loss are held untransmitted; its last leg transmits."""
    parent = lmt("BUY", 10, 1.0, ref)
    parent.transmit = False
    stop = mkt("SELL", 10, ref)
    stop.orderType, stop.auxPrice, stop.parentId, stop.transmit = "STP", 0.5, parent_id, False
    take = lmt("SELL", 10, 9_999.0, ref)
    take.parentId = parent_id
    for offset, order in enumerate((parent, stop, take)):
        c.placeOrder(parent_id + offset, stock("AAPL"), order)


def test_a_lost_transmit_leaves_held_legs_that_cancel_like_any_order(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 11)
    oid = c.of("nextValidId")[0][1]
    sim.lose_next_transmit()
    _held_bracket(c, oid, "held")
    c.wait_event("connectionClosed")
    assert [(o.order_id, o.status) for o in sim.orders()] == [(oid, "PendingSubmit"), (oid + 1, "PendingSubmit")]

    again = ibapi_factory(sim, 11)
    again.reqAllOpenOrders()
    again.wait_event("openOrderEnd")
    assert again.of("openOrder") == []  # IB does not list untransmitted orders
    again.cancelOrder(oid)
    again.wait_for(lambda: len(again.errors(202)) == 2)
    assert [e[1] for e in again.errors(202)] == [oid, oid + 1]  # the parent's cancel takes its child
    assert [(e[1], e[2]) for e in again.of("orderStatus")] == [(oid, "Cancelled"), (oid + 1, "Cancelled")]
    again.cancelOrder(oid + 1)
    again.cancelOrder(oid + 2)
    again.wait_for(lambda: again.errors(10148) and again.errors(10147))
    assert (again.errors(10148)[0][1], again.errors(10147)[0][1]) == (oid + 1, oid + 2)
    assert [o.status for o in sim.orders()] == ["Cancelled", "Cancelled"]


def test_a_gateway_restart_loses_untransmitted_orders(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 12)
    oid = c.of("nextValidId")[0][1]
    c.placeOrder(oid, stock("AAPL"), lmt("BUY", 1, 1.0, "working"))
    c.wait_for(lambda: c.of("orderStatus"))
    sim.lose_next_transmit(restart_seconds=0.3)
    _held_bracket(c, oid + 1, "held")
    c.wait_event("connectionClosed")
    # Only the gateway held them: IB keeps the transmitted order. The held legs' ids still count, not the lost one's.
    assert [(o.order_ref, o.status) for o in sim.orders()] == [("working", "Submitted")]
    assert sim.next_order_id == oid + 3
    when_listening(sim)
    again = ibapi_factory(sim, 12)
    again.cancelOrder(oid + 1)
    again.wait_for(lambda: again.errors(10147))
    assert again.errors(10147)[0][1] == oid + 1


def test_market_data_farm_broken_and_ok(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 9)
    c.reqMktData(1, stock("AAPL"), "", False, False, [])
    c.wait_event("tickString", 1)
    sim.market_data_farm(ok=False)
    c.wait_for(lambda: c.errors(2103))
    time.sleep(0.1)
    n = len(c.of("tickPrice", 1))
    time.sleep(0.3)
    assert len(c.of("tickPrice", 1)) == n
    sim.market_data_farm(ok=True)
    c.wait_for(lambda: len([e for e in c.errors(2104)]) >= 2)
    c.wait_for(lambda: len(c.of("tickPrice", 1)) > n)


def test_duplicate_client_id_gets_326_and_is_closed(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    first = ibapi_factory(sim, 10)
    dup = Raw(sim.port)
    dup.read_until(lambda f: len(f) == 2)
    dup.send(71, 2, 10, "")
    err = dup.read_until(lambda f: f[0] == "4")
    assert err[3] == "326"
    assert dup.closed()
    first.reqCurrentTime()
    first.wait_event("currentTime")


def test_malformed_unknown_and_oversize_never_crash(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(max_frame_bytes=4096)
    witness = ibapi_factory(sim, 11)
    r = start_raw(sim, 12)

    def err(code: str) -> Callable[[list[str]], bool]:
        return lambda f: len(f) == 5 and f[0] == "4" and f[3] == code

    r.send("abc", 1)  # non-numeric message id
    assert r.read_until(err("320"))[2] == "-1"
    r.send(4242, 1)  # unknown message id
    assert "4242" in r.read_until(err("321"))[4]
    r.send(20, 77, "x", "AAPL")  # non-numeric conId in a historical request
    assert r.read_until(lambda f: err("320")(f) and f[2] == "77")
    r.send(49, 1)
    assert r.read_until(lambda f: f[0] == "49")  # the session still works
    r.sock.sendall(struct.pack("!I", 1 << 30) + b"junk")  # oversize frame: dropped
    assert r.closed()
    bad = socket.create_connection(("127.0.0.1", sim.port))
    bad.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not the API prefix
    bad.settimeout(3)
    assert bad.recv(100) == b""
    old = Raw(sim.port, b"v20..30")  # no common version
    assert old.closed()
    witness.reqCurrentTime()
    witness.wait_event("currentTime")


def test_requests_ibsim_does_not_implement_fail_at_once_on_their_own_id(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 14)
    c.reqMktDepth(77, stock("AAPL"), 5, False, [])
    c.reqFundamentalData(78, stock("AAPL"), "ReportSnapshot", [])
    c.reqHistogramData(79, stock("AAPL"), True, "1 week")
    c.wait_for(lambda: {e[1] for e in c.errors(321)} >= {77, 78, 79})
    assert all("ibsim does not implement" in e[3] for e in c.errors(321))
    # lists this gateway has nothing in are answered empty, as a gateway with none answers them
    c.reqFamilyCodes()
    c.reqMktDepthExchanges()
    c.reqNewsProviders()
    c.reqSoftDollarTiers(80)
    c.wait_for(lambda: all(c.of(name) for name in ("familyCodes", "mktDepthExchanges", "newsProviders")))
    assert c.wait_event("softDollarTiers", 80)[0][2] == []
    assert [c.of(name)[0][1] for name in ("familyCodes", "mktDepthExchanges", "newsProviders")] == [[], [], []]
    assert not [e for e in c.errors() if e[1] == -1 and e[2] == 321]


def test_32_concurrent_clients_and_the_33rd(sim_factory: SimF) -> None:
    sim = sim_factory()
    clients = [start_raw(sim, i) for i in range(32)]
    for i, c in enumerate(clients):
        c.send(49, 1)
        assert c.read_until(lambda f: f[0] == "49")
        assert c.frames[1][0] == "15" and tuple(c.frames[2][:2]) == ("9", "1"), i
    assert sim.connected_client_ids() == list(range(32))
    extra = Raw(sim.port)
    extra.read_until(lambda f: len(f) == 2)
    extra.send(71, 2, 99, "")
    assert extra.read_until(lambda f: f[0] == "4")[3] == "502"
    assert extra.closed()
    errors: list[BaseException] = []

    def hammer(c: Raw) -> None:
        try:
            for _ in range(20):
                c.send(49, 1)
            c.read_until(lambda f: sum(1 for x in c.frames if x[0] == "49") >= 21)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors


def _http(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_control_endpoint_routes(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    port = sim.control_port
    assert port
    assert _http(port, "GET", "/health") == (200, {"ok": True})
    status, state = _http(port, "GET", "/state")
    assert status == 200 and state["market_open"] and state["account"] == sim.account
    status, bars = _http(port, "GET", "/bars/AAPL?start=1736175000")
    # the truth over the same bars: the clock runs on between the request and this call (60x: a bar per 83 ms)
    truth = sim.ground_truth_bars("AAPL", 1736175000, bars[-1]["time"] + 5)
    assert (
        status == 200
        and len(bars) > 10
        and bars
        == [
            {
                "time": b.time,
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
                "wap": b.wap,
                "count": b.count,
            }
            for b in truth
        ]
    )
    c = ibapi_factory(sim, 13)
    assert _http(port, "POST", "/faults/reject_next_order", {"code": 201, "message": "Order rejected - reason:x"}) == (
        200,
        {"ok": True},
    )
    c.placeOrder(c.of("nextValidId")[0][1], stock("AAPL"), mkt("BUY", 1, "via-http"))
    c.wait_for(lambda: c.errors(201))
    status, orders = _http(port, "GET", "/orders")
    assert status == 200 and orders[0]["order_ref"] == "via-http" and orders[0]["status"] == "Inactive"
    assert _http(port, "POST", "/faults/stall", {"symbol": "SPY"})[0] == 200
    assert _http(port, "GET", "/state")[1]["faults"]["stalled"] == ["SPY"]
    assert _http(port, "POST", "/faults/stall", {})[0] == 400
    assert _http(port, "GET", "/nope")[0] == 404
    assert _http(port, "GET", "/bars/NOPE")[0] == 404
    assert _http(port, "POST", "/faults/connectivity", {"outage_seconds": 0.1, "restored_code": 1101})[0] == 200
    c.wait_for(lambda: c.errors(1101))
    assert _http(port, "POST", "/faults/drop_connections", {}) == (200, {"dropped": 1})


def test_a_held_clock_starts_the_session_when_released(sim_factory: SimF) -> None:
    sim = sim_factory(hold_clock=True)
    time.sleep(0.3)  # 18 simulated seconds, had the clock run
    status, state = _http(sim.control_port or 0, "GET", "/state")
    assert status == 200 and state["clock_held"] and state["sim_epoch"] == sim.config.resolved_start().timestamp()
    assert _http(sim.control_port or 0, "POST", "/clock/release", {}) == (200, {"ok": True})
    time.sleep(0.2)
    assert not sim.clock.held and sim.clock.now() > sim.config.resolved_start().timestamp() + 5


def test_a_price_between_ticks_is_refused_with_110(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 15)
    oid = c.of("nextValidId")[0][1]
    c.placeOrder(oid, stock("AAPL"), lmt("BUY", 1, 150.123, "between-ticks"))
    c.placeOrder(oid + 1, stock("AAPL"), lmt("BUY", 1, 150.12, "on-a-tick"))
    c.wait_for(lambda: c.errors(110) and [e for e in c.of("openOrder") if e[1] == oid + 1])
    assert [e[1] for e in c.errors(110)] == [oid]
    assert {o.order_ref: o.status for o in sim.orders()} == {"between-ticks": "Inactive", "on-a-tick": "Submitted"}


def test_a_farm_break_that_kills_subscriptions_leaves_data_dead_until_asked_again(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 13)
    c.reqMktData(1, stock("AAPL"), "", False, False, [])
    c.reqRealTimeBars(2, stock("AAPL"), 5, "TRADES", True, [])
    c.wait_for(lambda: c.of("tickString", 1) and c.of("realtimeBar", 2))
    sim.market_data_farm(ok=False, drop_subscriptions=True)
    c.wait_for(lambda: c.errors(2103))
    assert sim.subscriptions(13) == {"mkt": [], "rtb": []}
    sim.market_data_farm(ok=True)
    c.wait_for(lambda: len(c.errors(2104)) >= 2)
    ticks, bars = len(c.of("tickPrice", 1)), len(c.of("realtimeBar", 2))
    time.sleep(0.5)  # 30 simulated seconds: six bars, had anything survived
    assert (len(c.of("tickPrice", 1)), len(c.of("realtimeBar", 2))) == (ticks, bars)
    c.reqMktData(3, stock("AAPL"), "", False, False, [])
    c.wait_event("tickString", 3)


def test_hmds_farm_break_kills_real_time_bars_and_2106_does_not_revive_them(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 14)
    c.reqMktData(1, stock("MSFT"), "", False, False, [])
    c.reqRealTimeBars(2, stock("MSFT"), 5, "TRADES", True, [])
    c.wait_for(lambda: c.of("realtimeBar", 2))
    sim.hmds_farm(ok=False)
    c.wait_for(lambda: c.errors(2105))
    sim.hmds_farm(ok=True)
    c.wait_for(lambda: len(c.errors(2106)) >= 2)
    bars, ticks = len(c.of("realtimeBar", 2)), len(c.of("tickPrice", 1))
    time.sleep(0.5)
    assert len(c.of("realtimeBar", 2)) == bars and len(c.of("tickPrice", 1)) > ticks  # quotes were never affected
    c.reqRealTimeBars(3, stock("MSFT"), 5, "TRADES", True, [])
    c.wait_event("realtimeBar", 3)


def test_a_competing_live_session_ends_market_data_with_10197_until_it_is_over(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 15)
    c.reqMktData(1, stock("SPY"), "", False, False, [])
    c.reqRealTimeBars(2, stock("SPY"), 5, "TRADES", True, [])
    c.wait_for(lambda: c.of("tickString", 1) and c.of("realtimeBar", 2))
    sim.competing_session(True)
    c.wait_for(lambda: len(c.errors(10197)) == 2)
    assert sorted(e[1] for e in c.errors(10197)) == [1, 2]
    assert c.errors(10197)[0][3] == "No market data during competing live session"
    c.reqMktData(3, stock("SPY"), "", False, False, [])
    c.wait_for(lambda: [e for e in c.errors(10197) if e[1] == 3])
    assert sim.subscriptions(15) == {"mkt": [], "rtb": []}
    sim.competing_session(False)
    c.reqMktData(4, stock("SPY"), "", False, False, [])
    c.wait_event("tickString", 4)
    assert not [e for e in c.errors(10197) if e[1] == 4]


def test_a_1102_that_lost_the_data_anyway(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 16)
    c.reqMktData(1, stock("AAPL"), "", False, False, [])
    c.wait_event("tickString", 1)
    sim.connectivity_loss(0.2, restored_code=1102, keep_subscriptions=False)
    c.wait_for(lambda: c.errors(1102))
    assert sim.subscriptions(16)["mkt"] == []


def test_the_daily_restart_drops_everyone_at_its_time_and_lets_them_back(sim_factory: SimF) -> None:
    import datetime as dt

    from ibsim.config import EXCHANGE_TZ

    before = dt.datetime(2025, 1, 6, 23, 44, 45, tzinfo=EXCHANGE_TZ)  # 15 simulated seconds: 0.25 s at 60x
    sim = sim_factory(start_time=before, daily_restart_time="23:45", daily_restart_downtime=0.5)
    c = Recorder().start(sim.port, 17)
    try:
        c.wait_event("nextValidId")
        assert sim.state()["faults"]["next_daily_restart"] == before.timestamp() + 15
        c.wait_event("connectionClosed", timeout=5)
        assert sim.now() >= before.timestamp() + 15
        # the next one is tomorrow's
        assert sim.state()["faults"]["next_daily_restart"] == before.timestamp() + 15 + 86_400
        time.sleep(0.7)
        again = Recorder().start(sim.port, 17)
        again.wait_event("nextValidId")
        again.stop()
    finally:
        c.stop()
