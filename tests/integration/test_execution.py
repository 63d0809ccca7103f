"""Execution consumer, in process: ibsim (real TWS sockets) + the real Kafka broker.

Every test reads its outcome from the topics (read_committed) and checks ibsim's order book as ground truth.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consumers.execution import build
from consumers.execution.service import Executor, State
from ibsim import SimConfig, Simulator
from ibstream.config import Settings, load_settings
from ibstream.contracts import alerts, control, executions, order_events, routed_orders, utc_now
from ibstream.contracts.enums import (
    AdaptivePriority,
    ControlCommandKind,
    ExecutionSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    Side,
    TradingState,
)
from ibstream.kafka.clients import committed_offsets, create_consumer
from ibstream.sim.order_types import adaptive_price
from ibstream.trading_states import micros
from tests.integration.execution_support import (
    MONDAY_10AM,
    Reader,
    approval,
    kill_switch,
    routed,
    send,
    sender,
    wait_for,
)
from tests.integration.kafka_helpers import consume_all

pytestmark = pytest.mark.integration


@dataclass
class Running:
    sim: Simulator
    executor: Executor
    settings: Settings
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "executor did not stop"
        self.executor.journal.close()
        if self.errors:
            raise self.errors[0]

    def ib_orders(self, order_id: str) -> list[Any]:
        return [o for o in self.sim.orders() if o.order_ref == order_id]


@pytest.fixture
def run_executor(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(
        sim_overrides: dict[str, Any] | None = None,
        *,
        ready: bool = True,
        sim: Simulator | None = None,
        **overrides: Any,
    ) -> Running:
        if sim is None:
            sim_config = {
                "port": 0,
                "control_port": None,
                "start_time": MONDAY_10AM,
                "speed": 60.0,
                "seed": 7,
                **(sim_overrides or {}),
            }
            sim = Simulator(SimConfig(**sim_config)).start()
        values: dict[str, Any] = {
            **settings.model_dump(),
            "ib_port": sim.port,
            "state_dir": tmp_path,
            "ib_reconnect_base_seconds": 0.2,
            "ib_reconnect_cap_seconds": 0.5,
            "ib_connect_timeout_seconds": 3.0,
            **overrides,
        }
        executor = build(load_settings(**values))
        executor.journal.open()
        stop = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                executor.run(stop)
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=target, name="executor", daemon=True)
        thread.start()
        running = Running(sim, executor, executor.settings, stop, thread, errors)
        started.append(running)
        if ready:
            wait_for(lambda: executor.state is State.READY or bool(errors), timeout=20)
            assert not errors, errors
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(30)
        running.executor.journal.close()
    for sim in {id(r.sim): r.sim for r in started}.values():
        sim.stop()


def statuses(events: list[Any], order_id: str, leg: OrderLeg = OrderLeg.PARENT) -> list[OrderStatus]:
    return [e.status for e in events if e.order_id == order_id and e.leg is leg]


def test_market_order_is_placed_once_and_filled(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    order = routed("AAPL", Side.BUY, 25)
    events = Reader(running.settings, order_events.TOPIC)
    fills = Reader(running.settings, executions.TOPIC)
    # An undecodable record ahead of it goes to the DLQ and does not block the order behind it.
    garbage = sender(running.settings)
    garbage.send_raw(running.settings.kafka.topic_prefix + routed_orders.TOPIC.name, b"k", b"not avro")
    send(running.settings, order, sink=garbage)

    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, order.order_id))
    assert statuses(recorded, order.order_id) == [
        OrderStatus.PENDING_SUBMIT,
        OrderStatus.ACKNOWLEDGED,
        OrderStatus.FILLED,
    ]
    filled = next(e for e in recorded if e.status is OrderStatus.FILLED)
    assert filled.filled_quantity == 25 and filled.remaining_quantity == 0
    assert filled.broker_status == "Filled" and filled.source is ExecutionSource.LIVE
    assert len({e.event_id for e in recorded}) == len(recorded)

    (execution,) = fills.wait(lambda xs: len(xs) >= 1)
    at_ib = running.ib_orders(order.order_id)
    assert len(at_ib) == 1 and at_ib[0].status == "Filled"
    (ib_exec,) = at_ib[0].executions
    assert execution.exec_id == ib_exec.exec_id and execution.order_id == order.order_id
    assert execution.side is Side.BUY and execution.quantity == 25 and execution.price == ib_exec.price
    assert execution.commission == pytest.approx(ib_exec.commission)
    assert execution.ib_order_id == at_ib[0].order_id == filled.ib_order_id
    assert at_ib[0].request.account == "DU1234567" and at_ib[0].request.order_type == "MKT"
    (dead,) = consume_all(running.settings, running.settings.kafka.topic_prefix + routed_orders.TOPIC.dlq_name, 1)
    assert dict(dead.headers() or [])["dlq.error.kind"] == b"decode"
    events.close()
    fills.close()


def test_fresh_orders_are_placed_without_asking_ib_about_orders_first(run_executor: Callable[..., Running]) -> None:
    """Placement without a round trip, over ibsim's real socket: after the start reconciliation, a stream of fresh
    orders sends IB no reqAllOpenOrders/reqExecutions at all; each is journaled, placed and acknowledged once."""
    running = run_executor()
    session: Any = running.executor.session
    asked: list[str] = []
    for name in ("req_all_open_orders", "req_executions"):
        original = getattr(session, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            asked.append(_name)
            return _original(*args, **kwargs)

        setattr(session, name, counted)
    events = Reader(running.settings, order_events.TOPIC)
    sink = sender(running.settings)
    orders = []
    for symbol in ("AAPL", "MSFT", "AAPL", "MSFT", "AAPL", "MSFT"):
        orders.append(routed(symbol, Side.BUY, 1))  # routed_time: now, as risk stamps it right before sending
        send(running.settings, orders[-1], sink=sink)
        time.sleep(0.2)
    recorded = events.wait(lambda es: all(OrderStatus.FILLED in statuses(es, o.order_id) for o in orders), 30)
    assert asked == []
    for order in orders:
        assert len(running.ib_orders(order.order_id)) == 1
        assert statuses(recorded, order.order_id)[:2] == [OrderStatus.PENDING_SUBMIT, OrderStatus.ACKNOWLEDGED]
    assert running.executor.journal.in_doubt == {}
    acked = {e.order_id: e.event_time for e in recorded if e.status is OrderStatus.ACKNOWLEDGED}
    lags = sorted((acked[o.order_id] - o.routed_time).total_seconds() * 1000 for o in orders)
    print(f"routed → acknowledged, ms (send included, loaded machine): {[round(x, 1) for x in lags]}")
    events.close()


def test_limit_and_bracket_orders(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    price = running.sim.quote("AAPL").ask
    marketable = routed("AAPL", Side.BUY, 7, order_type=OrderType.LMT, limit_price=round(price * 1.02, 2))
    # Take-profit below the market: it fills as soon as the parent does, and OCA cancels the stop-loss.
    bracket = routed("AAPL", Side.BUY, 10, stop_loss=round(price * 0.90, 2), take_profit=round(price * 0.97, 2))
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, marketable, bracket)

    def done(es: list[Any]) -> bool:
        return (
            OrderStatus.FILLED in statuses(es, marketable.order_id)
            and OrderStatus.FILLED in statuses(es, bracket.order_id, OrderLeg.TAKE_PROFIT)
            and OrderStatus.CANCELLED in statuses(es, bracket.order_id, OrderLeg.STOP_LOSS)
        )

    recorded = events.wait(done)
    events.close()
    assert statuses(recorded, marketable.order_id)[-1] is OrderStatus.FILLED
    (limit_at_ib,) = running.ib_orders(marketable.order_id)
    assert limit_at_ib.request.order_type == "LMT" and limit_at_ib.request.lmt_price == marketable.limit_price

    legs = sorted(running.ib_orders(bracket.order_id), key=lambda o: o.order_id)
    assert len(legs) == 3
    parent, stop_loss, take_profit = legs
    assert [o.request.transmit for o in legs] == [False, False, True]
    assert parent.request.parent_id == 0
    assert stop_loss.request.parent_id == take_profit.request.parent_id == parent.order_id
    assert (stop_loss.request.order_type, stop_loss.request.aux_price, stop_loss.request.action) == (
        "STP",
        bracket.stop_loss,
        "SELL",
    )
    assert (take_profit.request.order_type, take_profit.request.lmt_price) == ("LMT", bracket.take_profit)
    assert [parent.status, stop_loss.status, take_profit.status] == ["Filled", "Cancelled", "Filled"]
    assert statuses(recorded, bracket.order_id)[-1] is OrderStatus.FILLED
    # The children were held (submitted) until the parent filled.
    assert OrderStatus.SUBMITTED in statuses(recorded, bracket.order_id, OrderLeg.STOP_LOSS)


def test_an_adaptive_entry_with_a_trailing_stop_loss_is_placed_and_the_trailing_stop_protects(
    run_executor: Callable[..., Running],
) -> None:
    """A Patient Adaptive market buy whose stop-loss trails by 3 cents from an initial stop $5 under the market:
    ibsim fills the entry at the Adaptive price, the stop ratchets up from its initial price and closes the position,
    the target is cancelled; our order events name each leg. A second bracket trailing by $5 stays working: a
    restarted executor's reconciliation recognises its TRAIL child as the stop-loss leg (matched, not recovered)."""
    first = run_executor()
    quote = first.sim.quote("AAPL")
    order = routed(
        "AAPL",
        Side.BUY,
        10,
        adaptive_priority=AdaptivePriority.PATIENT,
        stop_loss=round(quote.bid - 5, 2),
        stop_loss_trail_amount=0.03,
        take_profit=round(quote.ask + 50, 2),
    )
    working = routed("MSFT", Side.BUY, 3, stop_loss=round(first.sim.quote("MSFT").bid - 6, 2), stop_loss_trail_amount=5)
    events = Reader(first.settings, order_events.TOPIC)
    send(first.settings, order, working)
    recorded = events.wait(
        lambda es: (
            OrderStatus.FILLED in statuses(es, order.order_id, OrderLeg.STOP_LOSS)
            and OrderStatus.CANCELLED in statuses(es, order.order_id, OrderLeg.TAKE_PROFIT)
            and OrderStatus.ACKNOWLEDGED in statuses(es, working.order_id, OrderLeg.STOP_LOSS)
        ),
        timeout=30,
    )
    assert statuses(recorded, order.order_id)[-1] is OrderStatus.FILLED
    parent, stop_loss, take_profit = sorted(first.ib_orders(order.order_id), key=lambda o: o.order_id)
    assert (parent.request.algo_strategy, parent.request.algo_params) == (
        "Adaptive",
        (("adaptivePriority", "Patient"),),
    )
    (entry,) = parent.executions
    at_entry = first.sim.quote("AAPL", entry.time)
    assert entry.price == adaptive_price("BUY", at_entry.bid, at_entry.ask, "Patient")
    request = stop_loss.request
    assert (request.order_type, request.aux_price, request.trail_stop_price, request.action) == (
        "TRAIL",
        0.03,
        order.stop_loss,
        "SELL",
    )
    assert stop_loss.trail_stop is not None and order.stop_loss is not None
    assert stop_loss.trail_stop > order.stop_loss  # it ratcheted up with the market
    (exit_fill,) = stop_loss.executions
    assert first.sim.quote("AAPL", exit_fill.time).last <= stop_loss.trail_stop
    assert take_profit.status == "Cancelled"
    assert {p.symbol: p.quantity for p in first.sim.positions()}["AAPL"] == 0

    first.halt()
    before_restart = len(recorded)
    second = run_executor(sim=first.sim)
    recorded = events.wait(
        lambda es: any(
            e.order_id == working.order_id and e.leg is OrderLeg.STOP_LOSS and e.reconciliation_status
            for e in es[before_restart:]
        )
    )
    reconciled = [e for e in recorded if e.order_id == working.order_id and e.reconciliation_status]
    assert {(e.leg, e.reconciliation_status) for e in reconciled} >= {(OrderLeg.STOP_LOSS, "matched")}
    assert "recovered" not in {e.reconciliation_status for e in reconciled}
    assert [o.status for o in second.ib_orders(working.order_id)] == ["Filled", "Submitted"]
    events.close()


