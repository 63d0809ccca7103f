# ruff: noqa: F811  (pytest fixtures imported from ibsim_support are redefined as arguments)
"""ib_async 2.x (unchanged library code) against ibsim: connect, qualify, stream, backfill, trade."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Order, Stock, TagValue

from ibsim import Simulator
from tests.integration.ibsim_support import sim_factory  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


async def _until(pred: Callable[[], object], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_ib_async_end_to_end(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(partial_fill_max=60.0)

    async def scenario() -> None:
        ib = IB()
        # raiseSyncErrors: any startup request ibsim failed to answer would time out and raise
        await ib.connectAsync("127.0.0.1", sim.port, clientId=3, timeout=3, raiseSyncErrors=True)
        try:
            assert ib.client.serverVersion() == 178  # ib_async asks v157..178: its top, which ibsim speaks
            assert ib.managedAccounts() == [sim.account]
            [aapl, spy] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"), Stock("SPY", "SMART", "USD"))
            assert (aapl.conId, spy.conId) == (265598, 756733)

            ticker = ib.reqMktData(aapl)
            bars = ib.reqRealTimeBars(aapl, 5, "TRADES", True)
            await _until(lambda: ticker.last == ticker.last and ticker.bid > 0 and len(bars) >= 3)
            truth = {int(b.time): b for b in sim.ground_truth_bars("AAPL")}
            for b in bars:
                t = truth[int(b.time.timestamp())]
                assert (b.open_, b.high, b.low, b.close, b.volume) == (t.open, t.high, t.low, t.close, t.volume)
            assert ticker.ask - ticker.bid == pytest.approx(sim.config.spread_ticks * 0.01)

            hist = await ib.reqHistoricalDataAsync(aapl, "", "300 S", "5 secs", "TRADES", True, formatDate=2)
            assert len(hist) >= 60
            h_truth = {b.time: b for b in sim.ground_truth_bars("AAPL")}
            for b in hist[:-1]:
                t = h_truth[int(b.date.timestamp())]
                assert (b.open, b.close, b.volume) == (t.open, t.close, t.volume)

            q = sim.quote("SPY")
            bracket = ib.bracketOrder("BUY", 120, round(q.ask + 0.5, 2), round(q.ask + 25, 2), round(q.bid - 25, 2))
            trades = []
            for o in bracket:
                o.orderRef = "bracket-1"
                trades.append(ib.placeOrder(spy, o))
            parent, take_profit, stop_loss = trades
            await _until(lambda: parent.orderStatus.status == "Filled" and len(parent.fills) == 2)
            # the $1 minimum is charged on the first execution; the second costs nothing more
            await _until(lambda: all(f.commissionReport.execId for f in parent.fills))
            await _until(lambda: take_profit.orderStatus.status == "Submitted")
            assert stop_loss.orderStatus.status == "Submitted"
            assert [f.execution.shares for f in parent.fills] == [60.0, 60.0]
            book = {o.order_id: o for o in sim.orders()}
            assert book[parent.order.orderId].avg_fill_price == pytest.approx(parent.orderStatus.avgFillPrice)
            assert {book[t.order.orderId].order_ref for t in trades} == {"bracket-1"}
            assert sum(f.commissionReport.commission for f in parent.fills) == pytest.approx(1.0)
            await _until(lambda: any(p.contract.conId == spy.conId for p in ib.positions()))
            [pos] = [p for p in ib.positions() if p.contract.conId == spy.conId]
            assert pos.position == 120
            # cancelling the take-profit leaves the stop alone; cancelling the parent is too late
            ib.cancelOrder(take_profit.order)
            await _until(lambda: take_profit.orderStatus.status == "Cancelled")
            assert stop_loss.orderStatus.status == "Submitted"
            fills = await ib.reqExecutionsAsync()
            assert {f.execution.execId for f in fills} == {e.exec_id for e in sim.executions()}
            summary = await ib.accountSummaryAsync()
            netliq = next(float(v.value) for v in summary if v.tag == "NetLiquidation")
            assert netliq == pytest.approx(sim.account_values()["NetLiquidation"], abs=500)
            # reqPnL / reqPnLSingle as ib_async decodes them; its connect subscribed to the account updates too.
            pnl = ib.reqPnL(sim.account)
            single = ib.reqPnLSingle(sim.account, "", spy.conId)
            await _until(lambda: single.position == 120 and pnl.unrealizedPnL == pnl.unrealizedPnL)  # not NaN
            assert single.unrealizedPnL == pytest.approx(single.value - 120 * pos.avgCost, abs=0.01)
            # SPY is the only position: the account's unrealized P&L is its own (once both come from one mark).
            await _until(lambda: abs(pnl.unrealizedPnL - single.unrealizedPnL) < 0.01)
            values = {(v.tag, v.currency) for v in ib.accountValues()}
            assert {("NetLiquidation", "USD"), ("CashBalance", "BASE")} <= values
        finally:
            ib.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_what_if_order_answers_margin_and_commission_and_is_never_placed(
    sim_factory: Callable[..., Simulator],
) -> None:
    sim = sim_factory()

    async def scenario() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=4, timeout=3, raiseSyncErrors=True)
        try:
            [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            price = sim.quote("AAPL").ask
            state = await asyncio.wait_for(ib.whatIfOrderAsync(aapl, MarketOrder("BUY", 100)), 5)
            # ibsim's margin model: 25 % of the gross position value; fixed pricing: $0.005 a share, $1 minimum
            assert float(state.initMarginChange) == pytest.approx(0.25 * 100 * price, rel=0.01)
            assert float(state.initMarginAfter) - float(state.initMarginBefore) == pytest.approx(
                float(state.initMarginChange), abs=0.01
            )
            assert (state.commission, state.commissionCurrency) == (1.0, "USD")
            assert float(state.equityWithLoanChange) == pytest.approx(-1.0)
            await asyncio.sleep(0.3)  # about 18 simulated seconds: a placed market order would have filled
            assert sim.orders() == [] and sim.executions() == []
            assert all(p.quantity == 0 for p in sim.positions())
            assert [t for t in ib.trades() if t.orderStatus.status] == []
        finally:
            ib.disconnect()

    asyncio.run(scenario())


def test_ib_async_reads_the_days_completed_orders(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory()

    async def scenario() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=5, timeout=3, raiseSyncErrors=True)
        try:
            [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            trade = ib.placeOrder(aapl, MarketOrder("SELL", 40))
            await _until(lambda: trade.orderStatus.status == "Filled")
            completed = await asyncio.wait_for(ib.reqCompletedOrdersAsync(apiOnly=True), 5)
            [done] = completed
            [truth] = sim.orders()
            assert (done.contract.conId, done.order.permId, done.order.action) == (aapl.conId, truth.perm_id, "SELL")
            assert (done.orderStatus.status, done.order.filledQuantity) == ("Filled", 40)
        finally:
            ib.disconnect()
        # a second connection fetches completed orders at connect (ib_async's startup sync) without a hitch
        ib2 = IB()
        await ib2.connectAsync("127.0.0.1", sim.port, clientId=6, timeout=3, raiseSyncErrors=True)
        try:
            completed = await asyncio.wait_for(ib2.reqCompletedOrdersAsync(apiOnly=True), 5)
            assert [t.order.permId for t in completed] == [o.perm_id for o in sim.orders()]
        finally:
            ib2.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_ib_async_sees_no_security_definition_for_an_invalid_contract(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory()

    async def scenario() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=3, raiseSyncErrors=True)
        try:
            bad = Stock("AAPL", "SMART", "EUR")
            details = await asyncio.wait_for(ib.reqContractDetailsAsync(bad), 5)
            assert details == []
            trade = ib.placeOrder(bad, MarketOrder("BUY", 10))
            await _until(lambda: trade.orderStatus.status == "Cancelled")
            assert [entry.errorCode for entry in trade.log if entry.errorCode] == [200]
            trade = ib.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder("BUY", 10, tif="FOREVER"))
            await _until(lambda: trade.orderStatus.status == "ValidationError")
            assert [entry.errorCode for entry in trade.log if entry.errorCode] == [321]
            assert sim.orders() == []
        finally:
            ib.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_ib_async_gets_a_month_of_daily_bars_and_extended_hours(sim_factory: Callable[..., Simulator]) -> None:
    sim = sim_factory(enforce_pacing=False)

    async def scenario() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=8, timeout=3, raiseSyncErrors=True)
        try:
            [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
            daily = await ib.reqHistoricalDataAsync(spy, "", "1 M", "1 day", "TRADES", True, timeout=20)
            # after 2024-12-06 to 2025-01-06: 21 weekdays, but Christmas and New Year's Day have no session
            assert len(daily) == 19 and str(daily[0].date) == "2024-12-09" and str(daily[-1].date) == "2025-01-06"
            assert "2024-12-25" not in {str(b.date) for b in daily}
            minutes = await ib.reqHistoricalDataAsync(
                spy, "20250103 20:00:00 US/Eastern", "1 D", "30 mins", "TRADES", False
            )
            assert (minutes[0].date.hour, minutes[0].date.minute, minutes[-1].date.hour) == (4, 0, 19)
        finally:
            ib.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_ib_async_places_adaptive_trail_oca_moc_loc_and_sees_201_and_110(
    sim_factory: Callable[..., Simulator],
) -> None:
    """At server 178 (no faProfile in placeOrder, ib_async's duration/postToAts/... appended), ibsim reads every
    order type of the feature set as ib_async wrote it, and refuses a limit without a price (201) and a price off
    the tick (110) on the order's own id."""
    sim = sim_factory()

    async def scenario() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=9, timeout=3, raiseSyncErrors=True)
        try:
            [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            q = sim.quote("AAPL")
            entry = MarketOrder("BUY", 10, orderRef="e", transmit=False)
            entry.algoStrategy, entry.algoParams = "Adaptive", [TagValue("adaptivePriority", "Urgent")]
            entry_trade = ib.placeOrder(aapl, entry)
            trail = Order(action="SELL", totalQuantity=10, orderType="TRAIL", auxPrice=0.5, tif="GTC", orderRef="t")
            trail.parentId = entry_trade.order.orderId
            far = round(q.bid * 0.5, 2)
            placed = [
                trail,
                LimitOrder("BUY", 5, far, ocaGroup="g1", ocaType=1, orderRef="oca1"),
                LimitOrder("BUY", 5, far, ocaGroup="g1", ocaType=1, orderRef="oca2"),
                Order(action="BUY", totalQuantity=5, orderType="MOC", orderRef="moc"),
                Order(action="SELL", totalQuantity=5, orderType="LOC", lmtPrice=round(q.ask * 2, 2), orderRef="loc"),
            ]
            trades = [entry_trade, *(ib.placeOrder(aapl, o) for o in placed)]
            missing_price = ib.placeOrder(aapl, Order(action="BUY", totalQuantity=1, orderType="LMT", orderRef="201"))
            off_tick = ib.placeOrder(aapl, LimitOrder("BUY", 1, 150.123, orderRef="110"))
            await _until(lambda: entry_trade.orderStatus.status == "Filled")
            await _until(lambda: all(t.orderStatus.status in ("Submitted", "PreSubmitted") for t in trades[1:]))
            await _until(lambda: missing_price.log[-1].errorCode == 201 and off_tick.log[-1].errorCode == 110)
            book = {o.request.order_ref: o.request for o in sim.orders()}
            assert (book["e"].algo_strategy, book["e"].algo_params) == ("Adaptive", (("adaptivePriority", "Urgent"),))
            assert (book["t"].order_type, book["t"].aux_price, book["t"].parent_id) == ("TRAIL", 0.5, entry.orderId)
            assert [(book[r].oca_group, book[r].oca_type) for r in ("oca1", "oca2")] == [("g1", 1), ("g1", 1)]
            assert [book[r].order_type for r in ("moc", "loc")] == ["MOC", "LOC"]
            assert (book["201"].order_type, book["110"].lmt_price) == ("LMT", 150.123)
        finally:
            ib.disconnect()

    asyncio.run(asyncio.wait_for(scenario(), 30))
