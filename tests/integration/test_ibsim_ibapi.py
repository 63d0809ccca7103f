# ruff: noqa: F811  (pytest fixtures imported from ibsim_support are redefined as arguments)
"""Conformance over real sockets: IB's official 10.x client (nautilus-ibapi) against ibsim.

Every check compares what the client decoded with what the simulator says it sent or generated
(its message record and ground-truth series), not with hard-coded numbers.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.tag_value import TagValue

from ibsim import Simulator
from ibsim.config import EXCHANGE_TZ
from ibsim.market import aggregate
from ibstream.sim.order_types import adaptive_price
from tests.integration.ibsim_support import (  # noqa: F401  (fixtures)
    Recorder,
    ibapi_factory,
    sim_factory,
    stock,
)

pytestmark = pytest.mark.integration

SimF = Callable[..., Simulator]
ClientF = Callable[[Simulator, int], Recorder]


def order(
    action: str,
    qty: float,
    kind: str,
    lmt: float | None = None,
    aux: float | None = None,
    ref: str = "",
    transmit: bool = True,
    parent: int = 0,
) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.orderRef, o.transmit, o.parentId = (
        action,
        qty,
        kind,
        ref,
        transmit,
        parent,
    )
    if lmt is not None:
        o.lmtPrice = lmt
    if aux is not None:
        o.auxPrice = aux
    return o


def test_handshake_ids_accounts_time_and_farm_notices(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(accounts=("U7654321",), first_order_id=500)
    c = ibapi_factory(sim, 11)
    assert c.serverVersion() == 178  # IB's 10.x client asks v100..225; ibsim speaks up to 178
    assert c.of("managedAccounts") == [("managedAccounts", "U7654321")]
    assert c.of("nextValidId")[0][1] == 500
    c.wait_for(lambda: len(c.errors()) >= 3)
    assert [e[2] for e in c.errors()] == [2104, 2106, 2158]
    assert all(e[1] == -1 for e in c.errors())
    c.reqCurrentTime()
    (_, t) = c.wait_event("currentTime")[0]
    assert abs(t - sim.now()) < 5 * sim.clock.speed
    c.reqIds(-1)
    c.wait_event("nextValidId", count=2)
    assert c.of("nextValidId")[1][1] == sim.next_order_id == 500
    assert sim.connected_client_ids() == [11]


def test_contract_details_and_unknown_contract(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 1)
    c.reqContractDetails(7, stock("SPY"))
    c.wait_event("contractDetailsEnd", 7)
    [(_, _, cd)] = c.of("contractDetails", 7)
    inst = sim.config.instrument("SPY")
    assert inst is not None
    assert (cd.contract.conId, cd.contract.symbol, cd.contract.primaryExchange, cd.stockType, cd.longName) == (
        inst.con_id,
        "SPY",
        inst.primary_exchange,
        "ETF",
        inst.long_name,
    )
    assert cd.minTick == inst.min_tick and cd.timeZoneId == "US/Eastern"
    c.reqContractDetails(8, stock("NOPE"))
    c.wait_for(lambda: c.errors(200))
    assert c.errors(200)[0][1] == 8


def test_market_data_matches_record_and_ground_truth(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 2)
    c.reqMktData(3, stock("AAPL"), "", False, False, [])
    c.wait_event("tickString", 3, count=5)
    c.cancelMktData(3)
    time.sleep(0.3)  # let in-flight ticks land
    n_before = len(c.of("tickPrice", 3))
    time.sleep(0.3)
    assert len(c.of("tickPrice", 3)) == n_before, "ticks kept flowing after cancelMktData"
    sent = [r for r in sim.sent_messages(2, 1) if r[2] == "3"]
    got = [(e[2], e[3]) for e in c.of("tickPrice", 3)]
    assert got == [(int(r[3]), float(r[4])) for r in sent]
    # every LAST is the generated trade at the second given by LAST_TIMESTAMP
    lasts = [e[3] for e in c.of("tickPrice", 3) if e[2] == 4]
    stamps = [int(e[3]) for e in c.of("tickString", 3) if e[2] == 45]
    assert len(lasts) == len(stamps) >= 5
    for price, ts in zip(lasts, stamps, strict=True):
        q = sim.quote("AAPL", ts)
        assert price == q.last
    bids = [e[3] for e in c.of("tickPrice", 3) if e[2] == 1]
    asks = [e[3] for e in c.of("tickPrice", 3) if e[2] == 2]
    assert bids and asks and all(a > b for a, b in zip(asks, bids, strict=False))
    # the synthetic tickSize ibapi derives from tickPrice carries the sizes we sent
    assert any(e[2] == 0 for e in c.of("tickSize", 3)) and any(e[2] == 8 for e in c.of("tickSize", 3))


def test_delayed_market_data_10167_and_not_subscribed_354(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(live_data_entitled=False)
    c = ibapi_factory(sim, 4)
    c.reqMktData(1, stock("MSFT"), "", False, False, [])
    c.wait_for(lambda: c.errors(354))
    assert c.errors(354)[0][1] == 1 and not c.of("tickPrice", 1)
    c.reqMarketDataType(3)
    c.reqMktData(2, stock("MSFT"), "", False, False, [])
    c.wait_event("tickString", 2)
    assert c.errors(10167)[0][1] == 2
    assert c.of("marketDataType", 2) == [("marketDataType", 2, 3)]
    types = {e[2] for e in c.of("tickPrice", 2)}
    assert types <= {66, 67, 68, 75} and {66, 67, 68} <= types
    ts = int(next(e[3] for e in c.of("tickString", 2) if e[2] == 88))
    assert ts <= sim.now() - 890  # fifteen minutes behind
    last = next(e[3] for e in c.of("tickPrice", 2) if e[2] == 68)
    assert last == sim.quote("MSFT", ts).last


def test_realtime_bars_equal_ground_truth(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 5)
    c.reqRealTimeBars(9, stock("QQQ"), 5, "TRADES", True, [])
    got = c.wait_event("realtimeBar", 9, count=6, timeout=10)
    truth = {b.time: b for b in sim.ground_truth_bars("QQQ")}
    times = [e[2] for e in got]
    assert times == sorted(times) and all(b - a == 5 for a, b in itertools.pairwise(times))
    for _, _, t, o, h, low, close, vol, wap, count in got:
        b = truth[t]
        # 10.x decodes volume and WAP as Decimal: the text ibsim wrote, compared as the decimal the number spells
        assert (o, h, low, close, count) == (b.open, b.high, b.low, b.close, b.count)
        assert (vol, wap) == (Decimal(repr(b.volume)), Decimal(repr(b.wap)))


@pytest.mark.parametrize("fmt", [1, 2])
def test_historical_bars_equal_ground_truth(sim_factory: SimF, ibapi_factory: ClientF, fmt: int) -> None:
    sim = sim_factory(enforce_pacing=False)
    c = ibapi_factory(sim, 6)
    end = dt.datetime(2025, 1, 6, 9, 50, tzinfo=EXCHANGE_TZ)
    c.reqHistoricalData(
        1,
        stock("AAPL"),
        end.strftime("%Y%m%d %H:%M:%S") + " US/Eastern",
        "600 S",
        "5 secs",
        "TRADES",
        1,
        fmt,
        False,
        [],
    )
    c.reqHistoricalData(2, stock("AAPL"), "", "1 D", "1 min", "TRADES", 1, fmt, False, [])
    c.wait_event("historicalDataEnd", 1)
    c.wait_event("historicalDataEnd", 2)
    truth5 = sim.ground_truth_bars("AAPL", end.timestamp() - 600, end.timestamp())
    got5 = [e[2] for e in c.of("historicalData", 1)]
    assert len(got5) == len(truth5) == 120

    def date_of(t: int) -> str:
        return str(t) if fmt == 2 else dt.datetime.fromtimestamp(t, EXCHANGE_TZ).strftime("%Y%m%d  %H:%M:%S")

    assert [(b.date, b.open, b.high, b.low, b.close, b.volume, b.barCount) for b in got5] == [
        (date_of(b.time), b.open, b.high, b.low, b.close, b.volume, b.count) for b in truth5
    ]
    got1 = [e[2] for e in c.of("historicalData", 2)]
    session_open = int(dt.datetime(2025, 1, 6, 9, 30, tzinfo=EXCHANGE_TZ).timestamp())
    truth1 = aggregate(sim.ground_truth_bars("AAPL", session_open), 60)
    assert date_of(session_open) == got1[0].date
    assert [(b.open, b.close) for b in got1[:-1]] == [(b.open, b.close) for b in truth1[: len(got1) - 1]]


def test_history_of_a_half_day_ends_at_its_1300_close(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    # Monday after Thanksgiving; the Friday before (2026-11-27) closed at 13:00, the Thursday was a holiday.
    sim = sim_factory(enforce_pacing=False, start_time=dt.datetime(2026, 11, 30, 10, 0, tzinfo=EXCHANGE_TZ))
    c = ibapi_factory(sim, 6)
    c.reqHistoricalData(1, stock("AAPL"), "20261127 16:00:00 US/Eastern", "1 D", "1 min", "TRADES", 1, 1, False, [])
    c.wait_event("historicalDataEnd", 1)
    minutes = [e[2].date for e in c.of("historicalData", 1)]
    assert (minutes[0], minutes[-1], len(minutes)) == ("20261127  09:30:00", "20261127  12:59:00", 210)


def test_historical_before_the_history_floor_is_no_data_162(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(enforce_pacing=False)
    c = ibapi_factory(sim, 6)
    c.reqHistoricalData(1, stock("AAPL"), "20240101 12:00:00 US/Eastern", "1 D", "1 min", "TRADES", 1, 1, False, [])
    c.wait_for(lambda: c.errors(162))
    assert "HMDS query returned no data" in c.errors(162)[0][3]


def test_order_types_fill_by_market_rules(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 7)
    oid = c.of("nextValidId")[0][1]
    q = sim.quote("MSFT")
    c.placeOrder(oid, stock("MSFT"), order("BUY", 10, "MKT", ref="mkt"))
    c.placeOrder(oid + 1, stock("MSFT"), order("BUY", 10, "LMT", lmt=round(q.bid - 50, 2), ref="far-lmt"))
    c.placeOrder(oid + 2, stock("MSFT"), order("SELL", 10, "STP", aux=round(q.last + 50, 2), ref="stp"))
    c.placeOrder(
        oid + 3,
        stock("MSFT"),
        order("SELL", 5, "STP LMT", lmt=round(q.last - 60, 2), aux=round(q.last + 60, 2), ref="stplmt"),
    )
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid and e[2] == "Filled"])
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 2 and e[2] == "Filled"])
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 3 and e[2] == "Filled"])
    book = {o.order_ref: o for o in sim.orders()}
    assert book["far-lmt"].status == "Submitted" and book["far-lmt"].filled == 0
    mkt = book["mkt"]
    [ex] = mkt.executions
    assert ex.price == sim.quote("MSFT", ex.time).ask  # market buys fill at the touch
    stp = book["stp"].executions[0]
    assert stp.price == sim.quote("MSFT", stp.time).bid  # sell stop above market: triggered at once
    # the client saw exactly the executions the book holds, with orderRef echoed
    seen = {e[3].execId: e[3] for e in c.of("execDetails")}
    for o in (mkt, book["stp"], book["stplmt"]):
        for x in o.executions:
            assert seen[x.exec_id].orderRef == o.order_ref
    # commissions: IB fixed, $0.005/share with a $1 minimum
    reports = {e[1].execId: e[1] for e in c.of("commissionReport")}
    assert reports[mkt.executions[0].exec_id].commissionAndFees == 1.0
    # A placeOrder with a working order's id modifies it (same perm id), as at a gateway; a side change is 105.
    lower = round(q.bid - 60, 2)
    c.placeOrder(oid + 1, stock("MSFT"), order("BUY", 12, "LMT", lmt=lower, ref="far-lmt"))
    c.wait_for(lambda: sim.orders()[1].request.quantity == 12)
    assert (sim.orders()[1].request.lmt_price, sim.orders()[1].perm_id) == (lower, book["far-lmt"].perm_id)
    c.placeOrder(oid + 1, stock("MSFT"), order("SELL", 12, "LMT", lmt=lower, ref="far-lmt"))
    c.wait_for(lambda: c.errors(105))
    assert sim.orders()[1].request.action == "BUY" and sim.orders()[1].status == "Submitted"
    c.cancelOrder(oid + 1)
    c.wait_for(lambda: c.errors(202))
    assert [e for e in c.of("orderStatus") if e[1] == oid + 1][-1][2] == "Cancelled"
    assert sim.orders()[1].status == "Cancelled"
    c.cancelOrder(99_999)
    c.wait_for(lambda: c.errors(10147))
    c.placeOrder(oid, stock("MSFT"), order("BUY", 10, "MKT"))
    c.wait_for(lambda: c.errors(104))
    assert c.errors(104)[0][1] == oid  # filled: "Can't modify a filled order."
    c.placeOrder(oid + 1, stock("MSFT"), order("BUY", 12, "LMT", lmt=lower, ref="far-lmt"))
    c.wait_for(lambda: c.errors(103))
    assert c.errors(103)[0][1] == oid + 1  # cancelled: its id is spent


def test_bracket_children_held_until_transmit(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 8)
    oid = c.of("nextValidId")[0][1]
    q = sim.quote("SPY")
    c.placeOrder(oid, stock("SPY"), order("BUY", 100, "LMT", lmt=round(q.ask + 1, 2), ref="b", transmit=False))
    c.placeOrder(
        oid + 1,
        stock("SPY"),
        order("SELL", 100, "LMT", lmt=round(q.ask + 40, 2), ref="b-tp", transmit=False, parent=oid),
    )
    time.sleep(0.4)
    assert not c.of("openOrder"), "held (transmit=False) orders must not be acknowledged"
    assert {o.status for o in sim.orders()} == {"PendingSubmit"}
    c.placeOrder(oid + 2, stock("SPY"), order("SELL", 100, "STP", aux=round(q.bid - 40, 2), ref="b-sl", parent=oid))
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid and e[2] == "Filled"])
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 2 and e[2] == "Submitted"])
    statuses = {o.order_ref: o.status for o in sim.orders()}
    assert statuses == {"b": "Filled", "b-tp": "Submitted", "b-sl": "Submitted"}
    refs = {e[1]: e[3].orderRef for e in c.of("openOrder")}
    assert refs == {oid: "b", oid + 1: "b-tp", oid + 2: "b-sl"}
    parents = {e[1]: e[3].parentId for e in c.of("openOrder")}
    assert parents[oid + 1] == parents[oid + 2] == oid
    # the children were PreSubmitted until the parent filled
    first_child_status = next(e[2] for e in c.of("orderStatus") if e[1] == oid + 1)
    assert first_child_status == "PreSubmitted"


def test_open_orders_executions_positions_account(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    a = ibapi_factory(sim, 21)
    b = ibapi_factory(sim, 22)
    oid = a.of("nextValidId")[0][1]
    q = sim.quote("AAPL")
    a.placeOrder(oid, stock("AAPL"), order("BUY", 300, "MKT", ref="fill-me"))
    a.placeOrder(oid + 1, stock("AAPL"), order("BUY", 1, "LMT", lmt=round(q.bid - 30, 2), ref="rest"))
    a.wait_for(lambda: a.of("commissionReport"))
    b.placeOrder(oid + 2, stock("MSFT"), order("SELL", 1, "LMT", lmt=round(sim.quote("MSFT").ask + 30, 2)))
    b.wait_event("openOrder")
    a.reqOpenOrders()
    a.wait_event("openOrderEnd")
    assert [e[1] for e in a.of("openOrder") if e[4].status == "Submitted"][-1:] == [oid + 1]
    b.reqAllOpenOrders()
    b.wait_event("openOrderEnd")
    assert {e[1] for e in b.of("openOrder")} >= {oid + 1, oid + 2}
    f = ExecutionFilter()
    f.symbol = "AAPL"
    b.reqExecutions(5, f)
    b.wait_event("execDetailsEnd", 5)
    [(_, _, contract, ex)] = b.of("execDetails", 5)
    [truth] = sim.executions()
    assert (ex.execId, ex.shares, ex.price, ex.orderRef, ex.side, ex.clientId) == (
        truth.exec_id,
        300.0,
        truth.price,
        "fill-me",
        "BOT",
        21,
    )
    assert contract.conId == 265598
    f2 = ExecutionFilter()
    f2.side = "SELL"
    b.reqExecutions(6, f2)
    b.wait_event("execDetailsEnd", 6)
    assert b.of("execDetails", 6) == []
    b.reqPositions()
    b.wait_event("positionEnd")
    [(_, acct, pc, pos, avg)] = b.of("position")
    [p] = sim.positions()
    assert (acct, pc.symbol, pos, avg) == (sim.account, "AAPL", p.quantity, p.avg_cost) and pos == 300
    assert avg == pytest.approx((300 * truth.price + truth.commission) / 300)
    b.reqAccountSummary(9, "All", "NetLiquidation,TotalCashValue,BuyingPower")
    b.wait_event("accountSummaryEnd", 9)
    values = {e[3]: float(e[4]) for e in b.of("accountSummary", 9)}
    assert set(values) == {"NetLiquidation", "TotalCashValue", "BuyingPower"}
    assert values["TotalCashValue"] == pytest.approx(sim.config.initial_cash - 300 * truth.price - truth.commission)
    assert values["NetLiquidation"] == pytest.approx(sim.account_values()["NetLiquidation"], abs=300 * 2.0)
    b.reqAccountUpdates(True, sim.account)
    b.wait_event("accountDownloadEnd")
    assert any(e[1] == "NetLiquidation" for e in b.of("updateAccountValue"))
    assert b.of("updatePortfolio")[0][2] == 300


def test_partial_fills_and_commission_split(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(partial_fill_max=100.0)
    c = ibapi_factory(sim, 9)
    oid = c.of("nextValidId")[0][1]
    c.placeOrder(oid, stock("NVDA"), order("BUY", 450, "MKT", ref="big"))
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[2] == "Filled"], timeout=10)
    [o] = sim.orders()
    assert [x.shares for x in o.executions] == [100, 100, 100, 100, 50]
    assert sum(x.commission for x in o.executions) == pytest.approx(max(450 * 0.005, 1.0))
    statuses = [(e[3], e[4]) for e in c.of("orderStatus") if e[1] == oid and e[3] > 0]
    assert statuses[0] == (100.0, 350.0) and statuses[-1] == (450.0, 0.0)


def test_completed_orders_are_the_days_filled_and_cancelled_orders(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    a = ibapi_factory(sim, 23)
    b = ibapi_factory(sim, 24)
    oid = a.of("nextValidId")[0][1]
    q = sim.quote("AAPL")
    a.placeOrder(oid, stock("AAPL"), order("BUY", 100, "MKT", ref="filled-one"))
    a.placeOrder(oid + 1, stock("AAPL"), order("BUY", 1, "LMT", lmt=round(q.bid - 30, 2), ref="cancelled-one"))
    a.placeOrder(oid + 2, stock("AAPL"), order("BUY", 1, "LMT", lmt=round(q.bid - 30, 2), ref="still-working"))
    a.wait_for(lambda: a.of("commissionReport") and len(a.of("openOrder")) >= 3)
    a.cancelOrder(oid + 1)
    a.wait_for(lambda: a.errors(202))
    # another client asks: a gateway answers with every client's completed orders, never the working one
    b.reqCompletedOrders(False)
    b.wait_event("completedOrdersEnd")
    got = {e[2].orderRef: (e[1], e[2], e[3]) for e in b.of("completedOrder")}
    assert set(got) == {"filled-one", "cancelled-one"}
    book = {o.order_ref: o for o in sim.orders()}
    for ref, (contract, placed, state) in got.items():
        truth = book[ref]
        assert (contract.conId, contract.symbol) == (265598, "AAPL")
        assert (placed.permId, placed.totalQuantity, placed.orderType, placed.account) == (
            truth.perm_id,
            truth.request.quantity,
            truth.request.order_type,
            sim.account,
        )
        assert (state.status, placed.filledQuantity) == (truth.status, truth.filled)
        assert state.completedTime.startswith(
            dt.datetime.fromtimestamp(truth.updated_at, EXCHANGE_TZ).strftime("%Y%m%d")
        )
    assert got["filled-one"][2].completedStatus == "Filled" and got["filled-one"][1].filledQuantity == 100
    assert got["cancelled-one"][2].completedStatus == "Cancelled by Trader"
    assert got["cancelled-one"][1].lmtPrice == pytest.approx(round(q.bid - 30, 2))


def contract(symbol: str, sec_type: str = "STK", exchange: str = "SMART", currency: str = "USD") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, sec_type, exchange, currency
    return c


#: Contracts a gateway searches for and finds nothing (200), and ones it refuses to search for at all (321).
NO_SUCH_CONTRACT = {
    "unknown symbol": contract("NOPE"),
    "no such security type for the symbol": contract("AAPL", sec_type="FUT"),
    "not traded on that exchange": contract("AAPL", exchange="LSE"),
    "not traded in that currency": contract("AAPL", currency="EUR"),
}
NOT_SEARCHABLE = {
    "an unknown security type": (contract("AAPL", sec_type="SHARES"), "Invalid security type 'SHARES'"),
    "no symbol and no contract id": (contract(""), "Missing symbol"),
}


def test_orders_and_contract_details_on_invalid_contracts_get_200_or_321_with_the_reason(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 25)
    oid = c.of("nextValidId")[0][1]
    cases = [
        *((k, v, 200, "") for k, v in NO_SUCH_CONTRACT.items()),
        *((k, v, 321, r) for k, (v, r) in NOT_SEARCHABLE.items()),
    ]
    for n, (name, bad, _code, _reason) in enumerate(cases):
        c.reqContractDetails(100 + n, bad)
        c.placeOrder(oid + n, bad, order("BUY", 10, "MKT", ref=name))
    c.wait_for(lambda: len(c.errors(200)) + len(c.errors(321)) >= 2 * len(cases))
    for n, (name, _, code, reason) in enumerate(cases):
        for req_id in (100 + n, oid + n):
            [(_, _, got_code, text)] = [e for e in c.errors() if e[1] == req_id]
            assert got_code == code, name
            assert reason in text and (code != 200 or text == "No security definition has been found for the request")
    # an order needs what a search can do without: a security type and an exchange to route to
    c.placeOrder(oid + 10, contract("AAPL", sec_type=""), order("BUY", 10, "MKT"))
    c.placeOrder(oid + 11, contract("AAPL", exchange=""), order("BUY", 10, "MKT"))
    c.reqContractDetails(120, contract("AAPL", sec_type="", exchange=""))
    c.wait_event("contractDetailsEnd", 120)
    c.wait_for(lambda: len([e for e in c.errors(321) if e[1] in (oid + 10, oid + 11)]) == 2)
    assert "Missing security type" in next(e for e in c.errors() if e[1] == oid + 10)[3]
    assert "Missing order exchange" in next(e for e in c.errors() if e[1] == oid + 11)[3]
    assert [cd.contract.conId for (_, _, cd) in c.of("contractDetails", 120)] == [265598]
    time.sleep(0.3)  # anything placed would have been acknowledged by now
    assert sim.orders() == [] and not c.of("openOrder")


def test_orders_with_invalid_fields_get_321_or_201_with_the_reason(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 26)
    oid = c.of("nextValidId")[0][1]
    bad_tif = order("BUY", 10, "MKT")
    bad_tif.tif = "FOREVER"
    bad_account = order("BUY", 10, "MKT")
    bad_account.account = "DU0000000"
    cases = [
        (bad_tif, 321, "Invalid time in force 'FOREVER'"),
        (order("HOLD", 10, "MKT"), 321, "Invalid action 'HOLD'"),
        (bad_account, 321, "Invalid account DU0000000"),
        (order("BUY", 10, "LMT"), 201, "Order rejected - reason:Missing limit price"),
        (order("BUY", 10, "REL"), 201, "Order rejected - reason:Unsupported order type REL"),
    ]
    for n, (o, _, _) in enumerate(cases):
        c.placeOrder(oid + n, stock("AAPL"), o)
    c.wait_for(lambda: len([e for e in c.errors() if e[1] >= oid]) >= len(cases))
    for n, (_, code, reason) in enumerate(cases):
        [(_, _, got_code, text)] = [e for e in c.errors() if e[1] == oid + n]
        assert (got_code, reason in text) == (code, True), text
    assert all(o.status == "Inactive" for o in sim.orders())  # the 201s are recorded, the 321s never reached the book
    assert {o.order_id for o in sim.orders()} == {oid + 3, oid + 4}


def test_a_month_of_daily_bars_is_the_months_sessions(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    # Monday after Thanksgiving 2026: the month back holds a holiday (26th) and a half day (27th).
    sim = sim_factory(enforce_pacing=False, start_time=dt.datetime(2026, 11, 30, 10, 0, tzinfo=EXCHANGE_TZ))
    c = ibapi_factory(sim, 27)
    c.reqHistoricalData(1, stock("AAPL"), "", "1 M", "1 day", "TRADES", 1, 1, False, [])
    c.reqHistoricalData(2, stock("AAPL"), "", "1 W", "1 day", "TRADES", 1, 1, False, [])
    c.reqHistoricalData(3, stock("AAPL"), "", "3 D", "1 day", "TRADES", 1, 1, False, [])
    for req_id in (1, 2, 3):
        c.wait_event("historicalDataEnd", req_id, timeout=20)
    month = [e[2] for e in c.of("historicalData", 1)]
    sessions = [
        dt.date(2026, 11, d) for d in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 23, 24, 25, 27, 30)
    ]
    assert [b.date for b in month] == [d.strftime("%Y%m%d") for d in sessions]
    assert [b.date for b in (e[2] for e in c.of("historicalData", 2))] == [
        "20261124",
        "20261125",
        "20261127",
        "20261130",
    ]
    assert [b.date for b in (e[2] for e in c.of("historicalData", 3))] == ["20261125", "20261127", "20261130"]
    # each finished session's bar is its 5-second ground truth, the half day's ending at 13:00 (today's still grows)
    for bar, day in zip(month[:-1], sessions[:-1], strict=True):
        open_ = dt.datetime.combine(day, dt.time(9, 30), EXCHANGE_TZ).timestamp()
        truth = sim.ground_truth_bars("AAPL", open_, open_ + 6.5 * 3600)
        assert (bar.open, bar.close, bar.volume) == (truth[0].open, truth[-1].close, sum(b.volume for b in truth))
        assert len(truth) == (210 if day == dt.date(2026, 11, 27) else 390) * 12


def test_use_rth_0_adds_pre_and_post_market_bars(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory(enforce_pacing=False)
    c = ibapi_factory(sim, 28)
    end = "20250103 21:00:00 US/Eastern"
    c.reqHistoricalData(1, stock("MSFT"), end, "1 D", "1 hour", "TRADES", 0, 1, False, [])
    c.reqHistoricalData(2, stock("MSFT"), end, "1 D", "1 hour", "TRADES", 1, 1, False, [])
    c.wait_event("historicalDataEnd", 1)
    c.wait_event("historicalDataEnd", 2)
    extended = [e[2] for e in c.of("historicalData", 1)]
    regular = [e[2] for e in c.of("historicalData", 2)]
    hours = [b.date[-8:] for b in extended]
    assert hours == ["04:00:00", "05:00:00", "06:00:00", "07:00:00", "08:00:00", "09:00:00", "10:00:00", "11:00:00"] + [
        f"{h}:00:00" for h in range(12, 20)
    ]
    assert [b.date[-8:] for b in regular] == ["09:30:00", *hours[6:12]]
    start = dt.datetime(2025, 1, 3, 4, 0, tzinfo=EXCHANGE_TZ).timestamp()
    truth = sim.ground_truth_bars("MSFT", start, start + 16 * 3600, extended=True)
    assert sum(b.volume for b in extended) == sum(b.volume for b in truth) > sum(b.volume for b in regular)
    assert extended[0].open == truth[0].open and extended[-1].close == truth[-1].close


def test_a_bracket_with_an_adaptive_entry_and_a_trailing_stop_loss(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    """ibapi places a Patient Adaptive market buy with a trailing-stop child and a far target: the entry fills at the
    modelled price inside the spread, the stop ratchets from its initial price and triggers as a stop at the bid,
    the target is cancelled; openOrder echoes the algo, its parameters, the trail and the current stop."""
    sim = sim_factory()
    c = ibapi_factory(sim, 31)
    oid = c.of("nextValidId")[0][1]
    q = sim.quote("AAPL")
    entry = order("BUY", 10, "MKT", ref="t", transmit=False)
    entry.algoStrategy, entry.algoParams = "Adaptive", [TagValue("adaptivePriority", "Patient")]
    c.placeOrder(oid, stock("AAPL"), entry)
    stop = order("SELL", 10, "TRAIL", aux=0.03, ref="t", transmit=False, parent=oid)
    stop.trailStopPrice, stop.tif = round(q.bid - 5, 2), "GTC"
    c.placeOrder(oid + 1, stock("AAPL"), stop)
    c.placeOrder(oid + 2, stock("AAPL"), order("SELL", 10, "LMT", lmt=round(q.ask + 50, 2), ref="t", parent=oid))
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 1 and e[2] == "Filled"], timeout=20)
    book = {o.order_id: o for o in sim.orders()}
    [entry_fill] = book[oid].executions
    at_entry = sim.quote("AAPL", entry_fill.time)
    assert entry_fill.price == adaptive_price("BUY", at_entry.bid, at_entry.ask, "Patient")
    [stop_fill] = book[oid + 1].executions
    at_stop = sim.quote("AAPL", stop_fill.time)
    trail_stop = book[oid + 1].trail_stop
    assert trail_stop is not None and trail_stop > stop.trailStopPrice  # it ratcheted up from the initial stop
    assert at_stop.last <= trail_stop and stop_fill.price == at_stop.bid
    assert book[oid + 2].status == "Cancelled"
    opened = {e[1]: e[3] for e in c.of("openOrder")}
    assert opened[oid].algoStrategy == "Adaptive"
    assert [(p.tag, p.value) for p in opened[oid].algoParams] == [("adaptivePriority", "Patient")]
    assert (opened[oid + 1].orderType, opened[oid + 1].auxPrice) == ("TRAIL", 0.03)
    assert opened[oid + 1].trailStopPrice == trail_stop  # the filled order's openOrder carries the last stop


def test_an_oca_group_a_fill_cancels_or_reduces_the_others(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    """Market orders fill 4 shares a second: in an ocaType 1 group the first fill cancels the resting order; in an
    ocaType 3 group it cuts the resting 20 to 12 (40% of its peer filled) and the peer's last fill cancels it."""
    sim = sim_factory(partial_fill_max=4)
    c = ibapi_factory(sim, 32)
    oid = c.of("nextValidId")[0][1]
    q = sim.quote("MSFT")
    far = round(q.bid - 50, 2)
    placed = [
        (oid, order("BUY", 10, "LMT", lmt=far, ref="c1"), "cancel-group", 1),
        (oid + 1, order("BUY", 10, "MKT", ref="c2"), "cancel-group", 1),
        (oid + 2, order("BUY", 20, "LMT", lmt=far, ref="r1"), "reduce-group", 3),
        (oid + 3, order("BUY", 10, "MKT", ref="r2"), "reduce-group", 3),
    ]
    for order_id, o, group, oca_type in placed:
        o.ocaGroup, o.ocaType = group, oca_type
        c.placeOrder(order_id, stock("MSFT"), o)
        if o.orderType == "LMT":
            c.wait_for(lambda order_id=order_id: [e for e in c.of("openOrder") if e[1] == order_id])
    c.wait_for(lambda: len([e for e in c.errors(202) if e[1] in (oid, oid + 2)]) == 2)
    book = {o.order_ref: o for o in sim.orders()}
    assert (book["c2"].status, book["c1"].status) == ("Filled", "Cancelled")
    assert (book["r2"].status, book["r1"].status) == ("Filled", "Cancelled")
    assert book["c2"].status == "Filled" and len(book["c2"].executions) == 3
    reduced = [e[3].totalQuantity for e in c.of("openOrder") if e[1] == oid + 2]
    assert reduced[0] == 20 and 12 in reduced and 4 in reduced  # 20 → 12 → 4 (80% filled) → cancelled
    opened = {e[1]: e[3] for e in c.of("openOrder")}
    assert (opened[oid].ocaGroup, opened[oid].ocaType) == ("cancel-group", 1)
    assert (opened[oid + 2].ocaGroup, opened[oid + 2].ocaType) == ("reduce-group", 3)