def test_entries_in_one_oca_group_the_first_fill_cancels_the_other_with_its_bracket(
    run_executor: Callable[..., Running],
) -> None:
    """Two entries in one OCA group: a buy resting 20% under the market with its stop, then a market sell. The sell
    fills, IB (ibsim) cancels the resting buy and its untriggered stop; our events record the buy cancelled."""
    running = run_executor()
    bid = running.sim.quote("QQQ").bid
    resting = routed(
        "QQQ",
        Side.BUY,
        4,
        order_type=OrderType.LMT,
        limit_price=round(bid * 0.8, 2),
        stop_loss=round(bid * 0.7, 2),
        oca_group="qqq-either-way",
    )
    market = routed("QQQ", Side.SELL, 4, stop_loss=round(bid * 1.1, 2), oca_group="qqq-either-way")
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, resting)
    events.wait(lambda es: OrderStatus.ACKNOWLEDGED in statuses(es, resting.order_id))
    send(running.settings, market)
    recorded = events.wait(
        lambda es: (
            OrderStatus.FILLED in statuses(es, market.order_id)
            and OrderStatus.CANCELLED in statuses(es, resting.order_id)
            and OrderStatus.CANCELLED in statuses(es, resting.order_id, OrderLeg.STOP_LOSS)
        )
    )
    events.close()
    resting_parent, resting_stop = sorted(running.ib_orders(resting.order_id), key=lambda o: o.order_id)
    market_parent, market_stop = sorted(running.ib_orders(market.order_id), key=lambda o: o.order_id)
    assert (resting_parent.request.oca_group, resting_parent.request.oca_type) == ("qqq-either-way", 1)
    assert (market_parent.request.oca_group, market_stop.request.oca_group) == ("qqq-either-way", "")
    assert [resting_parent.status, resting_stop.status] == ["Cancelled", "Cancelled"]
    assert [market_parent.status, market_stop.status] == ["Filled", "Submitted"]  # the filled entry keeps its stop
    assert statuses(recorded, resting.order_id)[-1] is OrderStatus.CANCELLED


