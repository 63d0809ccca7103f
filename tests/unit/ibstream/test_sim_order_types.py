"""Trailing stops, the Adaptive algo and OCA groups in the matching engine, against a scripted market."""

from __future__ import annotations

import datetime as dt

import pytest

from ibstream.sim.market_view import Session
from ibstream.sim.matching import OrderCancelled, OrderRejected, OrderUpdated
from ibstream.sim.order_types import adaptive_price, ratchet
from tests.unit.ibstream.test_sim_matching import Script, engine, fills, req


def test_a_sell_trailing_stop_ratchets_up_with_the_market_and_triggers_as_a_stop() -> None:
    e = engine(Script({0: 100.0, 2: 103.0, 4: 102.5, 6: 102.1, 8: 101.0}))
    e.place(req(1, "SELL", 10, "TRAIL", aux=1.0, trail_stop_price=98.5), 0.0)
    assert fills(e.advance(1.0)) == [] and e.order(1, 1).trail_stop == 99.0  # type: ignore[union-attr]
    assert fills(e.advance(5.0)) == []
    assert e.order(1, 1).trail_stop == 102.0  # type: ignore[union-attr]  # 103 - 1, not back down at 102.5
    [f] = fills(e.advance(10.0))
    assert (f.execution.time, f.execution.price) == (8.0, 100.99)  # last 101 <= 102: a market sell at the bid


def test_a_buy_trailing_stop_in_percent_ratchets_down_only() -> None:
    e = engine(Script({0: 100.0, 3: 90.0, 5: 91.0, 7: 92.0}))
    e.place(req(1, "BUY", 5, "TRAIL", trailing_percent=2.0), 0.0)
    assert e.order(1, 1).trail_stop == 102.0  # type: ignore[union-attr]  # started at 100 + 2%
    assert fills(e.advance(6.0)) == [] and e.order(1, 1).trail_stop == 91.8  # type: ignore[union-attr]
    [f] = fills(e.advance(8.0))
    assert (f.execution.time, f.execution.price) == (7.0, 92.01)


def test_a_bracket_whose_stop_loss_trails_protects_from_the_parent_fill_on() -> None:
    e = engine(Script({0: 100.0, 3: 105.0, 6: 103.0}))
    e.place(req(1, "BUY", 10, "LMT", lmt=100.5, transmit=False), 0.0)
    e.place(req(2, "SELL", 10, "TRAIL", aux=1.5, trail_stop_price=97.0, parent_id=1, transmit=False), 0.0)
    events = e.place(req(3, "SELL", 10, "LMT", lmt=110.0, parent_id=1), 0.0)
    assert [f.order.order_id for f in fills(events)] == [1]
    [stop_fill] = fills(e.advance(7.0))
    assert stop_fill.order.order_id == 2 and stop_fill.execution.time == 6.0  # 105 - 1.5 = 103.5 reached at 103
    assert e.order(1, 3).status == "Cancelled"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "trailing amount or a trailing percent"),
        ({"aux": 1.0, "trailing_percent": 1.0}, "not both"),
        ({"trailing_percent": 120.0}, "Invalid trailing percent"),
    ],
)
def test_a_trailing_stop_needs_one_trail(fields: dict[str, float], reason: str) -> None:
    e = engine(Script({}))
    [rejected] = e.place(req(1, "SELL", 1, "TRAIL", **fields), 0.0)
    assert isinstance(rejected, OrderRejected) and rejected.code == 201 and reason in rejected.message


@pytest.mark.parametrize(
    ("priority", "buy_price", "sell_price"),
    [("Urgent", 100.10, 99.90), ("Normal", 100.05, 99.95), ("Patient", 100.0, 100.0)],
)
def test_adaptive_prices_lie_between_the_mid_and_the_far_side_by_priority(
    priority: str, buy_price: float, sell_price: float
) -> None:
    assert adaptive_price("BUY", 99.90, 100.10, priority) == buy_price
    assert adaptive_price("SELL", 99.90, 100.10, priority) == sell_price


def test_adaptive_rounds_towards_the_far_side() -> None:
    assert adaptive_price("BUY", 100.00, 100.03, "Normal") == 100.03  # mid 100.015 + 0.0075 → up to the tick
    assert adaptive_price("SELL", 100.00, 100.03, "Patient") == 100.01  # mid 100.015 → down to the tick


def test_an_adaptive_market_order_fills_inside_the_spread_and_a_limit_at_the_mid_can_fill() -> None:
    e = engine(Script({}))  # bid 99.99, ask 100.01
    patient = (("adaptivePriority", "Patient"),)
    [mkt] = fills(e.place(req(1, "BUY", 10, "MKT", algo_strategy="Adaptive", algo_params=patient), 0.0))
    assert mkt.execution.price == 100.0
    [lmt] = fills(e.place(req(2, "BUY", 10, "LMT", lmt=100.0, algo_strategy="Adaptive", algo_params=patient), 0.0))
    assert lmt.execution.price == 100.0
    plain = e.place(req(3, "BUY", 10, "LMT", lmt=100.0), 0.0)
    assert fills(plain) == []  # the ask is above the limit


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"algo_strategy": "Vwap"}, "Unsupported algo Vwap"),
        ({"algo_strategy": "Adaptive", "algo_params": (("adaptivePriority", "Hasty"),)}, "adaptivePriority"),
    ],
)
def test_unknown_algos_and_priorities_are_refused(fields: dict[str, object], reason: str) -> None:
    [rejected] = engine(Script({})).place(req(1, "BUY", 1, "MKT", **fields), 0.0)
    assert isinstance(rejected, OrderRejected) and reason in rejected.message


