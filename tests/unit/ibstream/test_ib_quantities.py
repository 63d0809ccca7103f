"""Quantities across the IB boundary: 10.x's Decimals in, our doubles out, and back without rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ibapi.client import EClient
from ibapi.const import UNSET_DECIMAL as IBAPI_UNSET_DECIMAL
from ibapi.wrapper import EWrapper

from ibstream.ib.quantities import UNSET_DECIMAL, quantity_from_ib, quantity_to_ib
from ibstream.ib.session import OrderTicket, stock_contract


def test_a_100_share_order_goes_out_as_100_not_100_0_nor_99_99999() -> None:
    assert str(quantity_to_ib(100.0)) == "100"
    assert str(quantity_to_ib(100)) == "100"
    assert str(quantity_to_ib(0.3 * 3)) == "0.8999999999999999"  # what the caller computed, not silently rounded


def test_fractional_shares_go_out_as_the_decimal_they_were_written_as() -> None:
    assert str(quantity_to_ib(0.1)) == "0.1"
    assert str(quantity_to_ib(12.3456)) == "12.3456"
    assert str(quantity_to_ib(1e-4)) == "0.0001"


def test_sizes_in_come_as_floats_and_unset_as_zero() -> None:
    assert quantity_from_ib(Decimal("100")) == 100.0
    assert quantity_from_ib(Decimal("0.25")) == 0.25
    assert quantity_from_ib(7) == 7.0
    assert quantity_from_ib(IBAPI_UNSET_DECIMAL) == 0.0
    assert UNSET_DECIMAL == IBAPI_UNSET_DECIMAL


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False))
def test_a_quantity_ib_sends_comes_back_to_ib_unchanged(quantity: Decimal) -> None:
    assert quantity_to_ib(quantity_from_ib(quantity)) == quantity


def _place_order_fields(ticket: OrderTicket) -> list[str]:
    """The placeOrder fields IB's 10.x client writes for a ticket (server 157, before framing)."""
    sent: list[str] = []
    client = EClient(EWrapper())
    client.serverVersion_ = 157
    client.connState = EClient.CONNECTED
    client.isConnected = lambda: True  # type: ignore[method-assign]
    client.sendMsg = lambda msg_id, text: sent.extend(text.split("\0")[:-1])  # type: ignore[method-assign]
    client.placeOrder(7, stock_contract("AAPL"), ticket.to_ibapi())
    return sent


@pytest.mark.parametrize(("quantity", "on_the_wire"), [(100.0, "100"), (0.5, "0.5"), (1234.1, "1234.1")])
def test_an_order_ticket_reaches_the_wire_with_its_exact_quantity(quantity: float, on_the_wire: str) -> None:
    ticket = OrderTicket(action="BUY", quantity=quantity, order_type="MKT", order_ref="o-1")
    assert ticket.to_ibapi().totalQuantity == Decimal(on_the_wire)
    fields = _place_order_fields(ticket)
    action = fields.index("BUY")  # placeOrder: ... contract, action, totalQuantity, orderType
    assert fields[action + 1 : action + 3] == [on_the_wire, "MKT"]