def test_a_moc_entry_with_its_stop_fills_at_the_close_and_a_loc_out_of_reach_expires(
    run_executor: Callable[..., Running],
) -> None:
    """At 15:30 a MOC buy with a stop and a LOC buy limited 10% under the market: nothing trades until the close,
    then the MOC fills at the closing price (its stop starts working) and the LOC expires cancelled."""
    start = MONDAY_10AM.replace(hour=15, minute=30)
    running = run_executor({"start_time": start, "speed": 120.0})
    bid = running.sim.quote("SPY").bid
    moc = routed("SPY", Side.BUY, 5, order_type=OrderType.MOC, stop_loss=round(bid * 0.9, 2))
    loc = routed("SPY", Side.BUY, 5, order_type=OrderType.LOC, limit_price=round(bid * 0.9, 2))
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, moc, loc)
    recorded = events.wait(
        lambda es: (
            OrderStatus.FILLED in statuses(es, moc.order_id) and OrderStatus.CANCELLED in statuses(es, loc.order_id)
        ),
        timeout=40,
    )
    events.close()
    assert OrderStatus.ACKNOWLEDGED in statuses(recorded, moc.order_id)
    parent, stop = sorted(running.ib_orders(moc.order_id), key=lambda o: o.order_id)
    close = int(MONDAY_10AM.replace(hour=16, minute=0).timestamp())
    (fill,) = parent.executions
    assert parent.request.order_type == "MOC" and (fill.time, fill.price) == (
        close - 1,
        running.sim.quote("SPY", close - 1).last,
    )
    assert stop.status in ("Submitted", "PreSubmitted")  # working from the next session on
    (loc_at_ib,) = running.ib_orders(loc.order_id)
    assert (loc_at_ib.request.order_type, loc_at_ib.status, loc_at_ib.executions) == ("LOC", "Cancelled", ())


