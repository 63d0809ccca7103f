"""What the API refuses of an order command from what the warehouse shows (api/routes/order_commands.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from api.models import OrderSummary
from api.routes.order_commands import not_working
from ibstream.contracts.enums import OrderStatus, OrderType, Side


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
