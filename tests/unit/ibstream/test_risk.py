"""Risk gate: each check has a passing and a failing case (table-driven), and the gate's decision/route."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ibstream import ids, risk
from ibstream.config import load_settings
from ibstream.contracts import (
    TERM_FIELDS,
    AccountState,
    ControlCommand,
    Execution,
    OrderEvent,
    OrderIntent,
    Position,
    Quote,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
)
from ibstream.contracts.enums import (
    ControlCommandKind,
    ExecutionSource,
    MarketDataSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradingState,
)
from ibstream.exceptions import ConfigError

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)

LIMITS = risk.RiskLimits(
    max_position=500,
    max_gross_exposure=50_000,
    max_order_notional=20_000,
    min_stop_pct=0.2,
    max_stop_pct=5.0,
    account_equity=100_000,
    risk_per_trade_pct=1.0,  # 1 000 at risk per trade
    max_orders_per_minute=3,
    price_band_pct=2.0,
    quote_max_age_seconds=5.0,
    daily_loss_limit=1_000,
    account_state_max_age_seconds=300,
    reduce_opposite=False,
)


def quote(symbol: str = "AAPL", bid: float = 99.99, ask: float = 100.01, age: float = 1.0) -> Quote:
    at = NOW - timedelta(seconds=age)
    return Quote(
        symbol=symbol,
        con_id=1,
        bid=bid,
        ask=ask,
        last=100.0,
        event_time=at,
        ingest_time=at,
        source=MarketDataSource.SIM,
    )


def intent(**overrides: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "order_id": "o-1",
        "run_id": "r-1",
        "signal_id": "s-1",
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 100.0,
        "order_type": OrderType.LMT,
        "limit_price": 100.0,
        "stop_loss": 98.0,
        "take_profit": 104.0,
        "requested_by": "test",
        "created_time": NOW,
    }
    values.update(overrides)
    return OrderIntent(**values)


def position(symbol: str, quantity: float, unrealized: float = 0.0, price: float = 100.0) -> Position:
    return Position(
        account="DU1",
        symbol=symbol,
        con_id=1,
        quantity=quantity,
        avg_cost=price,
        market_price=price,
        unrealized_pnl=unrealized,
        source=ExecutionSource.LIVE,
        time=NOW,
    )


def execution(exec_id: str, pnl: float, when: datetime = NOW) -> Execution:
    return Execution(
        exec_id=exec_id,
        order_id="x",
        symbol="AAPL",
        account="DU1",
        side=Side.SELL,
        quantity=1,
        price=1,
        cumulative_quantity=1,
        avg_price=1,
        realized_pnl=pnl,
        source=ExecutionSource.LIVE,
        exec_time=when,
        ingest_time=when,
    )


def state(target: str, trading_state: TradingState, sequence: int = 10) -> ControlCommand:
    return ControlCommand(
        command_id=f"t-{target}-{sequence}",
        command=ControlCommandKind.TRADING_STATE,
        target=target,
        reason="test",
        actor="ops",
        parameters={},
        issued_time=NOW,
        sequence=sequence,
        state=trading_state,
    )


def kill(kind: ControlCommandKind = ControlCommandKind.KILL_SWITCH_ON, target: str = "all") -> ControlCommand:
    # An off is issued after the on it releases: commands are ordered by their sequence (here their issued time).
    later = timedelta(seconds=1 if kind is ControlCommandKind.KILL_SWITCH_OFF else 0)
    return ControlCommand(
        command_id=f"c-{kind.value}",
        command=kind,
        target=target,
        reason="test",
        actor="ops",
        parameters={},
        issued_time=NOW + later,
    )


def approved_decision(n: int, when: datetime) -> RiskDecision:
    return RiskDecision(
        decision_id=f"d{n}",
        order_id=f"old{n}",
        symbol="AAPL",
        approved=True,
        checks=[],
        intent_time=when,
        decided_time=when,
    )


def account(
    age: float = 5.0,
    net_liquidation: float = 100_000,
    buying_power: float = 400_000,
    daily_pnl: float | None = None,
    realized: float | None = None,
    unrealized: float | None = None,
) -> AccountState:
    return AccountState(
        account="DU1",
        base_currency="USD",
        net_liquidation=net_liquidation,
        buying_power=buying_power,
        available_funds=net_liquidation,
        excess_liquidity=net_liquidation,
        gross_position_value=0.0,
        daily_pnl=daily_pnl,
        realized_pnl=realized,
        unrealized_pnl=unrealized,
        time=NOW - timedelta(seconds=age),
    )


def routed(order_id: str, symbol: str = "AAPL", side: Side = Side.BUY, quantity: float = 100.0) -> RoutedOrder:
    return RoutedOrder(
        order_id=order_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=OrderType.LMT,
        limit_price=100.0,
        stop_loss=98.0 if side is Side.BUY else 102.0,
        decision_id=f"d-{order_id}",
        routed_time=NOW,
    )


def order_event(
    order_id: str,
    status: OrderStatus,
    remaining: float,
    filled: float = 0.0,
    symbol: str = "AAPL",
    leg: OrderLeg = OrderLeg.PARENT,
) -> OrderEvent:
    return OrderEvent(
        event_id=f"{order_id}-{status}-{filled}",
        order_id=order_id,
        leg=leg,
        symbol=symbol,
        status=status,
        filled_quantity=filled,
        remaining_quantity=remaining,
        source=ExecutionSource.LIVE,
        event_time=NOW,
    )


def working(
    order_id: str, symbol: str = "AAPL", side: Side = Side.BUY, quantity: float = 100.0
) -> Callable[[risk.RiskView], None]:
    """An entry routed and acknowledged at IB, nothing filled."""

    def setup(view: risk.RiskView) -> None:
        view.apply_routed(routed(order_id, symbol, side, quantity))
        view.apply_order_event(order_event(order_id, OrderStatus.ACKNOWLEDGED, quantity, symbol=symbol))

    return setup


def view_with(*setup: Callable[[risk.RiskView], None], with_quote: bool = True) -> risk.RiskView:
    view = risk.RiskView()
    if with_quote:
        view.apply_quote(quote())
    for step in setup:
        step(view)
    return view


Case = tuple[str, Callable[[OrderIntent, risk.CheckContext], RiskCheck], OrderIntent, risk.RiskView, bool]

# fmt: off
CASES: list[Case] = [
    ("max_position ok", risk.check_max_position, intent(), view_with(lambda v: v.apply_position(position("AAPL", 300))), True),  # noqa: E501
    ("max_position over", risk.check_max_position, intent(), view_with(lambda v: v.apply_position(position("AAPL", 450))), False),  # noqa: E501
    ("max_position working order counts", risk.check_max_position, intent(), view_with(lambda v: v.apply_position(position("AAPL", 300)), working("w1", quantity=150)), False),  # noqa: E501
    ("max_position in-flight approval counts", risk.check_max_position, intent(), view_with(lambda v: v.apply_approved_intent(intent(order_id="w1", quantity=450))), False),  # noqa: E501
    ("max_position ended order no longer counts", risk.check_max_position, intent(), view_with(working("w1", quantity=450), lambda v: v.apply_order_event(order_event("w1", OrderStatus.CANCELLED, 0.0))), True),  # noqa: E501
    ("max_position partly filled counts its remainder", risk.check_max_position, intent(), view_with(working("w1", quantity=400), lambda v: v.apply_order_event(order_event("w1", OrderStatus.PARTIALLY_FILLED, 100.0, filled=300.0)), lambda v: v.apply_position(position("AAPL", 300))), True),  # noqa: E501
    ("max_position protective legs do not count", risk.check_max_position, intent(), view_with(lambda v: v.apply_position(position("AAPL", 300)), lambda v: v.apply_order_event(order_event("w1", OrderStatus.ACKNOWLEDGED, 300.0, leg=OrderLeg.STOP_LOSS))), True),  # noqa: E501
    ("max_position short reduces", risk.check_max_position, intent(side=Side.SELL, stop_loss=102.0), view_with(lambda v: v.apply_position(position("AAPL", 450))), True),  # noqa: E501
    ("gross ok", risk.check_gross_exposure, intent(), view_with(lambda v: v.apply_position(position("MSFT", 300))), True),  # noqa: E501
    ("gross over", risk.check_gross_exposure, intent(), view_with(lambda v: v.apply_position(position("MSFT", -450))), False),  # noqa: E501
    ("gross counts working entries", risk.check_gross_exposure, intent(), view_with(working("w1", symbol="MSFT", quantity=450)), False),  # noqa: E501
    ("notional ok", risk.check_order_notional, intent(quantity=199), view_with(), True),
    ("notional over", risk.check_order_notional, intent(quantity=201), view_with(), False),
    ("notional unpriced", risk.check_order_notional, intent(order_type=OrderType.MKT, limit_price=None), view_with(with_quote=False), False),  # noqa: E501
    ("stop ok", risk.check_stop_distance, intent(stop_loss=98.0), view_with(), True),
    ("stop too wide", risk.check_stop_distance, intent(stop_loss=94.0), view_with(), False),
    ("stop too tight", risk.check_stop_distance, intent(stop_loss=99.9), view_with(), False),
    ("stop wrong side", risk.check_stop_distance, intent(stop_loss=101.0), view_with(), False),
    ("stop missing", risk.check_stop_distance, intent(stop_loss=None), view_with(), False),
    ("trailing stop ok", risk.check_stop_distance, intent(stop_loss_trail_amount=1.0), view_with(), True),
    ("trailing stop in percent ok", risk.check_stop_distance, intent(stop_loss_trail_percent=1.5), view_with(), True),
    ("trailing stop trails too tight", risk.check_stop_distance, intent(stop_loss_trail_amount=0.1), view_with(), False),  # noqa: E501
    ("trailing stop starts too wide", risk.check_stop_distance, intent(stop_loss=94.0, stop_loss_trail_amount=1.0), view_with(), False),  # noqa: E501
    ("trailing stop both trails", risk.check_stop_distance, intent(stop_loss_trail_amount=1.0, stop_loss_trail_percent=1.0), view_with(), False),  # noqa: E501
    ("trailing stop negative trail", risk.check_stop_distance, intent(stop_loss_trail_amount=-1.0), view_with(), False),
    ("risk/trade of a trailing stop from its initial stop", risk.check_risk_per_trade, intent(quantity=501, stop_loss=98.0, stop_loss_trail_amount=0.5), view_with(), False),  # noqa: E501
    ("risk/trade adaptive market entry priced by the quote", risk.check_risk_per_trade, intent(order_type=OrderType.MKT, limit_price=None, adaptive_priority="PATIENT"), view_with(), True),  # noqa: E501
    ("risk/trade ok", risk.check_risk_per_trade, intent(quantity=500, stop_loss=98.0), view_with(), True),
    ("risk/trade over", risk.check_risk_per_trade, intent(quantity=501, stop_loss=98.0), view_with(), False),
    ("risk/trade sized on NetLiquidation", risk.check_risk_per_trade, intent(quantity=300, stop_loss=98.0), view_with(lambda v: v.apply_account_state(account(net_liquidation=50_000))), False),  # noqa: E501
    ("risk/trade static equity before a record", risk.check_risk_per_trade, intent(quantity=300, stop_loss=98.0), view_with(), True),  # noqa: E501
    ("rate ok", risk.check_order_rate, intent(), view_with(lambda v: [v.apply_decision(approved_decision(i, NOW - timedelta(seconds=10))) for i in range(2)]), True),  # noqa: E501
    ("rate over", risk.check_order_rate, intent(), view_with(lambda v: [v.apply_decision(approved_decision(i, NOW - timedelta(seconds=10))) for i in range(3)]), False),  # noqa: E501
    ("rate window slides", risk.check_order_rate, intent(), view_with(lambda v: [v.apply_decision(approved_decision(i, NOW - timedelta(seconds=61))) for i in range(5)]), True),  # noqa: E501
    ("band ok", risk.check_price_band, intent(limit_price=101.5), view_with(), True),
    ("band fat finger", risk.check_price_band, intent(limit_price=110.0, stop_loss=108.0), view_with(), False),
    ("band market order", risk.check_price_band, intent(order_type=OrderType.MKT, limit_price=None), view_with(), True),
    ("band market-on-close order", risk.check_price_band, intent(order_type=OrderType.MOC, limit_price=None), view_with(), True),  # noqa: E501
    ("band limit-on-close fat finger", risk.check_price_band, intent(order_type=OrderType.LOC, limit_price=110.0, stop_loss=108.0), view_with(), False),  # noqa: E501
    ("notional of a market-on-close order at the quote", risk.check_order_notional, intent(order_type=OrderType.MOC, limit_price=None, quantity=201), view_with(), False),  # noqa: E501
    ("market-on-close unpriced without a quote", risk.check_order_notional, intent(order_type=OrderType.MOC, limit_price=None), view_with(with_quote=False), False),  # noqa: E501
    ("notional of a limit-on-close order at its limit", risk.check_order_notional, intent(order_type=OrderType.LOC, limit_price=100.0, quantity=199), view_with(), True),  # noqa: E501
    ("band no quote", risk.check_price_band, intent(), view_with(with_quote=False), False),
    ("quote fresh", risk.check_quote_age, intent(), view_with(), True),
    ("quote stale", risk.check_quote_age, intent(), view_with(lambda v: v.apply_quote(quote(age=6.0)), with_quote=False), False),  # noqa: E501
    ("quote missing", risk.check_quote_age, intent(), view_with(with_quote=False), False),
    ("daily loss ok", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -600))), True),  # noqa: E501
    ("daily loss hit", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -600)), lambda v: v.apply_position(position("MSFT", 10, unrealized=-400))), False),  # noqa: E501
    ("daily loss yesterday ignored", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -5000, NOW - timedelta(days=1)))), True),  # noqa: E501
    ("daily loss exec redelivered once", risk.check_daily_loss, intent(), view_with(lambda v: [v.apply_execution(execution("e1", -600)) for _ in range(2)]), True),  # noqa: E501
    ("daily loss on IB unrealized", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_account_state(account(realized=0.0, unrealized=-1_200))), False),  # noqa: E501
    ("daily loss IB daily P&L", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_account_state(account(daily_pnl=-1_500))), False),  # noqa: E501
    ("daily loss IB over executions", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -5_000)), lambda v: v.apply_account_state(account(daily_pnl=-100))), True),  # noqa: E501
    ("account state before any record", risk.check_account_state, intent(), view_with(), True),
    ("account state fresh", risk.check_account_state, intent(), view_with(lambda v: v.apply_account_state(account(age=299))), True),  # noqa: E501
    ("account state stale", risk.check_account_state, intent(), view_with(lambda v: v.apply_account_state(account(age=301))), False),  # noqa: E501
    ("account state older record ignored", risk.check_account_state, intent(), view_with(lambda v: v.apply_account_state(account(age=5)), lambda v: v.apply_account_state(account(age=900))), True),  # noqa: E501
    ("buying power before any record", risk.check_buying_power, intent(), view_with(), True),
    ("buying power ok", risk.check_buying_power, intent(), view_with(lambda v: v.apply_account_state(account(buying_power=10_000))), True),  # noqa: E501
    ("buying power short", risk.check_buying_power, intent(), view_with(lambda v: v.apply_account_state(account(buying_power=9_999))), False),  # noqa: E501
    ("buying power less working entries", risk.check_buying_power, intent(), view_with(lambda v: v.apply_account_state(account(buying_power=15_000)), working("w1", symbol="MSFT", quantity=60)), False),  # noqa: E501
    ("buying power reducing order", risk.check_buying_power, intent(side=Side.SELL, stop_loss=102.0), view_with(lambda v: v.apply_position(position("AAPL", 100)), lambda v: v.apply_account_state(account(buying_power=0))), True),  # noqa: E501
    ("buying power unpriced", risk.check_buying_power, intent(order_type=OrderType.MKT, limit_price=None), view_with(lambda v: v.apply_account_state(account()), with_quote=False), False),  # noqa: E501
    ("conflict none", risk.check_conflicting_position, intent(), view_with(lambda v: v.apply_position(position("AAPL", 100))), True),  # noqa: E501
    ("conflict other symbol", risk.check_conflicting_position, intent(side=Side.SELL, stop_loss=102.0), view_with(lambda v: v.apply_position(position("MSFT", 100))), True),  # noqa: E501
    ("conflict opposite position", risk.check_conflicting_position, intent(side=Side.SELL, stop_loss=102.0), view_with(lambda v: v.apply_position(position("AAPL", 100))), False),  # noqa: E501
    ("conflict opposite working entry", risk.check_conflicting_position, intent(side=Side.SELL, stop_loss=102.0), view_with(working("w1")), False),  # noqa: E501
    ("conflict opposite in-flight approval", risk.check_conflicting_position, intent(), view_with(lambda v: v.apply_approved_intent(intent(order_id="w1", side=Side.SELL, stop_loss=102.0))), False),  # noqa: E501
    ("kill switch off", risk.check_kill_switch, intent(), view_with(lambda v: v.apply_control(kill()), lambda v: v.apply_control(kill(ControlCommandKind.KILL_SWITCH_OFF))), True),  # noqa: E501
    ("kill switch on", risk.check_kill_switch, intent(), view_with(lambda v: v.apply_control(kill())), False),
    ("kill switch other symbol", risk.check_kill_switch, intent(), view_with(lambda v: v.apply_control(kill(target="MSFT"))), True),  # noqa: E501
    ("kill switch this symbol", risk.check_kill_switch, intent(), view_with(lambda v: v.apply_control(kill(target="AAPL"))), False),  # noqa: E501
    ("trading state active", risk.check_trading_state, intent(), view_with(), True),
    ("trading state halted", risk.check_trading_state, intent(), view_with(lambda v: v.apply_control(state("AAPL", TradingState.HALTED))), False),  # noqa: E501
    ("account halted", risk.check_trading_state, intent(), view_with(lambda v: v.apply_control(state("account", TradingState.HALTED))), False),  # noqa: E501
    ("other symbol halted", risk.check_trading_state, intent(), view_with(lambda v: v.apply_control(state("MSFT", TradingState.HALTED))), True),  # noqa: E501
    ("reducing, nothing held", risk.check_trading_state, intent(), view_with(lambda v: v.apply_control(state("AAPL", TradingState.REDUCING))), False),  # noqa: E501
    ("reducing, adds to the long", risk.check_trading_state, intent(), view_with(lambda v: v.apply_position(position("AAPL", 100)), lambda v: v.apply_control(state("account", TradingState.REDUCING))), False),  # noqa: E501
    ("reducing, sells part of the long", risk.check_trading_state, intent(side=Side.SELL, quantity=50.0), view_with(lambda v: v.apply_position(position("AAPL", 100)), lambda v: v.apply_control(state("AAPL", TradingState.REDUCING))), True),  # noqa: E501
    ("reducing, sell flips the long", risk.check_trading_state, intent(side=Side.SELL, quantity=150.0), view_with(lambda v: v.apply_position(position("AAPL", 100)), lambda v: v.apply_control(state("AAPL", TradingState.REDUCING))), False),  # noqa: E501
    ("halted by an unreadable record", risk.check_trading_state, intent(), view_with(lambda v: v.apply_undecodable_control(b"trading_state:AAPL", "bad", NOW)), False),  # noqa: E501
    ("kill switch halt reported by kill_switch", risk.check_trading_state, intent(), view_with(lambda v: v.apply_control(kill())), True),  # noqa: E501
]
# fmt: on


@pytest.mark.parametrize(("name", "check", "order", "view", "passed"), CASES, ids=[case[0] for case in CASES])
def test_check(
    name: str,
    check: Callable[[OrderIntent, risk.CheckContext], RiskCheck],
    order: OrderIntent,
    view: risk.RiskView,
    passed: bool,
) -> None:
    result = check(order, risk.context_for(order, view, LIMITS, NOW))
    assert result.passed is passed, result.reason
    assert result.reason


def test_every_check_has_a_passing_and_a_failing_case() -> None:
    outcomes: dict[str, set[bool]] = {}
    for _, check, _, _, passed in CASES:
        outcomes.setdefault(check.__name__, set()).add(passed)
    assert {check.__name__ for check in risk.CHECKS} == set(outcomes)
    assert all(seen == {True, False} for seen in outcomes.values()), outcomes


def test_decision_carries_every_check_and_routes_only_when_all_pass() -> None:
    view = view_with()
    decision = risk.decide(intent(), view, LIMITS, NOW)
    assert decision.approved
    # account_state, conflicting_position and buying_power are the account-level checks (issue #20).
    assert [check.name for check in decision.checks] == [
        "kill_switch",
        "trading_state",
        "account_state",
        "stale_quote",
        "price_band",
        "conflicting_position",
        "max_position",
        "max_gross_exposure",
        "max_order_notional",
        "buying_power",
        "stop_distance",
        "risk_per_trade",
        "order_rate",
        "daily_loss",
    ]
    assert decision.decision_id == ids.decision_id("o-1")
    routed = risk.route(intent(), decision)
    assert routed is not None
    assert routed.decision_id == decision.decision_id
    assert routed.order_id == "o-1"

    view.apply_control(kill())
    rejected = risk.decide(intent(), view, LIMITS, NOW)
    assert not rejected.approved
    assert [check.name for check in rejected.checks if not check.passed] == ["kill_switch"]
    assert risk.route(intent(), rejected) is None


def test_routing_carries_every_order_term() -> None:
    approved = intent(order_type=OrderType.STP_LMT, stop_price=99.5, time_in_force=TimeInForce.GTC)
    decision = risk.decide(approved, view_with(), LIMITS, NOW)
    routed = risk.route(approved, decision)
    assert routed is not None
    assert routed.terms() == approved.terms()
    assert set(approved.terms()) == set(TERM_FIELDS)
    assert (routed.order_id, routed.routed_time) == (approved.order_id, decision.decided_time)


def test_view_keeps_the_newest_quote_and_counts_approvals_once() -> None:
    view = view_with()
    view.apply_quote(quote(bid=50, ask=51, age=30))  # a replayed older quote must not win
    assert view.snapshot("AAPL", "2026-11-24").quote == quote()
    decision = approved_decision(1, NOW)
    view.apply_decision(decision)
    view.apply_decision(decision)
    assert view.recent_approvals(NOW) == 1
    assert view.decision_for("old1") == "d1"


# A simulated session at 120x: a market minute passes in half a wall second. The wall clock is hours away from the
# market's (a demo's session runs ahead of or behind the UTC day).
WALL = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def fresh_quote(at: datetime) -> Quote:
    return Quote(
        symbol="AAPL",
        con_id=1,
        bid=99.99,
        ask=100.01,
        last=100.0,
        event_time=at - timedelta(seconds=1),
        ingest_time=at,
        source=MarketDataSource.SIM,
    )


def decide_at(view: risk.RiskView, order_id: str, market: datetime, wall: datetime) -> RiskDecision:
    """Decide as the streams agent does: judged in market time, then applied with its market time."""
    view.apply_quote(fresh_quote(market))
    decision = risk.decide(intent(order_id=order_id), view, LIMITS, market, wall=wall)
    view.apply_decision(decision, market_time=market)
    return decision


def test_order_rate_counts_market_minutes_not_wall_minutes() -> None:
    view = risk.RiskView()
    # One order per market minute (half a wall second apart): never more than 2 in a minute, the limit is 3.
    spaced = [
        decide_at(view, f"o-{i}", NOW + i * timedelta(minutes=1), WALL + i * timedelta(seconds=0.5)) for i in range(10)
    ]
    assert [d.approved for d in spaced] == [True] * 10, [c.reason for d in spaced for c in d.checks if not c.passed]
    # A burst within one market second (a hundredth of a wall second): the fourth is one too many.
    start, wall = NOW + timedelta(minutes=30), WALL + timedelta(seconds=15)
    burst = [
        decide_at(view, f"b-{i}", start + i * timedelta(seconds=0.25), wall + i * timedelta(seconds=0.002))
        for i in range(4)
    ]
    assert [d.approved for d in burst] == [True, True, True, False]
    assert [c.name for c in burst[3].checks if not c.passed] == ["order_rate"]
    # decided_time stays on the wall clock: intent→decision latency is a wall-clock fact.
    assert burst[0].decided_time == wall


def test_approvals_from_the_topic_age_on_the_wall_clock_and_count_once() -> None:
    view = risk.RiskView()
    # Another worker's approvals (or this one's before a restart) carry only their wall-clock decided_time.
    for n in range(3):
        view.apply_decision(approved_decision(n, WALL - timedelta(seconds=10)))
    assert view.recent_approvals(NOW, WALL) == 3
    assert view.recent_approvals(NOW, WALL + timedelta(seconds=51)) == 0
    # This worker's own approval comes back from the topic: counted once, at its market time.
    own = decide_at(risk.RiskView(), "o-own", NOW, WALL)
    view = risk.RiskView()
    view.apply_decision(own, market_time=NOW)
    view.apply_decision(own)
    assert view.recent_approvals(NOW, WALL) == 1
    assert view.recent_approvals(NOW + timedelta(seconds=61), WALL) == 0


def test_an_approval_stamped_far_ahead_of_the_market_is_not_counted() -> None:
    # Decided before the producer's first heartbeat (market time = the wall's) while the market runs hours behind:
    # counted, it would throttle every order until the market caught up.
    view = risk.RiskView()
    for n in range(3):
        view.apply_decision(approved_decision(n, WALL), market_time=WALL)
    assert view.recent_approvals(NOW, WALL) == 0
    assert view.recent_approvals(WALL, WALL) == 0  # forgotten, not merely skipped


def test_quote_age_and_trading_day_follow_market_time() -> None:
    view = view_with(lambda v: v.apply_execution(execution("e1", -1_500, NOW - timedelta(hours=1))))
    # The wall clock is ten hours on, in the next UTC day: judged on it, the quote would be stale and the loss
    # yesterday's.
    checks = {c.name: c for c in risk.decide(intent(), view, LIMITS, NOW, wall=WALL).checks}
    assert checks["stale_quote"].passed
    assert checks["stale_quote"].value == 1.0
    assert not checks["daily_loss"].passed
    assert checks["daily_loss"].value == 1_500


def test_limits_are_validated_at_startup() -> None:
    with pytest.raises(ConfigError):
        load_settings(risk_min_stop_pct=6, risk_max_stop_pct=5)
    with pytest.raises(ConfigError, match="IBSTREAM_RISK_MAX_ORDER_NOTIONAL"):
        load_settings(risk_max_order_notional=0)
    limits = risk.RiskLimits.from_settings(load_settings(risk_max_position=42))
    assert limits.max_position == 42


def decide_and_apply(view: risk.RiskView, order: OrderIntent, limits: risk.RiskLimits = LIMITS) -> RiskDecision:
    """Decide as the streams agent does: the decision applied, an approved intent held in flight."""
    decision = risk.decide(order, view, limits, NOW)
    view.apply_decision(decision, market_time=NOW)
    if decision.approved:
        view.apply_approved_intent(order)
    return decision


def failed(decision: RiskDecision) -> list[str]:
    return [check.name for check in decision.checks if not check.passed]


#: LIMITS with room for 300-share orders, so only max_position speaks.
ROOMY = risk.RiskLimits(**{**LIMITS.__dict__, "max_order_notional": 50_000, "max_gross_exposure": 200_000})


def test_a_working_order_counts_toward_max_position_until_it_ends() -> None:
    view = view_with()
    first = decide_and_apply(view, intent(order_id="first", quantity=300), ROOMY)
    assert first.approved, failed(first)
    # In flight (approved, IB has said nothing yet): a second that would breach the limit with it is refused.
    assert failed(decide_and_apply(view, intent(order_id="second", quantity=300), ROOMY)) == ["max_position"]
    # Working at IB: still counted.
    view.apply_order_event(order_event("first", OrderStatus.PENDING_SUBMIT, 300.0))
    view.apply_order_event(order_event("first", OrderStatus.ACKNOWLEDGED, 300.0))
    refused = decide_and_apply(view, intent(order_id="third", quantity=300), ROOMY)
    assert failed(refused) == ["max_position"]
    assert next(c for c in refused.checks if c.name == "max_position").value == 600
    # Cancelled: it no longer counts, and a late copy of its routed order does not bring it back.
    view.apply_order_event(order_event("first", OrderStatus.CANCELLED, 0.0))
    view.apply_routed(routed("first", quantity=300))
    assert decide_and_apply(view, intent(order_id="fourth", quantity=300), ROOMY).approved


def test_a_filled_entry_counts_once_as_the_position() -> None:
    view = view_with(working("w1", quantity=300))
    view.apply_order_event(order_event("w1", OrderStatus.FILLED, 0.0, filled=300.0))
    view.apply_position(position("AAPL", 300))
    check = risk.check_max_position(intent(quantity=250), risk.context_for(intent(quantity=250), view, LIMITS, NOW))
    assert (check.passed, check.value) == (False, 550)


def test_an_order_event_read_before_its_routed_order_counts_once_the_side_is_known() -> None:
    view = view_with()
    # The view feed reads orders.events.v1 and orders.routed.v1 interleaved: an event can come first.
    view.apply_order_event(order_event("w1", OrderStatus.PARTIALLY_FILLED, 120.0, filled=80.0))
    view.apply_order_event(order_event("w2", OrderStatus.CANCELLED, 0.0))
    assert view.snapshot("AAPL", "2026-11-24").exposure == risk.SymbolExposure()
    view.apply_routed(routed("w1", quantity=200))
    view.apply_routed(routed("w2", quantity=200))
    # 120 working and 80 filled that no position record includes yet.
    assert view.snapshot("AAPL", "2026-11-24").exposure == risk.SymbolExposure(pending_buy=200.0)
    view.apply_position(position("AAPL", 80))
    assert view.snapshot("AAPL", "2026-11-24").exposure == risk.SymbolExposure(position=80.0, pending_buy=120.0)


def exposure_after(*steps: Callable[[risk.RiskView], None]) -> risk.SymbolExposure:
    return view_with(*steps).snapshot("AAPL", "2026-11-24").exposure


def test_a_fill_counts_once_never_zero_times_whichever_record_comes_first() -> None:
    filled = order_event("w1", OrderStatus.FILLED, 0.0, filled=300.0)
    later = position("AAPL", 300).model_copy(update={"time": NOW + timedelta(milliseconds=5)})
    stale = position("AAPL", 0).model_copy(update={"time": NOW - timedelta(minutes=5)})
    # Fill first: the shares stay pending until the position has them.
    assert exposure_after(working("w1", quantity=300), lambda v: v.apply_order_event(filled)) == risk.SymbolExposure(
        pending_buy=300.0
    )
    both = (working("w1", quantity=300), lambda v: v.apply_order_event(filled), lambda v: v.apply_position(later))
    assert exposure_after(*both) == risk.SymbolExposure(position=300.0)
    # Position first (a restarted view reads the topics in any order): the fill is already in it.
    first = (lambda v: v.apply_position(later), working("w1", quantity=300), lambda v: v.apply_order_event(filled))
    assert exposure_after(*first) == risk.SymbolExposure(position=300.0)
    # A position record from before the fill does not include it.
    old = (lambda v: v.apply_position(stale), working("w1", quantity=300), lambda v: v.apply_order_event(filled))
    assert exposure_after(*old) == risk.SymbolExposure(pending_buy=300.0)


def test_daily_loss_trips_on_an_unrealized_loss() -> None:
    view = view_with(lambda v: v.apply_account_state(account(daily_pnl=None, realized=0.0, unrealized=-400)))
    assert decide_and_apply(view, intent(order_id="before")).approved
    # Nothing realized today; the open positions lost at IB: the day's loss is past the limit.
    view.apply_account_state(account(age=1.0, daily_pnl=-1_050, realized=0.0, unrealized=-1_050))
    refused = decide_and_apply(view, intent(order_id="after"))
    assert failed(refused) == ["daily_loss"]
    daily = next(c for c in refused.checks if c.name == "daily_loss")
    assert (daily.value, daily.limit) == (1_050, LIMITS.daily_loss_limit)
    assert "IB daily P&L" in daily.reason


def test_equity_is_net_liquidation_once_a_record_arrives_and_the_fallback_is_noted_once() -> None:
    view = view_with()
    assert view.equity_fallback_first_use()
    assert not view.equity_fallback_first_use()
    before = risk.check_risk_per_trade(intent(), risk.context_for(intent(), view, LIMITS, NOW))
    assert before.limit == 1_000 and "IBSTREAM_ACCOUNT_EQUITY" in before.reason
    view.apply_account_state(account(net_liquidation=80_000))
    after = risk.check_risk_per_trade(intent(), risk.context_for(intent(), view, LIMITS, NOW))
    assert after.limit == 800 and "NetLiquidation" in after.reason
    assert not risk.RiskView(account=account()).equity_fallback_first_use()


def test_account_state_fails_closed_once_records_stop() -> None:
    view = view_with(lambda v: v.apply_account_state(account(age=0.0)))
    assert decide_and_apply(view, intent(order_id="fresh")).approved
    # The same record, judged ten minutes of wall clock later: IB's values stopped arriving.
    later = NOW + timedelta(minutes=10)
    view.apply_quote(quote(age=0.0).model_copy(update={"event_time": later}))
    decision = risk.decide(intent(order_id="stale"), view, LIMITS, later)
    assert failed(decision) == ["account_state"]
    check = next(c for c in decision.checks if c.name == "account_state")
    assert check.value == 600 and check.limit == LIMITS.account_state_max_age_seconds


def test_opposite_intents_are_refused_unless_reduce_opposite_lets_a_reduction_through() -> None:
    sell = intent(order_id="sell", side=Side.SELL, quantity=60, stop_loss=102.0)
    flip = intent(order_id="flip", side=Side.SELL, quantity=150, stop_loss=102.0)
    view = view_with(lambda v: v.apply_position(position("AAPL", 100)))
    assert failed(risk.decide(sell, view, LIMITS, NOW)) == ["conflicting_position"]
    reducing = risk.RiskLimits(**{**LIMITS.__dict__, "reduce_opposite": True})
    assert risk.decide(sell, view, reducing, NOW).approved
    # Never past flat, and never against a working entry on the other side.
    assert failed(risk.decide(flip, view, reducing, NOW)) == ["conflicting_position"]
    working("w1", quantity=50)(view)
    assert failed(risk.decide(sell, view, reducing, NOW)) == ["conflicting_position"]


def test_the_running_exposure_matches_a_recount_after_any_sequence() -> None:
    import random

    rng = random.Random(20)
    view = risk.RiskView()
    symbols = ["AAPL", "MSFT", "SPY"]
    orders: dict[str, RoutedOrder] = {}
    for step in range(2_000):
        symbol = rng.choice(symbols)
        roll = rng.random()
        if roll < 0.4:
            px = rng.uniform(50, 150)
            view.apply_quote(
                quote(symbol, bid=px - 0.01, ask=px + 0.01, age=0.0).model_copy(
                    update={"last": px, "event_time": NOW + timedelta(seconds=step)}
                )
            )
        elif roll < 0.55:
            held = position(symbol, rng.choice([-200, 0, 50, 300]), unrealized=rng.uniform(-50, 50))
            view.apply_position(held.model_copy(update={"time": NOW + timedelta(seconds=step)}))
        elif roll < 0.75:
            order = routed(f"o{step}", symbol, rng.choice([Side.BUY, Side.SELL]), float(rng.randint(1, 100)))
            orders[order.order_id] = order
            view.apply_routed(order)
        elif orders:
            order_id = rng.choice(sorted(orders))
            status = rng.choice([OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELLED])
            ordered = orders[order_id].quantity
            filled = ordered / 2 if status is OrderStatus.PARTIALLY_FILLED else 0.0
            remaining = ordered - filled if status is not OrderStatus.CANCELLED else 0.0
            event = order_event(order_id, status, remaining, filled=filled, symbol=orders[order_id].symbol)
            view.apply_order_event(event.model_copy(update={"event_time": NOW + timedelta(seconds=step)}))
    snapshot = view.snapshot("AAPL", "2026-11-24")

    def mark(symbol: str) -> float:
        p, q = view.positions.get(symbol), view.quotes.get(symbol)
        return risk.mark_price(p, q) if p is not None else (q.last if q is not None and q.last else 100.0)

    pending = {s: 0.0 for s in symbols}
    for entry in view._exposure.entries.values():
        pending[entry.symbol] += entry.quantity
    for symbol, fills in view._exposure.unsettled.items():
        pending[symbol] += sum(fill.quantity for fill in fills)
    held = sum(abs(p.quantity) * mark(s) for s, p in view.positions.items())
    assert snapshot.position_gross == pytest.approx(held)
    assert snapshot.pending_gross == pytest.approx(sum(q * mark(s) for s, q in pending.items()))
    assert snapshot.unrealized == pytest.approx(sum(p.unrealized_pnl or 0.0 for p in view.positions.values()))
