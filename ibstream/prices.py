"""Prices on the exchange's tick grid: IB refuses a limit or stop price between ticks (error 110, "The price does not
conform to the minimum price variation for this contract"), so every price a strategy proposes is put on the grid
before it becomes a signal, and risk, Agent0 and execution see the prices IB will accept.

US stocks trade in $0.01 from $1 up and in $0.0001 below $1 (SEC Rule 612).
"""

from __future__ import annotations

from ibstream.contracts.enums import Side

#: Below this price the tick is 0.0001, from it 0.01.
SUB_PENNY_BELOW = 1.0


def min_tick(price: float) -> float:
    """The minimum price variation at ``price``."""
    return 0.0001 if abs(price) < SUB_PENNY_BELOW else 0.01


def to_tick(price: float) -> float:
    """``price`` on the nearest tick."""
    tick = min_tick(price)
    return round(round(price / tick) * tick, 4)


def on_tick(price: float) -> bool:
    """Whether ``price`` lies on the tick grid (to float precision)."""
    return abs(price - to_tick(price)) < 1e-9


def bracket_on_ticks(side: Side, entry: float, stop: float, take_profit: float) -> tuple[float, float, float]:
    """Entry, stop and take-profit each on the nearest tick, the stop and target kept at least one tick on their
    side of the entry (rounding must never put a stop at or through its entry)."""
    entry = to_tick(entry)
    tick = min_tick(entry)
    away = -1 if side is Side.BUY else 1  # the stop's direction from the entry; the target's is the opposite
    stop, take_profit = to_tick(stop), to_tick(take_profit)
    if (stop - entry) * away < tick - 1e-9:
        stop = round(entry + away * tick, 4)
    if (entry - take_profit) * away < tick - 1e-9:
        take_profit = round(entry - away * tick, 4)
    return entry, stop, take_profit
