# ruff: noqa: F811  (pytest fixtures imported from ibsim_support are redefined as arguments)
"""The account over real sockets: the official ibapi client's reqAccountUpdates, reqAccountSummary ($LEDGER),
reqPnL and reqPnLSingle against ibsim, as fills, commissions, the market and cash transfers move the values.

Checks compare what the client decoded with the simulator's own books (positions, executions, account values) or
with identities that must hold between the numbers of one message, not with hard-coded figures.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from ibapi.order import Order

from ibsim import Simulator
from tests.integration.ibsim_support import (  # noqa: F401  (fixtures)
    Recorder,
    ibapi_factory,
    sim_factory,
    stock,
)

pytestmark = pytest.mark.integration

SimF = Callable[..., Simulator]
ClientF = Callable[[Simulator, int], Recorder]


def market(action: str, qty: float) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType = action, qty, "MKT"
    return o


def account_rows(c: Recorder) -> dict[tuple[str, str], float]:
    """The newest updateAccountValue per (key, currency), numeric ones only."""
    rows: dict[tuple[str, str], float] = {}
    for _, key, value, currency, _account in c.of("updateAccountValue"):
        try:
            rows[(key, currency)] = float(value)
        except ValueError:
            continue
    return rows


def downloads(c: Recorder) -> int:
    return len(c.of("accountDownloadEnd"))


def test_account_updates_come_per_currency_and_base_and_follow_a_fill(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 31)
    c.reqAccountUpdates(True, sim.account)
    c.wait_event("accountDownloadEnd")
    first = account_rows(c)
    for key in ("NetLiquidation", "BuyingPower", "AvailableFunds", "ExcessLiquidity", "GrossPositionValue"):
        assert (key, "USD") in first, key
    assert first[("NetLiquidation", "USD")] == sim.config.initial_cash
    assert first[("CashBalance", "BASE")] == first[("CashBalance", "USD")] == sim.config.initial_cash
    assert first[("NetLiquidation-S", "USD")] == first[("NetLiquidation", "USD")]
    assert first[("GrossPositionValue", "USD")] == 0.0
    assert [e[2] for e in c.of("updateAccountValue") if e[1] == "Currency"] == ["USD", "BASE"]

    oid = c.of("nextValidId")[0][1]
    c.placeOrder(oid, stock("AAPL"), market("BUY", 200))
    c.wait_for(lambda: c.of("updatePortfolio") and downloads(c) >= 2)
    [execution] = sim.executions()
    after = account_rows(c)
    cash = sim.config.initial_cash - 200 * execution.price - execution.commission
    assert after[("TotalCashValue", "USD")] == pytest.approx(cash, abs=0.01)
    [(_, contract, position, mark, value, avg_cost, unrealized, realized, account)] = c.of("updatePortfolio")
    [held] = sim.positions()
    assert (contract.symbol, position, avg_cost, realized, account) == ("AAPL", 200, held.avg_cost, 0.0, sim.account)
    assert value == pytest.approx(200 * mark, abs=0.01)
    assert unrealized == pytest.approx(value - 200 * avg_cost, abs=0.01)
    assert after[("GrossPositionValue", "USD")] == pytest.approx(value, abs=0.01)
    assert after[("NetLiquidation", "USD")] == pytest.approx(cash + value, abs=0.01)
    assert after[("NetLiquidation", "USD")] != first[("NetLiquidation", "USD")]


def test_account_summary_ledger_tags_per_currency_and_base(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 32)
    c.reqAccountSummary(4, "All", "NetLiquidation,$LEDGER:ALL")
    c.wait_event("accountSummaryEnd", 4)
    rows = {(e[3], e[5]): e[4] for e in c.of("accountSummary", 4)}
    assert float(rows[("NetLiquidation", "USD")]) == sim.config.initial_cash
    assert float(rows[("CashBalance", "BASE")]) == float(rows[("CashBalance", "USD")]) == sim.config.initial_cash
    assert rows[("Currency", "BASE")] == "BASE"
    c.reqAccountSummary(5, "All", "$LEDGER")
    c.wait_event("accountSummaryEnd", 5)
    assert {e[5] for e in c.of("accountSummary", 5)} == {"USD"}
    assert any(e[3] == "NetLiquidationByCurrency" for e in c.of("accountSummary", 5))


def test_pnl_and_pnl_single_follow_fills_commissions_and_cancel(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 33)
    c.reqPnL(7, sim.account, "")
    [(_, _, daily, unrealized, realized)] = c.wait_event("pnl", 7)
    assert (daily, unrealized, realized) == (0.0, 0.0, 0.0)
    c.reqPnLSingle(8, sim.account, "", 265598)  # AAPL
    [(_, _, pos, *_)] = c.wait_event("pnlSingle", 8)
    assert pos == 0

    oid = c.of("nextValidId")[0][1]
    c.placeOrder(oid, stock("AAPL"), market("BUY", 100))
    opened = c.wait_for(lambda: [e for e in c.of("pnlSingle", 8) if e[2] == 100])
    [held] = sim.positions()
    _, _, pos, daily, unrealized, realized, value = opened[0]
    # Opened today: the day's P&L is the value less what it cost (commission included), which is the unrealized.
    assert unrealized == pytest.approx(value - 100 * held.avg_cost, abs=0.01)
    assert daily == pytest.approx(unrealized, abs=0.01)
    assert realized == 0.0
    moved = c.wait_for(lambda: [e for e in c.of("pnl", 7) if e[3] != 0.0])
    assert moved[0][4] == 0.0  # nothing realized yet

    c.placeOrder(oid + 1, stock("AAPL"), market("SELL", 100))
    closed = c.wait_for(lambda: [e for e in c.of("pnlSingle", 8) if e[2] == 0 and e[5] != 0.0])
    sale = sim.executions()[-1]
    assert sale.realized_pnl is not None
    _, _, _, daily, unrealized, realized, value = closed[0]
    assert (unrealized, value) == (0.0, 0.0)
    assert realized == pytest.approx(sale.realized_pnl, abs=0.01)
    assert daily == pytest.approx(realized, abs=0.01)  # flat again: the day's P&L is what the round trip made
    total = c.wait_for(lambda: [e for e in c.of("pnl", 7) if e[4] != 0.0])
    assert total[0][4] == pytest.approx(sale.realized_pnl, abs=0.01)
    assert total[0][2] == pytest.approx(sim.pnl().daily, abs=0.01)

    c.cancelPnL(7)
    c.cancelPnLSingle(8)
    c.reqCurrentTime()
    c.wait_event("currentTime")
    seen = len(c.of("pnl")) + len(c.of("pnlSingle"))
    sim.adjust_cash(-100.0, as_pnl=True)  # would push P&L to a subscriber
    c.reqCurrentTime()
    c.wait_event("currentTime", count=2)
    assert len(c.of("pnl")) + len(c.of("pnlSingle")) == seen


def test_daily_and_realized_pnl_start_again_on_a_new_trading_day(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 36)
    oid = c.of("nextValidId")[0][1]
    c.placeOrder(oid, stock("AAPL"), market("BUY", 100))
    c.placeOrder(oid + 1, stock("AAPL"), market("SELL", 40))
    c.wait_for(lambda: len(sim.executions()) == 2)
    c.reqPnL(2, sim.account, "")
    [(_, _, _, _, realized_today)] = c.wait_event("pnl", 2)
    assert realized_today == pytest.approx(sim.executions()[-1].realized_pnl, abs=0.01)

    sim.advance_clock(24 * 3600)  # Tuesday: the day's books start again, the position stays
    tuesday = c.wait_for(lambda: (lambda r: r if len(r) >= 2 else None)([e for e in c.of("pnl", 2) if e[4] == 0.0]))
    [held] = sim.positions()
    assert held.quantity == 60
    # Held from the day's start, nothing traded today: the day's P&L is the move since the day's start mark, so it
    # differs from the unrealized P&L (the move since the cost) by the same amount in every push of the day.
    (_, _, daily_1, unrealized_1, _), (_, _, daily_2, unrealized_2, _) = tuesday[:2]
    assert (daily_1, unrealized_1) != (daily_2, unrealized_2)
    assert unrealized_1 - daily_1 == pytest.approx(unrealized_2 - daily_2, abs=0.02)
    assert daily_1 != pytest.approx(unrealized_1 + realized_today, abs=0.01)  # Monday's books are closed


def test_pnl_for_an_unknown_contract_or_account_is_an_error(sim_factory: SimF, ibapi_factory: ClientF) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 34)
    c.reqPnLSingle(3, sim.account, "", 999_999_999)
    c.reqPnL(4, "U0000000", "")
    c.wait_for(lambda: len(c.errors(200)) == 1 and len(c.errors(321)) == 1)
    assert c.errors(200)[0][1] == 3 and c.errors(321)[0][1] == 4
    assert c.of("pnl") == [] and c.of("pnlSingle") == []


def _post(sim: Simulator, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{sim.control_port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_cash_hook_moves_net_liquidation_at_once_and_pnl_only_when_booked_as_pnl(
    sim_factory: SimF, ibapi_factory: ClientF
) -> None:
    sim = sim_factory()
    c = ibapi_factory(sim, 35)
    c.reqAccountUpdates(True, sim.account)
    c.reqPnL(6, sim.account, "")
    c.wait_event("accountDownloadEnd")
    c.wait_event("pnl", 6)
    start = account_rows(c)[("NetLiquidation", "USD")]

    assert _post(sim, "/account/cash", {"amount": 25_000}) == {"ok": True}  # a deposit
    c.wait_for(lambda: downloads(c) >= 2)
    assert account_rows(c)[("NetLiquidation", "USD")] == start + 25_000
    assert sim.account_values()["NetLiquidation"] == start + 25_000
    assert sim.pnl().daily == 0.0  # a deposit is no profit

    sim.adjust_cash(-4_000.0, as_pnl=True)  # a loss
    c.wait_for(lambda: downloads(c) >= 3)
    assert account_rows(c)[("NetLiquidation", "USD")] == start + 21_000
    [(_, _, daily, _, realized)] = c.wait_for(lambda: [e for e in c.of("pnl", 6) if e[2] != 0.0])
    assert (daily, realized) == (-4_000.0, -4_000.0)
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(sim, "/account/cash", {"amount": "lots"})
    assert refused.value.code == 400
