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
    ControlCommand,
    Execution,
    OrderIntent,
    Position,
    Quote,
    RiskCheck,
    RiskDecision,
)
from ibstream.contracts.enums import (
    ControlCommandKind,
    ExecutionSource,
    MarketDataSource,
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
    ("max_position short reduces", risk.check_max_position, intent(side=Side.SELL, stop_loss=102.0), view_with(lambda v: v.apply_position(position("AAPL", 450))), True),  # noqa: E501
    ("gross ok", risk.check_gross_exposure, intent(), view_with(lambda v: v.apply_position(position("MSFT", 300))), True),  # noqa: E501
    ("gross over", risk.check_gross_exposure, intent(), view_with(lambda v: v.apply_position(position("MSFT", -450))), False),  # noqa: E501
    ("notional ok", risk.check_order_notional, intent(quantity=199), view_with(), True),
    ("notional over", risk.check_order_notional, intent(quantity=201), view_with(), False),
    ("notional unpriced", risk.check_order_notional, intent(order_type=OrderType.MKT, limit_price=None), view_with(with_quote=False), False),  # noqa: E501
    ("stop ok", risk.check_stop_distance, intent(stop_loss=98.0), view_with(), True),
    ("stop too wide", risk.check_stop_distance, intent(stop_loss=94.0), view_with(), False),
    ("stop too tight", risk.check_stop_distance, intent(stop_loss=99.9), view_with(), False),
    ("stop wrong side", risk.check_stop_distance, intent(stop_loss=101.0), view_with(), False),
    ("stop missing", risk.check_stop_distance, intent(stop_loss=None), view_with(), False),
    ("risk/trade ok", risk.check_risk_per_trade, intent(quantity=500, stop_loss=98.0), view_with(), True),
    ("risk/trade over", risk.check_risk_per_trade, intent(quantity=501, stop_loss=98.0), view_with(), False),
    ("rate ok", risk.check_order_rate, intent(), view_with(lambda v: [v.apply_decision(approved_decision(i, NOW - timedelta(seconds=10))) for i in range(2)]), True),  # noqa: E501
    ("rate over", risk.check_order_rate, intent(), view_with(lambda v: [v.apply_decision(approved_decision(i, NOW - timedelta(seconds=10))) for i in range(3)]), False),  # noqa: E501
    ("rate window slides", risk.check_order_rate, intent(), view_with(lambda v: [v.apply_decision(approved_decision(i, NOW - timedelta(seconds=61))) for i in range(5)]), True),  # noqa: E501
    ("band ok", risk.check_price_band, intent(limit_price=101.5), view_with(), True),
    ("band fat finger", risk.check_price_band, intent(limit_price=110.0, stop_loss=108.0), view_with(), False),
    ("band market order", risk.check_price_band, intent(order_type=OrderType.MKT, limit_price=None), view_with(), True),
    ("band no quote", risk.check_price_band, intent(), view_with(with_quote=False), False),
    ("quote fresh", risk.check_quote_age, intent(), view_with(), True),
    ("quote stale", risk.check_quote_age, intent(), view_with(lambda v: v.apply_quote(quote(age=6.0)), with_quote=False), False),  # noqa: E501
    ("quote missing", risk.check_quote_age, intent(), view_with(with_quote=False), False),
    ("daily loss ok", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -600))), True),  # noqa: E501
    ("daily loss hit", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -600)), lambda v: v.apply_position(position("MSFT", 10, unrealized=-400))), False),  # noqa: E501
    ("daily loss yesterday ignored", risk.check_daily_loss, intent(), view_with(lambda v: v.apply_execution(execution("e1", -5000, NOW - timedelta(days=1)))), True),  # noqa: E501
    ("daily loss exec redelivered once", risk.check_daily_loss, intent(), view_with(lambda v: [v.apply_execution(execution("e1", -600)) for _ in range(2)]), True),  # noqa: E501
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
    assert [check.name for check in decision.checks] == [
        "kill_switch",
        "trading_state",
        "stale_quote",
        "price_band",
        "max_position",
        "max_gross_exposure",
        "max_order_notional",
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
