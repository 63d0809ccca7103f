"""placeOrder as ibapi writes it, read by ibsim down to ``whatIf``: a what-if order must never be read as a real one."""

from __future__ import annotations

from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import ComboLeg, Contract
from ibapi.order import Order
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from ibsim.messages.requests import PlaceOrder, parse_request


def _wire_fields(contract: Contract, order: Order) -> list[str]:
    """The fields of the placeOrder message IB's 10.x client sends to a server of version 157."""
    sent: list[str] = []
    client = EClient(EWrapper())
    client.serverVersion_ = 157
    client.connState = EClient.CONNECTED
    client.isConnected = lambda: True  # type: ignore[method-assign]
    # 10.x's EClient.sendMsg gets the message id and the fields before framing
    client.sendMsg = lambda msg_id, text: sent.extend([str(msg_id), *text.split("\0")[:-1]])  # type: ignore[method-assign]
    client.placeOrder(7, contract, order)
    return sent


def _stock() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    return c


def _order(**fields: Any) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", 10, "LMT", 190.5
    for name, value in fields.items():
        setattr(o, name, value)
    return o


@pytest.mark.parametrize("what_if", [True, False])
@pytest.mark.parametrize(
    "extras",
    [
        {},
        {"algoStrategy": "Adaptive", "algoParams": [TagValue("adaptivePriority", "Normal")]},
        {"hedgeType": "D", "hedgeParam": "0.5"},
        {"deltaNeutralOrderType": "LMT", "deltaNeutralAuxPrice": 1.0},
        {"scalePriceIncrement": 0.1, "scaleInitLevelSize": 5, "scaleSubsLevelSize": 5},
        {"orderRef": "ref-1", "outsideRth": True, "parentId": 3, "transmit": False},
    ],
    ids=["plain", "algo", "hedge", "delta_neutral", "scale", "bracket_leg"],
)
def test_what_if_is_read_exactly_whatever_optional_groups_precede_it(what_if: bool, extras: dict[str, Any]) -> None:
    request = parse_request(_wire_fields(_stock(), _order(whatIf=what_if, **extras)), version=157)
    assert isinstance(request, PlaceOrder)
    assert request.what_if is what_if
    assert (request.order_id, request.action, request.quantity, request.lmt_price) == (7, "BUY", 10, 190.5)


@pytest.mark.parametrize("what_if", [True, False])
def test_what_if_of_a_combo_order_is_read_after_its_legs(what_if: bool) -> None:
    bag = _stock()
    bag.secType = "BAG"
    legs = []
    for con_id, action in ((265598, "BUY"), (272093, "SELL")):
        leg = ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, 1, action, "SMART"
        legs.append(leg)
    bag.comboLegs = legs
    order = _order(whatIf=what_if, smartComboRoutingParams=[TagValue("NonGuaranteed", "1")])
    request = parse_request(_wire_fields(bag, order), version=157)
    assert isinstance(request, PlaceOrder) and request.what_if is what_if
