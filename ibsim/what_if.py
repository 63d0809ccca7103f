"""What-if orders: what an order would do to the account's margin and equity, and its commission — never placed.

IB answers a ``placeOrder`` with ``whatIf`` set by one ``openOrder`` whose order state carries the initial and
maintenance margin and the equity with loan before, after and the change, and the commission the order would cost;
the order is not placed, so no ``orderStatus`` follows and the order book, positions and account stay as they were.
ibsim's margin model is the ledger's: one rate on the gross position value
(:meth:`ibstream.sim.ledger.Ledger.account_values`).
Pure: the caller reads the account, the position and the price.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibstream.sim.ledger import MARGIN_RATE


@dataclass(frozen=True, slots=True)
class WhatIfState:
    """The order state of a what-if answer (amounts in the account's currency)."""

    init_margin_before: float
    init_margin_after: float
    maint_margin_before: float
    maint_margin_after: float
    equity_with_loan_before: float
    equity_with_loan_after: float
    commission: float
    currency: str

    @property
    def init_margin_change(self) -> float:
        return self.init_margin_after - self.init_margin_before

    @property
    def maint_margin_change(self) -> float:
        return self.maint_margin_after - self.maint_margin_before

    @property
    def equity_with_loan_change(self) -> float:
        return self.equity_with_loan_after - self.equity_with_loan_before


def what_if(
    *,
    gross_position_value: float,
    equity_with_loan: float,
    position: float,
    signed_quantity: float,
    price: float,
    commission: float,
    currency: str,
) -> WhatIfState:
    """The margin and equity an order of ``signed_quantity`` at ``price`` would leave, on a ``position`` in the same
    contract: margin moves with the change in that contract's gross value; equity pays the commission."""
    gross_after = gross_position_value - abs(position * price) + abs((position + signed_quantity) * price)
    margin_before = MARGIN_RATE * gross_position_value
    margin_after = MARGIN_RATE * max(gross_after, 0.0)
    return WhatIfState(
        init_margin_before=round(margin_before, 2),
        init_margin_after=round(margin_after, 2),
        maint_margin_before=round(margin_before, 2),
        maint_margin_after=round(margin_after, 2),
        equity_with_loan_before=round(equity_with_loan, 2),
        equity_with_loan_after=round(equity_with_loan - commission, 2),
        commission=round(commission, 6),
        currency=currency,
    )
