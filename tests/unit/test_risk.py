"""Risk gate: each check has a passing and a failing case (table-driven), and the gate's decision/route."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ibstream import ids, risk
from ibstream.config import load_settings
from ibstream.contracts import ControlCommand, Execution, OrderIntent, Position, Quote, RiskCheck, RiskDecision
from ibstream.contracts.enums import ControlCommandKind, ExecutionSource, MarketDataSource, OrderType, Side
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
    return Quote(symbol=symbol, con_id=1, bid=bid, ask=ask, last=100.0, event_time=at, ingest_time=at,
                 source=MarketDataSource.SIM)  # fmt: skip


def intent(**overrides: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "order_id": "o-1", "run_id": "r-1", "signal_id": "s-1", "symbol": "AAPL", "side": Side.BUY,
        "quantity": 100.0, "order_type": OrderType.LMT, "limit_price": 100.0, "stop_loss": 98.0,
        "take_profit": 104.0, "requested_by": "test", "created_time": NOW,
    }  # fmt: skip
    values.update(overrides)
    return OrderIntent(**values)


def position(symbol: str, quantity: float, unrealized: float = 0.0, price: float = 100.0) -> Position:
    return Position(account="DU1", symbol=symbol, con_id=1, quantity=quantity, avg_cost=price, market_price=price,
                    unrealized_pnl=unrealized, source=ExecutionSource.LIVE, time=NOW)  # fmt: skip


def execution(exec_id: str, pnl: float, when: datetime = NOW) -> Execution:
    return Execution(exec_id=exec_id, order_id="x", symbol="AAPL", account="DU1", side=Side.SELL, quantity=1,
                     price=1, cumulative_quantity=1, avg_price=1, realized_pnl=pnl,
                     source=ExecutionSource.LIVE, exec_time=when, ingest_time=when)  # fmt: skip


def kill(kind: ControlCommandKind = ControlCommandKind.KILL_SWITCH_ON, target: str = "all") -> ControlCommand:
    return ControlCommand(command_id="c", command=kind, target=target, reason="test", actor="ops", parameters={},
                          issued_time=NOW)  # fmt: skip


def approved_decision(n: int, when: datetime) -> RiskDecision:
    return RiskDecision(decision_id=f"d{n}", order_id=f"old{n}", symbol="AAPL", approved=True, checks=[],
                        intent_time=when, decided_time=when)  # fmt: skip


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
        "kill_switch", "stale_quote", "price_band", "max_position", "max_gross_exposure", "max_order_notional",
        "stop_distance", "risk_per_trade", "order_rate", "daily_loss",
    ]  # fmt: skip
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


def test_view_keeps_the_newest_quote_and_counts_approvals_once() -> None:
    view = view_with()
    view.apply_quote(quote(bid=50, ask=51, age=30))  # a replayed older quote must not win
    assert view.snapshot("AAPL", "2026-11-24").quote == quote()
    decision = approved_decision(1, NOW)
    view.apply_decision(decision)
    view.apply_decision(decision)
    assert view.approvals_since(NOW - timedelta(seconds=60)) == 1
    assert view.decision_for("old1") == "d1"


def test_limits_are_validated_at_startup() -> None:
    with pytest.raises(ConfigError):
        load_settings(risk_min_stop_pct=6, risk_max_stop_pct=5)
    with pytest.raises(ConfigError, match="IBSTREAM_RISK_MAX_ORDER_NOTIONAL"):
        load_settings(risk_max_order_notional=0)
    limits = risk.RiskLimits.from_settings(load_settings(risk_max_position=42))
    assert limits.max_position == 42
