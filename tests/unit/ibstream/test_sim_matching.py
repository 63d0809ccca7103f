"""Matching rules, brackets/OCA, commissions and the ledger, against a scripted market."""

from __future__ import annotations

import pytest

from ibstream.sim.ledger import CommissionSchedule
from ibstream.sim.market_view import Quote
from ibstream.sim.matching import (
    MatchingEngine,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderUpdated,
)


class Script:
    """Market whose last price is scripted per second; bid/ask one cent either side."""

    def __init__(self, prices: dict[int, float], default: float = 100.0, open_: bool = True) -> None:
        self.prices, self.default, self.open = prices, default, open_

    def quote(self, symbol: str, t: float) -> Quote:
        p = self.prices.get(int(t), self.default)
        for s in sorted(self.prices):
            if s <= t:
                p = self.prices[s]
        return Quote(int(t), round(p - 0.01, 2), round(p + 0.01, 2), p, 5, 7, 1, 100, self.open)

    def in_session(self, t: float) -> bool:
        return self.open


def engine(market: Script, **kw: float) -> MatchingEngine:
    return MatchingEngine(market, "DU1", con_ids={"X": 1}, **kw)  # type: ignore[arg-type]


def req(
    oid: int, action: str, qty: float, kind: str, lmt: float | None = None, aux: float | None = None, **kw: object
) -> OrderRequest:
    return OrderRequest(oid, 1, 1, "X", action, qty, kind, lmt, aux, **kw)  # type: ignore[arg-type]


def fills(events: list[object]) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


def test_market_orders_fill_at_the_touch() -> None:
    e = engine(Script({}))
    [buy] = fills(e.place(req(1, "BUY", 10, "MKT"), 0.0))
    [sell] = fills(e.place(req(2, "SELL", 10, "MKT"), 0.0))
    assert (buy.execution.price, buy.execution.side) == (100.01, "BOT")
    assert (sell.execution.price, sell.execution.side) == (99.99, "SLD")
    assert buy.order.status == "Filled" and buy.order.remaining == 0


def test_limit_rests_until_crossed_then_fills_at_touch() -> None:
    e = engine(Script({0: 100.0, 5: 99.5, 10: 98.0}))
    events = e.place(req(1, "BUY", 10, "LMT", lmt=99.0), 0.0)
    assert [type(x) for x in events] == [OrderUpdated] and events[0].order.status == "Submitted"
    assert fills(e.advance(4.0)) == []
    assert fills(e.advance(9.0)) == []
    [f] = fills(e.advance(12.0))
    assert f.execution.time == 10.0 and f.execution.price == 98.01  # ask 98.01 <= 99


def test_stop_triggers_on_last_and_stop_limit_becomes_limit() -> None:
    e = engine(Script({0: 100.0, 3: 102.0, 6: 104.0}))
    e.place(req(1, "BUY", 1, "STP", aux=101.5), 0.0)
    e.place(req(2, "BUY", 1, "STP LMT", lmt=103.0, aux=103.5), 0.0)
    e.place(req(3, "SELL", 1, "STP", aux=90.0), 0.0)
    out = fills(e.advance(10.0))
    by_id = {f.order.order_id: f.execution for f in out}
    assert by_id[1].time == 3.0 and by_id[1].price == 102.01
    assert 2 not in by_id  # triggered at 6 (104 >= 103.5) but ask 104.01 > 103 limit
    assert 3 not in by_id
    assert e.order(1, 2).status == "Submitted"  # type: ignore[union-attr]


def test_partial_fills_and_commission_minimum_spread_over_executions() -> None:
    e = engine(Script({}), partial_fill_max=300.0)
    first = fills(e.place(req(1, "BUY", 1000, "MKT"), 0.0))
    rest = fills(e.advance(5.0))
    execs = [f.execution for f in first + rest]
    assert [x.shares for x in execs] == [300, 300, 300, 100]
    assert [x.cum_qty for x in execs] == [300, 600, 900, 1000]
    assert [x.commission for x in execs] == [1.5, 1.5, 1.5, 0.5]  # 1000 * 0.005 = 5.0 in total
    assert e.order(1, 1).status == "Filled"  # type: ignore[union-attr]


def test_commission_schedule_minimum_and_cap() -> None:
    s = CommissionSchedule()
    assert s.for_order(10, 1000.0) == 1.0
    assert s.for_order(1000, 100_000.0) == 5.0
    assert s.for_order(1000, 50.0) == 0.5  # 1 % of trade value caps penny stocks