def test_partial_fills_then_the_rest(run_executor: Callable[..., Running]) -> None:
    running = run_executor({"partial_fill_max": 4})
    order = routed("MSFT", Side.SELL, 10)
    events = Reader(running.settings, order_events.TOPIC)
    fills = Reader(running.settings, executions.TOPIC)
    send(running.settings, order)
    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, order.order_id))
    parent = [e for e in recorded if e.order_id == order.order_id]
    assert [(e.status, e.filled_quantity) for e in parent if e.filled_quantity > 0] == [
        (OrderStatus.PARTIALLY_FILLED, 4),
        (OrderStatus.PARTIALLY_FILLED, 8),
        (OrderStatus.FILLED, 10),
    ]
    recorded_fills = fills.wait(lambda xs: len(xs) >= 3)
    assert [x.quantity for x in recorded_fills] == [4, 4, 2]
    assert all(x.side is Side.SELL for x in recorded_fills)
    (at_ib,) = running.ib_orders(order.order_id)
    assert at_ib.status == "Filled" and len(at_ib.executions) == 3
    events.close()
    fills.close()


def test_ib_rejection_ends_rejected_with_ibs_message(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    message = "Order rejected - reason:Simulated margin check"
    running.sim.reject_next_order(201, message)
    order = routed("AAPL", Side.BUY, 3)
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, order)
    recorded = events.wait(lambda es: OrderStatus.REJECTED in statuses(es, order.order_id))
    rejected = next(e for e in recorded if e.status is OrderStatus.REJECTED)
    assert (rejected.broker_code, rejected.broker_message) == (201, message)
    assert statuses(recorded, order.order_id) == [OrderStatus.PENDING_SUBMIT, OrderStatus.REJECTED]
    (at_ib,) = running.ib_orders(order.order_id)
    assert at_ib.status == "Inactive"
    events.close()


