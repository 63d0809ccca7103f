# ruff: noqa: F811  (pytest fixtures imported from the support modules are redefined as arguments)
"""ibapi 9.81 (server version 157, in its side venv) against ibsim for every request of the IB feature set the
10.x client and ib_async are tested with: what-if, fail-fast 321 on the request's own id, validation codes
321/201/110, TRAIL/MOC/LOC/OCA/Adaptive, reqCompletedOrders, account values per currency and BASE, reqPnL and
reqPnLSingle, history by sessions and useRTH=0. Checked against the simulator's own record and ground truth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from ibsim import Simulator
from ibsim.config import EXCHANGE_TZ
from tests.integration.ibapi981_support import Ibapi981, contract, ibapi981_factory, order  # noqa: F401
from tests.integration.ibsim_support import sim_factory  # noqa: F401

pytestmark = pytest.mark.integration

SimF = Callable[..., Simulator]
OldF = Callable[[Simulator, int], Ibapi981]
AAPL_CON_ID = 265598


def test_9_81_what_if_validation_codes_and_a_request_ibsim_lacks(sim_factory: SimF, ibapi981_factory: OldF) -> None:
    sim = sim_factory()
    c = ibapi981_factory(sim, 21)
    assert c.server_version == 157
    oid = c.next_valid_id
    price = sim.quote("AAPL").ask
    c.call("placeOrder", oid, contract("AAPL"), order("BUY", 100, "MKT", whatIf=True))
    [[_, _, _, echoed, state]] = c.wait_event("openOrder", oid)
    assert echoed["whatIf"] is True
    assert float(state["initMarginChange"]) == pytest.approx(0.25 * 100 * price, rel=0.01)
    assert (state["commission"], state["commissionCurrency"]) == (1.0, "USD")

    c.call("placeOrder", oid + 1, contract("AAPL"), order("HOLD", 10, "MKT"))
    c.call("placeOrder", oid + 2, contract("AAPL"), order("BUY", 10, "LMT"))
    c.call("placeOrder", oid + 3, contract("AAPL"), order("BUY", 1, "LMT", lmtPrice=150.123))
    c.call("reqMktDepth", 77, contract("AAPL"), 5, False, [])
    c.wait_event("error", count=4 + 3)  # the three farm notices first
    assert [(e[1], e[2]) for e in c.errors() if e[2] in (321, 201, 110)] == [
        (oid + 1, 321),
        (oid + 2, 201),
        (oid + 3, 110),
        (77, 321),
    ]
    assert "ibsim does not implement" in c.errors(321)[-1][3]
    # the what-if was never placed; the 201 and 110 are recorded as IB records them, the 321 never reached the book
    assert {o.order_id: o.status for o in sim.orders()} == {oid + 2: "Inactive", oid + 3: "Inactive"}


def test_9_81_places_adaptive_trail_oca_moc_loc_and_reads_the_completed_orders(
    sim_factory: SimF, ibapi981_factory: OldF
) -> None:
    sim = sim_factory()
    c = ibapi981_factory(sim, 22)
    oid = c.next_valid_id
    q = sim.quote("AAPL")
    adaptive = [{"TagValue": {"tag": "adaptivePriority", "value": "Patient"}}]
    entry = order("BUY", 10, "MKT", algoStrategy="Adaptive", algoParams=adaptive, transmit=False, orderRef="e")
    trail = order("SELL", 10, "TRAIL", auxPrice=0.5, parentId=oid, orderRef="t", tif="GTC")
    far_bid = round(q.bid * 0.5, 2)
    oca = [order("BUY", 5, "LMT", lmtPrice=far_bid, ocaGroup="g1", ocaType=1, orderRef=f"oca{i}") for i in (1, 2)]
    moc = order("BUY", 5, "MOC", orderRef="moc")
    loc = order("SELL", 5, "LOC", lmtPrice=round(q.ask * 2, 2), orderRef="loc")
    for offset, placed in enumerate((entry, trail, *oca, moc, loc)):
        c.call("placeOrder", oid + offset, contract("AAPL"), placed)
    c.wait_event("execDetails")
    c.wait_event("openOrder", oid + 5)
    echoed = {e[1]: e[3] for e in c.of("openOrder")}
    assert (echoed[oid]["algoStrategy"], echoed[oid]["algoParams"][0]["value"]) == ("Adaptive", "Patient")
    assert (echoed[oid + 1]["orderType"], echoed[oid + 1]["auxPrice"], echoed[oid + 1]["parentId"]) == (
        "TRAIL",
        0.5,
        oid,
    )
    assert [(echoed[oid + i]["ocaGroup"], echoed[oid + i]["ocaType"]) for i in (2, 3)] == [("g1", 1), ("g1", 1)]
    assert [echoed[oid + i]["orderType"] for i in (4, 5)] == ["MOC", "LOC"]

    c.call("cancelOrder", oid + 2)
    c.wait_for("orderStatus", lambda e: e[2] == "Cancelled", oid + 2)
    c.call("reqCompletedOrders", False)
    c.wait_event("completedOrdersEnd")
    completed = {e[2]["orderRef"]: e[3]["status"] for e in c.of("completedOrder")}
    book = {o.order_ref: o.status for o in sim.orders() if o.status in ("Filled", "Cancelled")}
    assert completed == book
    assert completed["e"] == "Filled" and completed["oca1"] == "Cancelled"


def test_9_81_account_values_per_currency_and_base_and_pnl(sim_factory: SimF, ibapi981_factory: OldF) -> None:
    sim = sim_factory()
    c = ibapi981_factory(sim, 23)
    c.call("reqAccountUpdates", True, sim.account)
    c.wait_event("accountDownloadEnd")
    rows = {(e[1], e[3]): e[2] for e in c.of("updateAccountValue")}
    assert float(rows[("CashBalance", "BASE")]) == float(rows[("CashBalance", "USD")]) == sim.config.initial_cash
    assert [e[2] for e in c.of("updateAccountValue") if e[1] == "Currency"] == ["USD", "BASE"]

    c.call("reqPnL", 7, sim.account, "")
    c.call("reqPnLSingle", 8, sim.account, "", AAPL_CON_ID)
    [[_, _, daily, unrealized, realized]] = c.wait_event("pnl", 7)
    assert (daily, unrealized, realized) == (0.0, 0.0, 0.0)
    assert c.wait_event("pnlSingle", 8)[0][2] == 0
    c.call("placeOrder", c.next_valid_id, contract("AAPL"), order("BUY", 100, "MKT"))
    c.wait_event("execDetails")
    [held] = sim.positions()
    assert held.quantity == 100
    _, _, position, daily, unrealized, _, value = c.wait_for("pnlSingle", lambda e: e[2] == 100, 8)[0]
    assert position == 100.0  # a float in 9.81 (10.x: Decimal)
    assert unrealized == pytest.approx(value - 100 * held.avg_cost, abs=0.01)


def test_9_81_history_by_sessions_and_with_use_rth_0(sim_factory: SimF, ibapi981_factory: OldF) -> None:
    # Monday after Thanksgiving 2026: the month back holds a holiday (26th) and a half day (27th).
    sim = sim_factory(enforce_pacing=False, start_time=dt.datetime(2026, 11, 30, 10, 0, tzinfo=EXCHANGE_TZ))
    c = ibapi981_factory(sim, 24)
    c.call("reqHistoricalData", 1, contract("AAPL"), "", "1 M", "1 day", "TRADES", 1, 1, False, [])
    end = "20261127 20:00:00 US/Eastern"
    c.call("reqHistoricalData", 2, contract("MSFT"), end, "1 D", "1 hour", "TRADES", 0, 1, False, [])
    c.wait_event("historicalDataEnd", 1, timeout=20)
    c.wait_event("historicalDataEnd", 2, timeout=20)
    sessions = [
        dt.date(2026, 11, d) for d in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 23, 24, 25, 27, 30)
    ]
    assert [e[2]["date"] for e in c.of("historicalData", 1)] == [d.strftime("%Y%m%d") for d in sessions]
    # the half day's extended session: pre-market from 04:00, the 13:00 close, after-hours to 17:00
    extended = [e[2] for e in c.of("historicalData", 2)]
    assert extended[0]["date"].endswith("04:00:00")
    start = dt.datetime(2026, 11, 27, 4, 0, tzinfo=EXCHANGE_TZ).timestamp()
    truth = sim.ground_truth_bars("MSFT", start, start + 16 * 3600, extended=True)
    assert sum(b["volume"] for b in extended) == sum(b.volume for b in truth)
    assert (extended[0]["open"], extended[-1]["close"]) == (truth[0].open, truth[-1].close)
