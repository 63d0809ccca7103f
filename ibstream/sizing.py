"""Position sizing shared by Agent0 and orchestration: risk a fixed share of equity between entry and stop.

``quantity = floor(equity · risk% / |entry − stop|)`` whole shares, so the loss at the stop never exceeds the
budget the risk gate's ``risk_per_trade`` check enforces. Pure: the same inputs always give the same size.
"""

from __future__ import annotations

import math

from ibstream.exceptions import IbstreamError


class SizingError(IbstreamError):
    """The inputs cannot give a positive size (no stop distance, non-positive prices or budget)."""


def risk_budget(equity: float, risk_pct: float) -> float:
    """The most one trade may lose at its stop."""
    return equity * risk_pct / 100


def size_by_risk(entry: float, stop: float, equity: float, risk_pct: float, max_notional: float | None = None) -> int:
    """Whole shares such that ``quantity · |entry − stop| ≤ equity · risk%`` (and ``quantity · entry ≤
    max_notional`` when given); SizingError when that is zero shares."""
    if entry <= 0 or stop <= 0:
        raise SizingError(f"prices must be positive (entry {entry}, stop {stop})")
    distance = abs(entry - stop)
    if distance == 0:
        raise SizingError("stop equals entry: the risk per share is zero")
    shares = risk_budget(equity, risk_pct) / distance
    if max_notional is not None:
        shares = min(shares, max_notional / entry)
    if not math.isfinite(shares):
        # a stop a hair from its entry, or prices near zero: no sensible size (and floor() of infinity would raise)
        raise SizingError(f"no finite size for entry {entry} and stop {stop}")
    quantity = math.floor(shares)
    if quantity < 1:
        raise SizingError(
            f"risk budget {risk_budget(equity, risk_pct):.2f} buys no share at {distance:.4f} risk per share"
        )
    return quantity