def test_bracket_held_until_transmit_then_children_wait_for_parent_and_oca() -> None:
    e = engine(Script({0: 100.0, 4: 106.0}))
    assert e.place(req(1, "BUY", 10, "LMT", lmt=100.5, transmit=False), 0.0) == []
    assert e.place(req(2, "SELL", 10, "LMT", lmt=105.0, transmit=False, parent_id=1), 0.0) == []
    events = e.place(req(3, "SELL", 10, "STP", aux=95.0, parent_id=1), 0.0)
    statuses = [(x.order.order_id, x.order.status) for x in events if isinstance(x, OrderUpdated)]
    assert statuses[:3] == [(1, "Submitted"), (2, "PreSubmitted"), (3, "PreSubmitted")]
    assert fills(events)[0].order.order_id == 1
    assert {e.order(1, 2).status, e.order(1, 3).status} == {"Submitted"}  # type: ignore[union-attr]
    later = e.advance(5.0)
    [tp] = fills(later)
    assert tp.order.order_id == 2
    [cx] = [x for x in later if isinstance(x, OrderCancelled)]
    assert cx.order.order_id == 3 and cx.reason == "OCA"
    assert [p.quantity for p in e.positions()] == [0.0]


def test_cancel_rules_and_duplicate_ids() -> None:
    e = engine(Script({}))
    e.place(req(1, "BUY", 1, "LMT", lmt=50.0), 0.0)
    [c] = e.cancel(1, 1, 1.0)
    assert isinstance(c, OrderCancelled) and c.order.status == "Cancelled"
    [r] = e.cancel(1, 1, 2.0)
    assert isinstance(r, OrderRejected) and r.code == 10148
    [r] = e.cancel(1, 77, 2.0)
    assert r.code == 10147 and "77" in r.message
    [r] = e.place(req(1, "BUY", 1, "MKT"), 3.0)
    assert isinstance(r, OrderRejected) and r.code == 103
    [r] = e.place(req(9, "BUY", 1, "TRAIL"), 3.0)
    assert r.code == 201 and e.order(1, 9).status == "Inactive"  # type: ignore[union-attr]


def test_untransmitted_legs_can_be_cancelled_and_never_trade() -> None:
    e = engine(Script({0: 100.0}))
    e.place(req(1, "BUY", 10, "LMT", lmt=100.5, transmit=False), 0.0)
    e.place(req(2, "SELL", 10, "STP", aux=95.0, transmit=False, parent_id=1), 0.0)
    # Cancelling the held parent takes its held child with it, as for a working bracket.
    cancelled = e.cancel(1, 1, 1.0)
    assert [(type(x), x.order.order_id, x.order.status) for x in cancelled] == [  # type: ignore[union-attr]
        (OrderCancelled, 1, "Cancelled"),
        (OrderCancelled, 2, "Cancelled"),
    ]
    [r] = e.cancel(1, 2, 2.0)
    assert isinstance(r, OrderRejected) and r.code == 10148
    # The lost transmitting leg arriving late finds a cancelled parent: nothing trades.
    late = e.place(req(3, "SELL", 10, "LMT", lmt=105.0, parent_id=1), 3.0)
    assert fills(late) == [] and fills(e.advance(10.0)) == []


def test_a_gateway_restart_loses_only_untransmitted_orders() -> None:
    e = engine(Script({0: 100.0}))
    e.place(req(1, "BUY", 1, "LMT", lmt=50.0), 0.0)
    e.place(req(2, "BUY", 10, "LMT", lmt=100.5, transmit=False), 0.0)
    e.place(req(3, "SELL", 10, "STP", aux=95.0, transmit=False, parent_id=2), 0.0)
    lost = e.discard_untransmitted()
    assert [(o.order_id, o.status) for o in lost] == [(2, "PendingSubmit"), (3, "PendingSubmit")]
    assert [o.order_id for o in e.orders()] == [1] and e.order(1, 2) is None
    assert e.discard_untransmitted() == []
    [r] = e.cancel(1, 2, 1.0)
    assert isinstance(r, OrderRejected) and r.code == 10147
    # The bracket's last leg arriving after the restart finds no parent.
    [r] = e.place(req(4, "SELL", 10, "LMT", lmt=105.0, parent_id=2), 1.0)
    assert isinstance(r, OrderRejected) and r.code == 201 and "Parent" in r.message


def test_modify_working_order() -> None:
    e = engine(Script({}))
    e.place(req(1, "BUY", 5, "LMT", lmt=90.0), 0.0)
    out = e.place(req(1, "BUY", 5, "LMT", lmt=101.0), 1.0)
    assert isinstance(out[0], OrderUpdated) and fills(out)[0].execution.price == 100.01


def test_ledger_positions_realized_pnl_and_account_values() -> None:
    market = Script({0: 100.0, 10: 110.0})
    e = engine(market, initial_cash=10_000.0)
    e.place(req(1, "BUY", 10, "MKT"), 0.0)
    [p] = e.positions()
    assert p.quantity == 10 and p.avg_cost == pytest.approx((10 * 100.01 + 1.0) / 10)
    [sell] = fills(e.place(req(2, "SELL", 4, "MKT"), 10.0))
    assert sell.execution.realized_pnl == pytest.approx((109.99 - p.avg_cost) * 4 - 1.0)
    values = e.account_values(lambda s: 110.0)
    assert values["TotalCashValue"] == pytest.approx(10_000 - 1000.1 - 1 + 439.96 - 1, abs=0.01)
    assert values["NetLiquidation"] == pytest.approx(values["TotalCashValue"] + 6 * 110.0, abs=0.01)
    assert values["GrossPositionValue"] == 660.0
    assert values["BuyingPower"] == pytest.approx((values["NetLiquidation"] - 0.25 * 660) * 4, abs=0.05)
    [opening] = e.executions()[:1]
    assert opening.realized_pnl is None


