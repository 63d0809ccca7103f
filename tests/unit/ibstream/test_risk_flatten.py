"""Risk gate and flatten intents (``flatten_id`` set): closing a position goes through the kill switch, a halt and
every limit that makes no sense for it, and nothing that would open or flip a position does."""

from __future__ import annotations

from typing import Any

from ibstream import risk
from ibstream.contracts import OrderIntent
from ibstream.contracts.enums import OrderType, Side, TradingState
from ibstream.risk.checks import FLATTEN_EXEMPT
from tests.unit.ibstream.test_risk import (
    LIMITS,
    NOW,
    account,
    decide_and_apply,
    execution,
    failed,
    intent,
    kill,
    position,
    quote,
    state,
    view_with,
)


def flatten(**overrides: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "order_id": "f-1",
        "run_id": None,
        "signal_id": None,
        "side": Side.SELL,
        "quantity": 100.0,
        "order_type": OrderType.MKT,
        "limit_price": None,
        "stop_loss": None,
        "take_profit": None,
        "flatten_id": "cmd-1",
        "requested_by": "flatten:ops",
    }
    values.update(overrides)
    return intent(**values)


def hostile_view(held: float = 100.0) -> risk.RiskView:
    """A position held while everything an entry needs is missing: kill switch on, the account halted, today's loss
    over the limit, the quote stale, IB's account record stale and its buying power gone."""
    return view_with(
        lambda v: v.apply_position(position("AAPL", held)),
        lambda v: v.apply_control(kill()),
        lambda v: v.apply_control(state("account", TradingState.HALTED)),
        lambda v: v.apply_execution(execution("e1", -5_000)),
        lambda v: v.apply_quote(quote(age=600.0)),
        lambda v: v.apply_account_state(account(age=3_600, buying_power=0)),
        with_quote=False,
    )


def test_a_flatten_that_closes_the_position_passes_everything_an_entry_would_fail() -> None:
    view = hostile_view()
    ordinary = decide_and_apply(view, intent(order_id="o-9", side=Side.SELL, stop_loss=102.0, quantity=100.0))
    assert not ordinary.approved and "kill_switch" in failed(ordinary)

    decision = decide_and_apply(view, flatten())

    assert decision.approved, [c.reason for c in decision.checks if not c.passed]
    by_name = {check.name: check for check in decision.checks}
    gates = {"kill_switch", "trading_state", "conflicting_position", "max_position"}
    assert len(decision.checks) == len(risk.CHECKS) and set(by_name) == gates | set(FLATTEN_EXEMPT)
    for name in FLATTEN_EXEMPT:
        assert by_name[name].reason.startswith("not applied to a flatten"), name
    for name in gates:
        assert "closes the 100 held" in by_name[name].reason, name
    routed = risk.route(flatten(), decision)
    assert routed is not None and routed.flatten_id == "cmd-1" and routed.stop_loss is None


def test_a_flatten_that_would_go_past_flat_is_refused_by_every_gate() -> None:
    for too_much in (flatten(quantity=150.0), flatten(side=Side.BUY)):
        decision = decide_and_apply(hostile_view(), too_much)
        assert not decision.approved
        assert set(failed(decision)) == {"kill_switch", "trading_state", "conflicting_position", "max_position"}
        assert "may only bring the position to flat" in decision.checks[0].reason


def test_a_flatten_of_no_position_is_refused() -> None:
    decision = decide_and_apply(view_with(), flatten())
    assert not decision.approved and "kill_switch" in failed(decision)


def test_a_second_flatten_while_the_first_is_in_flight_is_refused() -> None:
    view = hostile_view()
    assert decide_and_apply(view, flatten()).approved
    second = decide_and_apply(view, flatten(order_id="f-2", flatten_id="cmd-2"))
    assert not second.approved
    assert "100 working on that side" in second.checks[0].reason


def test_a_flatten_of_a_short_buys_it_back() -> None:
    decision = risk.decide(flatten(side=Side.BUY, quantity=40.0), hostile_view(held=-40.0), LIMITS, NOW)
    assert decision.approved
