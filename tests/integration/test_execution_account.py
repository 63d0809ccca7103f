# ruff: noqa: F811  (the run_executor fixture imported from test_execution is redefined as an argument)
"""Execution publishes the account's state (account.v1) from IB: ibsim over real sockets + the real Kafka broker.

The records are checked against ibsim's books (its executions, the cash it holds) and against the identity a long-only
stock account keeps (NetLiquidation = cash + the positions' value), not against hard-coded amounts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from ibstream.contracts import AccountState, account_states, order_events
from ibstream.contracts.enums import OrderStatus, Side
from tests.integration.execution_support import Reader, routed, send
from tests.integration.test_execution import Running, run_executor, statuses  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def cash_of(running: Running) -> float:
    """The cash ibsim holds: its initial cash less every execution's value and commission."""
    cash = running.sim.config.initial_cash
    for ex in running.sim.executions():
        signed = ex.shares if ex.side == "BOT" else -ex.shares
        cash -= signed * ex.price + ex.commission
    return cash


def newest(records: list[Any], account: str) -> AccountState | None:
    mine = [r for r in records if r.account == account]
    return mine[-1] if mine else None


def test_execution_publishes_the_account_and_net_liquidation_follows_a_fill_and_a_cash_transfer(
    run_executor: Callable[..., Running],
) -> None:
    running = run_executor(execution_account_heartbeat_seconds=2.0)
    account = running.sim.account
    states = Reader(running.settings, account_states.TOPIC)
    initial = running.sim.config.initial_cash
    [first] = states.wait(lambda rs: newest(rs, account) is not None)[:1]
    assert (first.account, first.base_currency, first.net_liquidation) == (account, "USD", initial)
    assert first.gross_position_value == 0.0 and first.buying_power > 0

    order = routed("AAPL", Side.BUY, 100)
    send(running.settings, order)
    Reader(running.settings, order_events.TOPIC).wait(lambda es: OrderStatus.FILLED in statuses(es, order.order_id))
    after_fill = newest(states.wait(lambda rs: (newest(rs, account) or first).gross_position_value > 0), account)
    assert after_fill is not None
    cash = cash_of(running)
    assert cash < initial
    # One round from IB: NetLiquidation is the cash plus the (long) position's value at that round's mark.
    assert after_fill.net_liquidation == pytest.approx(cash + after_fill.gross_position_value, abs=0.02)
    # (NetLiquidation itself may land back on the initial cash: when the mark is a cent above the fill, 100 shares
    # make exactly the 1.00 commission. The cash moved and the position is counted: that is what follows the fill.)
    assert after_fill.gross_position_value > 0
    with_pnl = newest(states.wait(lambda rs: (newest(rs, account) or first).unrealized_pnl not in (None, 0.0)), account)
    assert with_pnl is not None and with_pnl.daily_pnl is not None
    # reqPnLSingle for the held contract: its numbers ride along, consistent with ibsim's cost of the position.
    followed = newest(states.wait(lambda rs: bool((newest(rs, account) or first).positions)), account)
    assert followed is not None
    [aapl] = followed.positions
    [held] = running.sim.positions()
    assert (aapl.symbol, aapl.position) == ("AAPL", 100)
    assert aapl.market_value is not None and aapl.unrealized_pnl is not None
    assert aapl.unrealized_pnl == pytest.approx(aapl.market_value - 100 * held.avg_cost, abs=0.02)

    running.sim.adjust_cash(-50_000.0)  # a withdrawal at the broker
    withdrawn = newest(
        states.wait(lambda rs: (newest(rs, account) or first).net_liquidation < with_pnl.net_liquidation - 40_000),
        account,
    )
    assert withdrawn is not None
    assert withdrawn.net_liquidation == pytest.approx(cash - 50_000 + withdrawn.gross_position_value, abs=0.02)

    # After a reconnect execution subscribes again; the heartbeat keeps the record's time fresh.
    dropped_at = time.time()
    running.sim.drop_connections()
    states.wait(lambda rs: (newest(rs, account) or first).time.timestamp() > dropped_at + 2.5, timeout=30)

    # IB loses its servers (1100) and comes back (1102): execution goes quiet, then subscribes again.
    lost_at = time.time()
    running.sim.connectivity_loss(1.0, 1102)
    states.wait(lambda rs: (newest(rs, account) or first).time.timestamp() > lost_at + 3.5, timeout=30)
    running.halt()