def test_ledger_pnl_counts_from_the_day_start_and_transfers_are_not_pnl() -> None:
    e = engine(Script({0: 100.0, 10: 110.0}), initial_cash=10_000.0)
    e.place(req(1, "BUY", 10, "MKT"), 0.0)  # bought at 100.01, commission 1
    ledger = e.ledger
    ledger.start_day(lambda s: 105.0, "day 2")  # held overnight, marked 105 at the day's start
    [sell] = fills(e.place(req(2, "SELL", 4, "MKT"), 10.0))  # sold at 109.99, commission 1
    single = ledger.pnl_single("X", lambda s: 110.0)
    assert single.position == 6 and single.value == 660.0
    # Today: 6 held from 105 to 110, 4 sold at 109.99 (from 105) less 1 commission.
    assert single.daily == pytest.approx(6 * 5.0 + 4 * 4.99 - 1.0, abs=0.01)
    assert single.realized == pytest.approx(sell.execution.realized_pnl, abs=0.01)
    [p] = e.positions()
    assert single.unrealized == pytest.approx(660.0 - 6 * p.avg_cost, abs=0.01)
    ledger.transfer(5_000.0)  # a deposit: cash, not P&L
    assert ledger.pnl(lambda s: 110.0).daily == single.daily
    ledger.transfer(-300.0, as_pnl=True)  # a loss
    total = ledger.pnl(lambda s: 110.0)
    assert (total.daily, total.realized) == (
        pytest.approx(single.daily - 300.0, abs=0.01),
        pytest.approx(single.realized - 300.0, abs=0.01),
    )
    assert total.unrealized == single.unrealized
    assert ledger.pnl_single("NEVER", lambda s: 1.0).position == 0.0


def test_orders_wait_for_the_open() -> None:
    market = Script({}, open_=False)
    e = engine(market)
    [ack] = e.place(req(1, "BUY", 1, "MKT"), 0.0)
    assert isinstance(ack, OrderUpdated) and ack.order.status == "PreSubmitted"
    assert e.advance(5.0) == []
    market.open = True
    out = e.advance(6.0)
    assert [type(x) for x in out] == [OrderUpdated, OrderFilled]


def test_a_modification_is_refused_as_ib_refuses_it_and_the_order_stays_as_it_was() -> None:
    e = engine(Script({}))
    e.place(req(1, "BUY", 5, "LMT", lmt=90.0), 0.0)
    for changed, code in (
        (req(1, "SELL", 5, "LMT", lmt=90.0), 105),  # another side
        (req(1, "BUY", 5, "STP", aux=90.0), 105),  # another type
        (req(1, "BUY", 5, "LMT", lmt=90.001), 110),  # off tick
    ):
        [refused] = e.place(changed, 1.0)
        assert isinstance(refused, OrderRejected) and refused.code == code, (changed, refused)
    working = e.order(1, 1)
    assert working is not None
    assert (working.status, working.request.lmt_price, working.request.action) == ("Submitted", 90.0, "BUY")
    # A resize and a new price are modifications: accepted, same order (same perm id).
    [updated] = e.place(req(1, "BUY", 8, "LMT", lmt=91.0), 2.0)
    assert isinstance(updated, OrderUpdated)
    assert (updated.order.request.quantity, updated.order.request.lmt_price) == (8, 91.0)
    assert updated.order.perm_id == working.perm_id
    e.place(req(2, "BUY", 5, "MKT"), 3.0)
    [filled] = e.place(req(2, "BUY", 5, "MKT"), 4.0)
    assert isinstance(filled, OrderRejected) and (filled.code, filled.message) == (104, "Can't modify a filled order.")


def test_resting_orders_of_one_symbol_share_one_quote_per_second_and_fill_as_before() -> None:
    class Counting(Script):
        def __init__(self, prices: dict[int, float]) -> None:
            super().__init__(prices)
            self.asked: list[tuple[str, int]] = []

        def quote(self, symbol: str, t: float) -> Quote:
            self.asked.append((symbol, int(t)))
            return super().quote(symbol, t)

    market = Counting({0: 100.0, 2: 98.0})
    e = engine(market)
    for oid in range(1, 21):
        e.place(req(oid, "BUY", 1, "LMT", lmt=99.0 - oid * 0.01), 0.0)
    market.asked.clear()
    out = fills(e.advance(3.0))
    # 20 resting orders matched in seconds 1 and 2 (all fill in 2): one quote per second, not one per order.
    assert sorted(market.asked) == [("X", 1), ("X", 2)]
    assert sorted(f.order.order_id for f in out) == list(range(1, 21))
    assert {f.execution.price for f in out} == {98.01} and {f.execution.time for f in out} == {2.0}