def test_kill_switch_cancels_open_orders_within_a_second(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    bid = running.sim.quote("AAPL").bid
    resting = routed("AAPL", Side.BUY, 5, order_type=OrderType.LMT, limit_price=round(bid * 0.8, 2))
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, resting)
    events.wait(lambda es: OrderStatus.ACKNOWLEDGED in statuses(es, resting.order_id))

    operator = sender(running.settings)
    operator.reachable()  # connected before the clock starts: we measure the executor, not a client's startup
    issued = time.monotonic()
    send(running.settings, kill_switch(True), sink=operator)
    written = time.monotonic()
    wait_for(lambda: [o.status for o in running.ib_orders(resting.order_id)] == ["Cancelled"], timeout=5)
    cancelled = time.monotonic()
    print(
        f"kill switch: issued → cancelled at ibsim {(cancelled - issued) * 1000:.0f} ms "
        f"(written to Kafka → cancelled {(cancelled - written) * 1000:.0f} ms)"
    )
    assert cancelled - issued < 1.0
    recorded = events.wait(lambda es: OrderStatus.CANCELLED in statuses(es, resting.order_id))
    assert next(e for e in recorded if e.status is OrderStatus.CANCELLED).broker_status == "Cancelled"

    # While engaged, a routed order is consumed and refused, never placed later.
    refused = routed("AAPL", Side.BUY, 1)
    send(running.settings, refused)
    recorded = events.wait(lambda es: OrderStatus.REJECTED in statuses(es, refused.order_id))
    assert "kill switch" in (next(e for e in recorded if e.order_id == refused.order_id).broker_message or "")
    assert running.ib_orders(refused.order_id) == []

    send(running.settings, kill_switch(False))
    resumed = routed("AAPL", Side.BUY, 1)
    send(running.settings, resumed)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, resumed.order_id))
    assert len(running.ib_orders(resumed.order_id)) == 1
    events.close()
    ops = Reader(running.settings, alerts.TOPIC)
    switch = ops.wait(lambda xs: [x.state.value for x in xs if x.kind == "kill_switch"] == ["firing", "resolved"])
    assert len({x.alert_id for x in switch if x.kind == "kill_switch"}) == 1
    ops.close()


def test_kill_switch_keeps_the_stop_and_target_of_a_filled_bracket(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    price = running.sim.quote("MSFT").ask
    # A filled entry: its stop (10% under) and target (10% over) stay working at ibsim.
    held = routed("MSFT", Side.BUY, 5, stop_loss=round(price * 0.90, 2), take_profit=round(price * 1.10, 2))
    # A resting entry (20% under the market) with its own bracket: the kill switch cancels it, children included.
    bid = running.sim.quote("MSFT").bid
    resting = routed(
        "MSFT",
        Side.BUY,
        5,
        order_type=OrderType.LMT,
        limit_price=round(bid * 0.8, 2),
        stop_loss=round(bid * 0.7, 2),
        take_profit=round(bid * 0.9, 2),
    )
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, held, resting)
    events.wait(
        lambda es: (
            OrderStatus.FILLED in statuses(es, held.order_id)
            and OrderStatus.ACKNOWLEDGED in statuses(es, held.order_id, OrderLeg.STOP_LOSS)
            and OrderStatus.ACKNOWLEDGED in statuses(es, resting.order_id)
        )
    )

    send(running.settings, kill_switch(True))
    wait_for(lambda: {o.status for o in running.ib_orders(resting.order_id)} == {"Cancelled"}, timeout=5)
    time.sleep(1.0)  # any cancel of the held bracket's legs would have reached ibsim by now
    legs = sorted(running.ib_orders(held.order_id), key=lambda o: o.order_id)
    assert [o.status for o in legs] == ["Filled", "Submitted", "Submitted"], [(o.order_id, o.status) for o in legs]
    assert {p.symbol: p.quantity for p in running.sim.positions()} == {"MSFT": 5}
    events.close()


def test_kill_switch_engaged_while_down_is_honoured_at_startup(
    run_executor: Callable[..., Running], settings: Settings
) -> None:
    first = run_executor()
    bid = first.sim.quote("MSFT").bid
    resting = routed("MSFT", Side.BUY, 2, order_type=OrderType.LMT, limit_price=round(bid * 0.8, 2))
    events = Reader(first.settings, order_events.TOPIC)
    send(first.settings, resting)
    events.wait(lambda es: OrderStatus.ACKNOWLEDGED in statuses(es, resting.order_id))
    first.halt()
    send(settings, kill_switch(True, "MSFT"))

    second = run_executor(sim=first.sim)
    recorded = events.wait(lambda es: OrderStatus.CANCELLED in statuses(es, resting.order_id))
    assert [o.status for o in second.ib_orders(resting.order_id)] == ["Cancelled"]
    # The restart recognised the working order from its events (reconciled as matched), it placed nothing.
    assert len(second.sim.orders()) == 1
    assert any(e.reconciliation_status == "matched" for e in recorded if e.order_id == resting.order_id)
    events.close()


