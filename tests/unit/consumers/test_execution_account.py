"""The account's state from IB's callbacks: the pure fold and publish policy, and the feed over the fake IB session."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from consumers.execution.account_feed import PNL_REQ_ID, AccountFeed
from consumers.execution.account_values import (
    AccountView,
    PublishPolicy,
    account_state,
    base_currency,
    fold,
    publish_due,
    singles_to_change,
    with_singles,
)
from consumers.execution.context import Context
from consumers.execution.crash import CrashPoints
from consumers.execution.journal import Journal
from consumers.execution.outbox import Outbox
from ibstream.config import load_settings
from ibstream.contracts import AccountState, account_states
from ibstream.ib import events
from tests.fake_ib import FakeIbSession

T0 = dt.datetime(2025, 1, 6, 15, 0, tzinfo=dt.UTC)

#: A gateway's round for a USD account: account-wide keys, segments, per-currency and BASE rows, another account.
ROUND: list[events.AccountValue | events.AccountDownloadEnd] = [
    events.AccountValue("AccountCode", "DU1", "", "DU1"),
    events.AccountValue("NetLiquidation", "101000.50", "USD", "DU1"),
    events.AccountValue("NetLiquidation-S", "101000.50", "USD", "DU1"),
    events.AccountValue("NetLiquidation-C", "0.00", "USD", "DU1"),
    events.AccountValue("NetLiquidationByCurrency", "99999.00", "BASE", "DU1"),
    events.AccountValue("BuyingPower", "380000.00", "USD", "DU1"),
    events.AccountValue("AvailableFunds", "95000.00", "USD", "DU1"),
    events.AccountValue("AvailableFunds-S", "1.00", "USD", "DU1"),
    events.AccountValue("ExcessLiquidity", "96000.00", "USD", "DU1"),
    events.AccountValue("GrossPositionValue", "24000.00", "USD", "DU1"),
    events.AccountValue("GrossPositionValue", "1.00", "BASE", "DU1"),
    events.AccountValue("NetLiquidation", "5.00", "USD", "DU2"),
    events.AccountValue("Cushion", "n/a", "", "DU1"),
    events.AccountDownloadEnd("DU1"),
]


def folded(view: AccountView, items: list[events.AccountValue | events.AccountDownloadEnd]) -> AccountView:
    for event in items:
        view = fold(view, event)
    return view


def test_a_full_round_becomes_a_record_of_the_base_currency_rows() -> None:
    view = folded(AccountView("DU1"), ROUND)
    assert base_currency(view) == "USD"
    state = account_state(view, T0)
    assert state == AccountState(
        account="DU1",
        base_currency="USD",
        net_liquidation=101000.50,
        buying_power=380000.0,
        available_funds=95000.0,
        excess_liquidity=96000.0,
        gross_position_value=24000.0,
        time=T0,
    )


def test_no_record_before_the_round_ends_or_with_an_amount_missing() -> None:
    assert account_state(folded(AccountView("DU1"), ROUND[:-1]), T0) is None
    without_buying_power = [e for e in ROUND if not (isinstance(e, events.AccountValue) and e.key == "BuyingPower")]
    assert account_state(folded(AccountView("DU1"), without_buying_power), T0) is None
    garbled = [*ROUND[:-1], events.AccountValue("ExcessLiquidity", "", "USD", "DU1"), ROUND[-1]]
    assert account_state(folded(AccountView("DU1"), garbled), T0) is None
    # The other account's end says nothing about ours.
    assert account_state(folded(AccountView("DU1"), [*ROUND[:-1], events.AccountDownloadEnd("DU2")]), T0) is None


def test_pnl_fills_the_pnl_fields_and_later_rows_replace_earlier_ones() -> None:
    view = folded(AccountView("DU1"), ROUND)
    view = fold(view, events.AccountPnL(PNL_REQ_ID, -120.5, 300.25, None))
    view = fold(view, events.AccountValue("NetLiquidation", "100500.00", "USD", "DU1"))
    state = account_state(view, T0)
    assert state is not None
    assert (state.daily_pnl, state.unrealized_pnl, state.realized_pnl) == (-120.5, 300.25, None)
    assert state.net_liquidation == 100500.0


def record(net_liquidation: float, time: dt.datetime = T0) -> AccountState:
    return AccountState(
        account="DU1",
        base_currency="USD",
        net_liquidation=net_liquidation,
        buying_power=1.0,
        available_funds=1.0,
        excess_liquidity=1.0,
        gross_position_value=0.0,
        time=time,
    )


@pytest.mark.parametrize(
    ("candidate", "last", "elapsed", "due"),
    [
        (None, None, None, False),  # nothing complete yet
        (record(10.0), None, None, True),  # the first one goes at once
        (record(11.0), record(10.0), 0.5, False),  # a change inside the interval waits (coalesced)
        (record(11.0), record(10.0), 1.0, True),  # ... and goes when the interval is over
        (record(10.0, T0 + dt.timedelta(seconds=5)), record(10.0), 5.0, False),  # unchanged, only newer
        (record(10.0, T0 + dt.timedelta(seconds=30)), record(10.0), 30.0, True),  # the heartbeat
    ],
)
def test_publish_due_coalesces_changes_and_keeps_a_heartbeat(
    candidate: AccountState | None, last: AccountState | None, elapsed: float | None, due: bool
) -> None:
    policy = PublishPolicy(min_interval=1.0, heartbeat=30.0)
    last_at = None if elapsed is None else 100.0
    now = 100.0 + (elapsed or 0.0)
    assert publish_due(candidate, last, last_at, now, policy) is due


def test_feed_subscribes_folds_publishes_and_goes_quiet_when_disconnected(tmp_path: Path) -> None:
    clock = [1000.0]
    session = FakeIbSession(client_id=21)
    ctx = Context(load_settings(state_dir=tmp_path), session, Journal(tmp_path, 21), lambda: clock[0])
    outbox = Outbox(ctx.journal, CrashPoints())
    feed = AccountFeed(ctx, outbox, PublishPolicy(min_interval=1.0, heartbeat=30.0))
    assert feed.subscribe("DU1")
    assert [name for name, _ in session.requests] == ["cancelPnL", "reqAccountUpdates", "reqPnL"]
    assert session.requests[1][1] == (True, "DU1") and session.requests[2][1] == (PNL_REQ_ID, "DU1")

    for event in ROUND:
        feed.handle(event)
    feed.handle(events.AccountPnL(PNL_REQ_ID + 1, 1.0, 1.0, 1.0))  # not our request
    feed.tick()
    [(spec, first, _)] = outbox.records
    assert spec is account_states.TOPIC and isinstance(first, AccountState)
    assert first.net_liquidation == 101000.50 and first.daily_pnl is None

    feed.handle(events.AccountPnL(PNL_REQ_ID, -5.0, 2.0, -7.0))
    feed.tick()
    assert len(outbox.records) == 1  # inside the interval: held
    clock[0] += 1.0
    feed.tick()
    assert len(outbox.records) == 2 and outbox.records[-1][1].daily_pnl == -5.0  # type: ignore[attr-defined]
    clock[0] += 29.0
    feed.tick()
    assert len(outbox.records) == 2  # unchanged, heartbeat not yet due
    clock[0] += 1.0
    feed.tick()
    assert len(outbox.records) == 3  # the heartbeat

    feed.disconnected()
    clock[0] += 60.0
    feed.tick()
    assert len(outbox.records) == 3  # nothing while IB is away
    feed.subscribe("DU1")
    feed.tick()
    assert len(outbox.records) == 3  # nothing until IB has sent a full round again


def portfolio(con_id: int, symbol: str, position: float, account: str = "DU1") -> events.PortfolioUpdate:
    return events.PortfolioUpdate(account, symbol, con_id, position, 100.0, position * 100.0, 99.0, 1.0, None)


def test_one_pnl_single_per_held_contract_and_its_numbers_in_the_record() -> None:
    view = folded(AccountView("DU1"), ROUND)
    view = fold(view, portfolio(11, "AAPL", 100))
    view = fold(view, portfolio(12, "MSFT", -5))
    view = fold(view, portfolio(13, "IBM", 0))  # flat: nothing to follow
    view = fold(view, portfolio(14, "XOM", 7, account="DU2"))  # another account's
    assert singles_to_change(view) == ([11, 12], [])
    view = with_singles(view, {7001: 11, 7002: 12}, [])
    assert singles_to_change(view) == ([], [])
    view = fold(view, events.PositionPnL(7001, 100, 5.0, 50.0, None, 10_050.0))
    view = fold(view, events.PositionPnL(7099, 1, 1.0, 1.0, 1.0, 1.0))  # not a subscription of ours
    state = account_state(view, T0)
    assert state is not None
    [aapl] = state.positions
    assert (aapl.symbol, aapl.con_id, aapl.position, aapl.daily_pnl, aapl.unrealized_pnl, aapl.market_value) == (
        "AAPL",
        11,
        100,
        5.0,
        50.0,
        10_050.0,
    )
    # MSFT is closed: its subscription goes, and so do its numbers.
    view = fold(view, portfolio(12, "MSFT", 0))
    assert singles_to_change(view) == ([], [7002])
    view = with_singles(view, {}, [7002])
    assert view.singles == {7001: 11}


def test_feed_follows_holdings_with_pnl_single_and_cancels_them_on_a_new_subscription(tmp_path: Path) -> None:
    session = FakeIbSession(client_id=21)
    ctx = Context(load_settings(state_dir=tmp_path), session, Journal(tmp_path, 21), lambda: 0.0)
    outbox = Outbox(ctx.journal, CrashPoints())
    feed = AccountFeed(ctx, outbox, PublishPolicy(min_interval=1.0, heartbeat=30.0))
    feed.subscribe("DU1")
    session.requests.clear()
    for event in [*ROUND[:-1], portfolio(11, "AAPL", 100), ROUND[-1]]:
        feed.handle(event)
    [(name, (req_id, account, con_id))] = session.requests
    assert (name, account, con_id) == ("reqPnLSingle", "DU1", 11)
    feed.handle(events.PositionPnL(req_id, 100, 1.5, 2.5, None, 15_000.0))
    feed.tick()
    [(_, published, _)] = outbox.records
    assert [p.symbol for p in published.positions] == ["AAPL"]  # type: ignore[attr-defined]

    feed.disconnected()  # 1100: IB may keep the subscription alive on this socket
    session.requests.clear()
    feed.subscribe("DU1")
    assert session.requests[0] == ("cancelPnLSingle", (req_id,))