def test_adaptive_takes_no_stop_orders() -> None:
    [rejected] = engine(Script({})).place(req(1, "BUY", 1, "STP", aux=101.0, algo_strategy="Adaptive"), 0.0)
    assert isinstance(rejected, OrderRejected) and "does not take STP" in rejected.message


def test_oca_type_1_a_fill_cancels_the_rest_of_the_group() -> None:
    e = engine(Script({0: 100.0, 3: 98.0}))
    e.place(req(1, "BUY", 10, "LMT", lmt=98.5, oca_group="g", oca_type=1), 0.0)
    e.place(req(2, "BUY", 10, "LMT", lmt=97.0, oca_group="g", oca_type=1), 0.0)
    events = e.advance(4.0)
    assert [f.order.order_id for f in fills(events)] == [1]
    [cancelled] = [x for x in events if isinstance(x, OrderCancelled)]
    assert (cancelled.order.order_id, cancelled.reason) == (2, "OCA")


def test_oca_type_3_a_partial_fill_reduces_the_others_in_proportion() -> None:
    e = engine(Script({0: 100.0, 3: 98.0}), partial_fill_max=4)
    e.place(req(1, "BUY", 10, "LMT", lmt=98.5, oca_group="g", oca_type=3), 0.0)
    e.place(req(2, "BUY", 20, "LMT", lmt=97.0, oca_group="g", oca_type=3), 0.0)
    events = e.advance(3.0)
    assert [f.execution.shares for f in fills(events)] == [4.0]
    [reduced] = [x for x in events if isinstance(x, OrderUpdated) and x.order.order_id == 2]
    assert reduced.order.request.quantity == 12.0  # 40% of order 1 filled: order 2 keeps 60% of 20
    events = e.advance(5.0)  # order 1 fills in full at seconds 4 and 5 (4 + 4 + 2)
    assert e.order(1, 1).status == "Filled"  # type: ignore[union-attr]
    assert e.order(1, 2).status == "Cancelled"  # type: ignore[union-attr]


def test_ratchet_keeps_stops_on_the_tick_away_from_the_market() -> None:
    assert ratchet("SELL", None, 100.0, 0.333) == 99.66
    assert ratchet("BUY", None, 100.0, 0.333) == 100.34
    assert ratchet("SELL", 99.8, 100.0, 0.333) == 99.8


class Session600(Script):
    """A scripted market whose session is [0, 1200): it closes at 1200, the MOC/LOC cut-off is at 600."""

    def session_at(self, t: float) -> Session | None:
        return Session(dt.date(2025, 1, 6), 0, 1200) if 0 <= t < 1200 else None

    def in_session(self, t: float) -> bool:
        return 0 <= t < 1200


def test_moc_fills_at_the_closing_price_at_the_close_and_loc_only_within_its_limit() -> None:
    e = engine(Session600({0: 100.0, 1199: 101.0}))
    assert e.place(req(1, "BUY", 10, "MOC"), 10.0)[0].order.status == "Submitted"  # type: ignore[union-attr]
    e.place(req(2, "SELL", 10, "LOC", lmt=100.5), 10.0)
    e.place(req(3, "BUY", 10, "LOC", lmt=100.5), 10.0)
    assert fills(e.advance(1198.0)) == []  # nothing trades before the close
    events = e.advance(1210.0)
    by_id = {f.order.order_id: f.execution for f in fills(events)}
    assert sorted(by_id) == [1, 2]
    assert all((x.time, x.price) == (1199.0, 101.0) for x in by_id.values())  # the close, at the closing price
    [expired] = [x for x in events if isinstance(x, OrderCancelled)]
    assert expired.order.order_id == 3  # a buy limited to 100.50 does not trade at a 101.00 close


def test_moc_and_loc_are_refused_after_the_cutoff_and_can_no_longer_be_cancelled_or_changed() -> None:
    e = engine(Session600({}))
    e.place(req(1, "BUY", 10, "MOC"), 10.0)
    [late] = e.place(req(2, "BUY", 10, "MOC"), 600.0)
    assert isinstance(late, OrderRejected) and late.code == 201 and "before the close" in late.message
    [no_cancel] = e.cancel(1, 1, 700.0)
    assert isinstance(no_cancel, OrderRejected) and no_cancel.code == 161
    [no_change] = e.place(req(1, "BUY", 5, "MOC"), 700.0)
    assert isinstance(no_change, OrderRejected) and e.order(1, 1).request.quantity == 10  # type: ignore[union-attr]
    assert isinstance(e.place(req(3, "BUY", 10, "LOC"), 10.0)[0], OrderRejected)  # a LOC needs its limit
    assert isinstance(e.cancel(1, 1, 599.0)[0], OrderCancelled)  # before the cut-off it cancels as any order


def test_a_trailing_stop_limit_becomes_a_limit_its_offset_from_the_stop_when_triggered() -> None:
    # A sell trails by 1.00 from 103 (stop 102), triggers at 101.00: its limit is 102 - 0.50 = 101.50, above the bid
    # 100.99, so it rests until the bid is back at 101.69.
    e = engine(Script({0: 100.0, 2: 103.0, 4: 101.0, 6: 101.7}))
    e.place(req(1, "SELL", 10, "TRAIL LIMIT", aux=1.0, trail_stop_price=98.0, lmt_price_offset=0.5), 0.0)
    assert fills(e.advance(5.0)) == []
    assert e.order(1, 1).trail_stop == 102.0  # type: ignore[union-attr]
    [f] = fills(e.advance(7.0))
    assert (f.execution.time, f.execution.price) == (6.0, 101.69)


def test_a_trailing_stop_limit_needs_its_limit() -> None:
    [rejected] = engine(Script({})).place(req(1, "SELL", 1, "TRAIL LIMIT", aux=1.0), 0.0)
    assert isinstance(rejected, OrderRejected) and "lmtPriceOffset" in rejected.message