def test_trading_states_survive_a_restart_and_a_stale_off_or_an_unreadable_record_keep_orders_out(
    run_executor: Callable[..., Running], settings: Settings
) -> None:
    base = micros(utc_now())

    def command(kind: ControlCommandKind, target: str, sequence: int, state: TradingState | None = None) -> Any:
        return kill_switch(True, target).model_copy(
            update={"command": kind, "sequence": base + sequence, "state": state, "command_id": f"c{sequence}"}
        )

    first = run_executor()
    events = Reader(first.settings, order_events.TOPIC)
    send(settings, command(ControlCommandKind.TRADING_STATE, "MSFT", 1, TradingState.HALTED))
    refused = routed("MSFT", Side.BUY, 1)
    send(settings, refused)
    recorded = events.wait(lambda es: OrderStatus.REJECTED in statuses(es, refused.order_id))
    assert "trading state halted for MSFT" in (
        next(e for e in recorded if e.order_id == refused.order_id).broker_message or ""
    )
    first.halt()

    # While execution is down: a kill switch on AAPL, then an old release written after it (a replay), and a
    # control record nobody can read for SPY.
    send(
        settings,
        command(ControlCommandKind.KILL_SWITCH_ON, "AAPL", 3),
        command(ControlCommandKind.KILL_SWITCH_OFF, "AAPL", 2),
    )
    garbage = sender(settings)
    garbage.send_raw(settings.kafka.topic_prefix + control.TOPIC.name, b"kill_switch:SPY", b"\x00not avro")
    assert garbage.flush(10) == 0

    second = run_executor(sim=first.sim)
    orders = {symbol: routed(symbol, Side.BUY, 1) for symbol in ("MSFT", "AAPL", "SPY")}
    send(settings, *orders.values())
    recorded = events.wait(lambda es: all(OrderStatus.REJECTED in statuses(es, o.order_id) for o in orders.values()))
    why = {s: next(e for e in recorded if e.order_id == o.order_id).broker_message or "" for s, o in orders.items()}
    assert why["MSFT"].startswith("trading state halted for MSFT"), why
    assert why["AAPL"].startswith("kill switch on (AAPL)"), why
    assert "unreadable control record" in why["SPY"], why
    assert not [o for o in second.sim.orders() if o.order_ref in {o.order_id for o in orders.values()}]
    events.close()


def test_fill_during_disconnect_is_recovered_by_reconciliation(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    running.sim.set_delays(fill_seconds=1.0)
    order = routed("AAPL", Side.BUY, 6)
    events = Reader(running.settings, order_events.TOPIC)
    fills = Reader(running.settings, executions.TOPIC)
    send(running.settings, order)
    events.wait(lambda es: OrderStatus.ACKNOWLEDGED in statuses(es, order.order_id))
    running.sim.refuse_connections(2.0, drop_existing=True)
    # ibsim fills while nobody is connected: the fill cannot be delivered live.
    wait_for(lambda: [o.status for o in running.ib_orders(order.order_id)] == ["Filled"], timeout=5)
    assert running.executor.state is not State.READY

    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, order.order_id), timeout=20)
    filled = next(e for e in recorded if e.status is OrderStatus.FILLED)
    assert filled.source is ExecutionSource.RECONCILIATION and filled.reconciliation_status == "recovered"
    assert filled.filled_quantity == 6
    (fill,) = fills.wait(lambda xs: len(xs) >= 1)
    assert fill.source is ExecutionSource.RECONCILIATION and fill.quantity == 6
    assert fill.exec_id == running.ib_orders(order.order_id)[0].executions[0].exec_id
    assert len(running.ib_orders(order.order_id)) == 1
    events.close()
    fills.close()


def test_gateway_restart_rolling_ids_back_never_reuses_an_id(run_executor: Callable[..., Running]) -> None:
    running = run_executor()
    first = routed("AAPL", Side.BUY, 1)
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, first)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, first.order_id))
    running.sim.restart_gateway(downtime_seconds=0.5, rollback=5)
    wait_for(lambda: running.executor.state is not State.READY, timeout=5)
    wait_for(lambda: running.executor.state is State.READY, timeout=10)
    second = routed("AAPL", Side.BUY, 1)
    send(running.settings, second)
    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, second.order_id))
    (a,) = running.ib_orders(first.order_id)
    (b,) = running.ib_orders(second.order_id)
    assert b.order_id > a.order_id
    assert not [e for e in recorded if e.status in (OrderStatus.ERROR, OrderStatus.REJECTED)]
    events.close()