def test_moc_and_loc_on_a_half_day_trade_at_its_1300_close_and_the_cutoff_is_1250(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    """The day after Thanksgiving closes at 13:00: a MOC fills at the closing price at 12:59:59, a LOC sell limited
    far above the market expires unfilled, and a MOC placed after 12:50 is refused (201) as is a cancel (161)."""
    start = dt.datetime(2025, 11, 28, 12, 48, tzinfo=EXCHANGE_TZ)
    sim = sim_factory(start_time=start, speed=120.0)
    c = ibapi_factory(sim, 33)
    oid = c.of("nextValidId")[0][1]
    q = sim.quote("SPY")
    c.placeOrder(oid, stock("SPY"), order("BUY", 10, "MOC", ref="moc"))
    c.placeOrder(oid + 1, stock("SPY"), order("SELL", 10, "LOC", lmt=round(q.ask + 40, 2), ref="loc"))
    c.wait_for(lambda: len([e for e in c.of("openOrder") if e[1] in (oid, oid + 1)]) >= 2)
    close = int(dt.datetime(2025, 11, 28, 13, 0, tzinfo=EXCHANGE_TZ).timestamp())
    c.wait_for(lambda: sim.now() >= close - 540)
    c.placeOrder(oid + 2, stock("SPY"), order("BUY", 10, "MOC", ref="late"))
    c.cancelOrder(oid)
    c.wait_for(lambda: c.errors(201) and c.errors(161))
    assert [e[1] for e in c.errors(201)] == [oid + 2] and [e[1] for e in c.errors(161)] == [oid]
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid and e[2] == "Filled"], timeout=15)
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid + 1 and e[2] == "Cancelled"])
    book = {o.order_ref: o for o in sim.orders()}
    [fill] = book["moc"].executions
    assert (fill.time, fill.price) == (close - 1, sim.quote("SPY", close - 1).last)
    assert book["loc"].executions == () and book["loc"].status == "Cancelled"


