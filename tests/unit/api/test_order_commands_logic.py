"""What the API refuses of an order command from what the warehouse shows (api/routes/order_commands.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from api.errors import ApiError
from api.models import OrderSummary
from api.routes.order_commands import ModifyOrderRequest, modified_terms, not_working
from ibstream.contracts.enums import OrderStatus, OrderType, Side
from ibstream.contracts.order_terms import OrderTerms
from ibstream.order_modifications import terms_from_parameters, terms_parameters


def summary(**fields: Any) -> OrderSummary:
    values: dict[str, Any] = {
        "order_id": "o1",
        "run_id": None,
        "signal_id": None,
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.LMT,
        "limit_price": 100.0,
        "created_time": datetime(2025, 1, 6, tzinfo=UTC),
        "risk": "approved",
        "status": None,
        "filled_quantity": 0.0,
        "avg_fill_price": None,
    }
    return OrderSummary(**{**values, **fields})


@pytest.mark.parametrize(
    "status",
    [None, OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMITTED, OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED],
)
def test_a_working_or_not_yet_placed_order_may_be_cancelled(status: OrderStatus | None) -> None:
    assert not_working(summary(status=status)) is None


def test_a_filled_order_is_409_order_filled_pointing_at_flatten() -> None:
    refusal = not_working(summary(status=OrderStatus.FILLED, filled_quantity=10, avg_fill_price=101.5))
    assert refusal is not None and (refusal.status, refusal.code) == (409, "order_filled")
    assert "10 @ 101.5" in refusal.message and "flatten" in refusal.message


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR])
def test_an_ended_order_is_409_naming_its_status(status: OrderStatus) -> None:
    refusal = not_working(summary(status=status))
    assert refusal is not None and (refusal.status, refusal.code) == (409, "order_not_working")
    assert status.value in refusal.message


def test_an_order_risk_rejected_was_never_placed() -> None:
    refusal = not_working(summary(risk="rejected"))
    assert refusal is not None and refusal.code == "order_not_working" and "risk rejected" in refusal.message


def terms(**fields: Any) -> OrderTerms:
    values: dict[str, Any] = {
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.LMT,
        "limit_price": 100.0,
        "stop_loss": 98.0,
        "take_profit": 104.0,
    }
    return OrderTerms(**{**values, **fields})


def ask(**fields: Any) -> ModifyOrderRequest:
    return ModifyOrderRequest(reason="r", **fields)


def test_a_modification_keeps_the_terms_and_changes_only_what_was_asked() -> None:
    new, changes = modified_terms(terms(), 4.0, ask(quantity=12, limit_price=99.5, take_profit=104.0))
    assert changes == ["limit_price", "quantity"]  # the take profit asked is the one it has: no change
    assert new == terms(quantity=12, limit_price=99.5)


@pytest.mark.parametrize(
    ("current", "request_fields", "code", "fragment"),
    [
        (terms(order_type=OrderType.MKT, limit_price=None), {"quantity": 5}, "order_not_modifiable", "market order"),
        (terms(), {"stop_price": 99.0}, "invalid_modification", "no stop_price to modify"),
        (terms(stop_loss=None, take_profit=None), {"stop_loss": 97.0}, "invalid_modification", "without a bracket"),
        (
            terms(order_type=OrderType.STP, limit_price=None, stop_price=101.0),
            {"limit_price": 1.0},
            "invalid_modification",
            "STP order",
        ),
        (terms(), {"limit_price": 100.0}, "invalid_modification", "nothing to modify"),
        (terms(), {"quantity": 4}, "invalid_modification", "above the 4 already filled"),
    ],
)
def test_a_modification_the_order_cannot_take_is_422_with_why(
    current: OrderTerms, request_fields: dict[str, Any], code: str, fragment: str
) -> None:
    with pytest.raises(ApiError) as raised:
        modified_terms(current, 4.0, ask(**request_fields))
    assert (raised.value.status, raised.value.code) == (422, code) and fragment in raised.value.message


def test_the_modify_command_carries_the_complete_new_terms_that_read_back_exactly() -> None:
    new, changes = modified_terms(terms(), 0.0, ask(limit_price=99.37, stop_loss=97.11))
    parameters = terms_parameters(new, changes)
    assert parameters["changes"] == "limit_price,stop_loss" and parameters["order_type"] == "LMT"
    assert terms_from_parameters(parameters) == new
