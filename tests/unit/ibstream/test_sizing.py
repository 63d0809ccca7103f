"""Sizing by risk: whole shares within the budget, and a clear SizingError where no sensible size exists."""

from __future__ import annotations

import pytest

from ibstream.sizing import SizingError, size_by_risk


def test_the_loss_at_the_stop_stays_within_the_budget_and_the_notional() -> None:
    assert size_by_risk(100.0, 98.0, equity=100_000, risk_pct=1.0) == 500
    assert size_by_risk(100.0, 98.0, equity=100_000, risk_pct=1.0, max_notional=10_000) == 100


@pytest.mark.parametrize(
    ("entry", "stop", "equity", "why"),
    [
        (100.0, 100.0, 100_000, "risk per share is zero"),
        (100.0, 100.0 - 1e-13, 1e308, "no finite size"),  # a stop a hair from its entry: the quotient overflows
        (1e-300, 5e-324, 1e308, "no finite size"),
        (-1.0, 1.0, 100_000, "must be positive"),
        (100.0, 50.0, 100, "buys no share"),
    ],
)
def test_inputs_without_a_sensible_size_raise_sizing_error(entry: float, stop: float, equity: float, why: str) -> None:
    with pytest.raises(SizingError, match=why):
        size_by_risk(entry, stop, equity=equity, risk_pct=1.0)
