"""What a gateway refuses before any lookup: contracts it will not search for, order fields it will not accept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ibsim.messages.requests import ContractSpec, PlaceOrder
from ibsim.validation import contract_refusal, order_refusal

STOCK = ContractSpec(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD")


@pytest.mark.parametrize(
    ("spec", "for_order", "expected"),
    [
        (STOCK, True, None),
        (ContractSpec(con_id=265598), True, None),
        (replace(STOCK, sec_type="FUT"), True, None),  # a real type: the lookup decides (200)
        (replace(STOCK, exchange="LSE", currency="EUR"), True, None),
        (replace(STOCK, sec_type="shares"), False, (321, "Invalid security type 'shares'")),
        (ContractSpec(con_id=265598, sec_type="XYZ"), False, (321, "Invalid security type 'XYZ'")),
        (
            replace(STOCK, symbol=""),
            False,
            (321, "Missing symbol: a contract needs a symbol, a local symbol or a contract id"),
        ),
        (replace(STOCK, symbol="", local_symbol="AAPL"), True, None),
        (replace(STOCK, sec_type=""), False, None),  # reqContractDetails lists every match
        (replace(STOCK, sec_type=""), True, (321, "Missing security type")),
        (replace(STOCK, exchange=""), False, None),
        (replace(STOCK, exchange=" "), True, (321, "Missing order exchange")),
    ],
)
def test_contract_refusal(spec: ContractSpec, for_order: bool, expected: tuple[int, str] | None) -> None:
    assert contract_refusal(spec, for_order=for_order) == expected


def _order(**kw: object) -> PlaceOrder:
    base = PlaceOrder(1, STOCK, "BUY", 10, "MKT", None, None, "DAY", "", "", "", True, 0, False)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (_order(), None),
        (_order(tif="", account="DU1"), None),
        (_order(tif="gtc"), None),
        (_order(action="buy"), (321, "Invalid action 'buy'")),
        (_order(account="DU9"), (321, "Invalid account DU9")),
        (_order(tif="GTX"), (321, "Invalid time in force 'GTX'")),
    ],
)
def test_order_refusal(order: PlaceOrder, expected: tuple[int, str] | None) -> None:
    assert order_refusal(order, ("DU1",)) == expected