@pytest.mark.parametrize("restart", [False, True], ids=["connection_drop", "gateway_restart"])
def test_a_bracket_whose_transmitting_leg_is_lost_is_cancelled_at_ib_too(
    run_executor: Callable[..., Running], restart: bool
) -> None:
    """The bracket's parent and stop-loss (transmit=False) reach the gateway, its transmitting take-profit is lost
    with the connection (or with a gateway restart). Reconnected, execution finds no leg listed and records them
    cancelled; the gateway must not keep legs that could still be transmitted (the drop leaves them held there, the
    restart loses them), and IB's 'nothing to cancel' answers change nothing."""
    running = run_executor()
    price = running.sim.quote("AAPL").ask
    bracket = routed(
        "AAPL",
        Side.BUY,
        10,
        order_type=OrderType.LMT,
        limit_price=round(price * 0.8, 2),
        stop_loss=round(price * 0.7, 2),
        take_profit=round(price * 1.2, 2),
    )
    legs = (OrderLeg.PARENT, OrderLeg.STOP_LOSS, OrderLeg.TAKE_PROFIT)
    events = Reader(running.settings, order_events.TOPIC)
    ops = Reader(running.settings, alerts.TOPIC)
    running.sim.lose_next_transmit(restart_seconds=0.5 if restart else 0.0)
    send(running.settings, bracket)

    def all_cancelled(es: list[Any]) -> bool:
        return all(OrderStatus.CANCELLED in statuses(es, bracket.order_id, leg) for leg in legs)

    recorded = events.wait(all_cancelled, timeout=30)
    held = {e.leg: e.ib_order_id for e in recorded if e.order_id == bracket.order_id}
    expected = [] if restart else [(held[OrderLeg.PARENT], "Cancelled"), (held[OrderLeg.STOP_LOSS], "Cancelled")]
    wait_for(lambda: sorted((o.order_id, o.status) for o in running.ib_orders(bracket.order_id)) == expected)
    time.sleep(1.0)  # IB's answers to the cancels (202, 10147, 10148) have arrived and been handled
    recorded = events.poll(0.5)
    for leg in legs:
        assert statuses(recorded, bracket.order_id, leg) == [OrderStatus.PENDING_SUBMIT, OrderStatus.CANCELLED], leg
    assert sorted((o.order_id, o.status) for o in running.ib_orders(bracket.order_id)) == expected
    assert running.executor.state is State.READY and not running.errors
    raised = ops.wait(lambda xs: any(x.kind == "order_missing_at_ib" for x in xs))
    assert {x.kind for x in raised} <= {"order_missing_at_ib", "ib_disconnected"}
    events.close()
    ops.close()


def test_live_account_is_refused(run_executor: Callable[..., Running]) -> None:
    running = run_executor({"accounts": ("U1234567",)}, ready=False)
    wait_for(lambda: running.executor.state is State.REFUSED, timeout=15)
    warnings = Reader(running.settings, alerts.TOPIC)
    order = routed("AAPL", Side.BUY, 1)
    send(running.settings, order)
    (alert,) = warnings.wait(lambda xs: any(x.kind == "paper_interlock" for x in xs))
    assert "U1234567" in alert.message and alert.severity.value == "critical"
    time.sleep(1.5)
    assert running.sim.orders() == []
    assert running.executor.state is State.REFUSED
    # Held, not consumed past: the group has committed nothing on the routed topic.
    probe = create_consumer(running.settings, running.settings.kafka.topic_prefix + running.settings.execution.group_id)
    assert committed_offsets(probe, {running.settings.kafka.topic_prefix + routed_orders.TOPIC.name: 1}) == {}
    probe.close()
    warnings.close()


def test_a_second_executor_waits_and_never_double_places(run_executor: Callable[..., Running], tmp_path: Path) -> None:
    first = run_executor()
    # Another host: its own journal directory, the same IB client id and account. IB refuses the second session
    # with the same client id (326), so it cannot place anything while the first one lives.
    second = run_executor(sim=first.sim, ready=False, state_dir=tmp_path / "other-host")
    events = Reader(first.settings, order_events.TOPIC)
    one = routed("AAPL", Side.BUY, 2)
    send(first.settings, one)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, one.order_id))
    assert second.executor.state is not State.READY

    first.halt()
    wait_for(lambda: second.executor.state is State.READY, timeout=15)
    two = routed("AAPL", Side.BUY, 3)
    send(first.settings, two)
    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, two.order_id))
    assert len(first.ib_orders(one.order_id)) == 1 and len(first.ib_orders(two.order_id)) == 1
    assert len(first.sim.orders()) == 2
    assert len({e.event_id for e in recorded}) == len(recorded)
    events.close()


def test_fenced_routed_consumer_is_replaced_and_orders_keep_flowing(run_executor: Callable[..., Running]) -> None:
    """librdkafka fences a static member for good after its session ran out during a broker restart; the executor
    must join again rather than sit on a dead consumer, and still place every order exactly once."""
    running = run_executor()
    settings = running.settings
    events = Reader(settings, order_events.TOPIC)
    one = routed("AAPL", Side.BUY, 2)
    send(settings, one)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, one.order_id))

    group = f"{settings.kafka.topic_prefix}{settings.execution.group_id}"
    intruder = create_consumer(
        settings, group, **{"group.instance.id": f"{group}-{running.executor.account}", "enable.auto.commit": False}
    )
    intruder.subscribe([settings.kafka.topic_prefix + routed_orders.TOPIC.name])
    try:

        def replaced() -> bool:
            intruder.poll(0.05)  # joins the group, which fences the executor's consumer
            return running.executor.routed_consumers_replaced >= 1

        wait_for(replaced, timeout=60)
    finally:
        with contextlib.suppress(Exception):  # the executor's new consumer fences the intruder in turn
            intruder.close()
    two = routed("AAPL", Side.BUY, 3)
    send(settings, two)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, two.order_id), timeout=60)
    assert len(running.ib_orders(one.order_id)) == 1 and len(running.ib_orders(two.order_id)) == 1
    assert running.executor.state is State.READY and not running.errors
    events.close()
    running.halt()