def test_a_trailing_stop_limit_placed_by_ibapi_echoes_its_offset(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    """A SELL TRAIL LIMIT far under the market: it works (Submitted), and openOrder carries the trail, the stop and
    the limit offset ibapi sent after whatIf."""
    sim = sim_factory()
    c = ibapi_factory(sim, 34)
    oid = c.of("nextValidId")[0][1]
    q = sim.quote("AAPL")
    o = order("SELL", 5, "TRAIL LIMIT", aux=round(q.bid * 0.2, 2), ref="tl")
    o.trailStopPrice, o.lmtPriceOffset = round(q.bid * 0.5, 2), 0.25
    c.placeOrder(oid, stock("AAPL"), o)
    c.wait_for(lambda: [e for e in c.of("orderStatus") if e[1] == oid and e[2] == "Submitted"])
    [book] = [x for x in sim.orders() if x.order_ref == "tl"]
    assert book.request.lmt_price_offset == 0.25 and book.status == "Submitted"
    c.reqOpenOrders()
    c.wait_event("openOrderEnd")
    echoed = [e[3] for e in c.of("openOrder") if e[1] == oid][-1]
    assert (echoed.orderType, echoed.auxPrice, echoed.lmtPriceOffset) == ("TRAIL LIMIT", o.auxPrice, 0.25)
    [later] = [x for x in sim.orders() if x.order_ref == "tl"]
    assert later.trail_stop is not None  # a SELL stop only rises: the echoed one lies between the initial and now
    assert o.trailStopPrice <= echoed.trailStopPrice <= later.trail_stop
    assert echoed.trailStopPrice > o.trailStopPrice  # the market is far above: it ratcheted at once


def test_a_what_if_order_answers_margin_and_commission_and_is_never_placed(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 31)
    oid = c.of("nextValidId")[0][1]
    price = sim.quote("AAPL").ask
    what_if = order("BUY", 100, "MKT")
    what_if.whatIf = True
    c.placeOrder(oid, stock("AAPL"), what_if)
    [(_, _, _, echoed, state)] = c.wait_event("openOrder", oid)
    assert echoed.whatIf is True and echoed.totalQuantity == Decimal("100")
    # ibsim's margin model: 25 % of the gross position value; fixed pricing: $0.005 a share, $1 minimum
    assert float(state.initMarginChange) == pytest.approx(0.25 * 100 * price, rel=0.01)
    assert (state.commissionAndFees, state.commissionAndFeesCurrency) == (1.0, "USD")
    c.reqCurrentTime()
    c.wait_event("currentTime")
    time.sleep(0.3)  # about 18 simulated seconds: a placed market order would have filled
    assert sim.orders() == [] and sim.executions() == []