# --- only what risk approved (issue #21) ----------------------------------------------------------------------------


def dead_letters(settings: Settings, expected: int) -> list[dict[str, bytes]]:
    """The headers of the routed DLQ's records (the DeadLetter's origin and error, readable without Avro)."""
    topic = settings.kafka.topic_prefix + routed_orders.TOPIC.dlq_name
    return [dict(m.headers() or []) for m in consume_all(settings, topic, expected)]


def test_a_routed_order_without_a_decision_is_dead_lettered_and_never_placed(
    run_executor: Callable[..., Running],
) -> None:
    running = run_executor(execution_decision_wait_seconds=1.0)
    events = Reader(running.settings, order_events.TOPIC)
    raised = Reader(running.settings, alerts.TOPIC)
    forged = routed("AAPL", Side.BUY, 10)  # written straight to orders.routed.v1, no risk decision
    approved = routed("MSFT", Side.BUY, 3)  # behind it, with its decision: placed once the forged one is refused
    send(running.settings, forged, decided=False)
    send(running.settings, approved)

    recorded = events.wait(lambda es: OrderStatus.FILLED in statuses(es, approved.order_id), timeout=30)
    (dead,) = dead_letters(running.settings, 1)
    assert dead["dlq.error.kind"] == b"unapproved" and dead["dlq.original.topic"].endswith(b"orders.routed.v1")
    assert b"no approved risk decision for order " + forged.order_id.encode() in dead["dlq.error.message"]
    # The Connect-style facts: the executor's group and the refusal's class (never raised: no frames to show).
    group = running.settings.kafka.topic_prefix + running.settings.execution.group_id
    assert dead["ibstream.errors.consumer.group"] == group.encode()
    assert dead["ibstream.errors.exception.class.name"].endswith(b".UnapprovedOrderError")
    klass = dead["ibstream.errors.exception.class.name"]
    assert dead["ibstream.errors.exception.stacktrace"].startswith(klass + b": no approved risk decision")
    assert running.ib_orders(forged.order_id) == [] and len(running.ib_orders(approved.order_id)) == 1
    assert not [e for e in recorded if e.order_id == forged.order_id]
    alerted = raised.wait(lambda xs: any(a.kind == "unapproved_order" for a in xs))
    (alert,) = [a for a in alerted if a.kind == "unapproved_order"]
    assert alert.order_id == forged.order_id and alert.severity.value == "critical"
    events.close()
    raised.close()


def test_a_routed_order_whose_terms_differ_from_its_approved_decision_is_never_placed(
    run_executor: Callable[..., Running],
) -> None:
    running = run_executor()
    events = Reader(running.settings, order_events.TOPIC)
    approved_terms = routed("AAPL", Side.BUY, 10)
    tampered = approved_terms.model_copy(update={"quantity": 1000.0})  # same order id and decision, other terms
    follow_up = routed("AAPL", Side.BUY, 2)
    send(running.settings, approval(approved_terms), tampered, decided=False)
    send(running.settings, follow_up)

    events.wait(lambda es: OrderStatus.FILLED in statuses(es, follow_up.order_id), timeout=30)
    (dead,) = dead_letters(running.settings, 1)
    assert dead["dlq.error.kind"] == b"unapproved"
    assert b"differ from those risk approved" in dead["dlq.error.message"]
    assert running.ib_orders(tampered.order_id) == []
    assert [o.request.quantity for o in running.ib_orders(follow_up.order_id)] == [2]
    events.close()


def test_a_decision_seen_before_a_restart_still_places_its_order_routed_during_the_restart(
    run_executor: Callable[..., Running], settings: Settings
) -> None:
    first = run_executor()
    order = routed("AAPL", Side.BUY, 5)
    send(first.settings, approval(order))
    wait_for(lambda: order.order_id in first.executor.decisions.approvals)
    first.halt()
    send(settings, order, decided=False)  # its decision is on the topic already

    second = run_executor(sim=first.sim, execution_decision_wait_seconds=1.0)
    events = Reader(second.settings, order_events.TOPIC)
    events.wait(lambda es: OrderStatus.FILLED in statuses(es, order.order_id), timeout=30)
    assert len(second.ib_orders(order.order_id)) == 1
    assert dead_letters(second.settings, 0) == []
    events.close()
