"""The built-in strategies as the signals lifecycle evaluates them: plain functions of a window of bars.

They live in the core (``ibstream.strategies.builtin``, the SDK's built-ins); this module keeps the names the
signals code and its tests use, and ``STRATEGIES``: the built-ins with their default params, what runs when no
``IBSTREAM_STRATEGIES_FILE`` is set.
"""

from __future__ import annotations

from collections.abc import Callable

from ibstream.strategies.builtin import (
    ATR_PERIOD,
    atr,
    clip01,
    donchian_breakout,
    ma_crossover,
    sma,
    zscore_reversion,
)
from ibstream.strategies.sdk import BarPoint, Bars, Proposal

#: A strategy as the lifecycle runs it: a function of a symbol's bars (a plain function of the window fits too,
#: ``Bars`` being the sequence of its window).
Strategy = Callable[[Bars], Proposal | None]

#: The built-in strategies with their default params, by the name signals carry.
STRATEGIES: dict[str, Strategy] = {
    "ma_crossover": ma_crossover,
    "donchian_breakout": donchian_breakout,
    "zscore_reversion": zscore_reversion,
}

#: Bars of history kept per symbol at least (the built-ins' defaults need 36 at most); a configured instance with a
#: longer warm-up makes the window longer.
WINDOW = 40

__all__ = [
    "ATR_PERIOD",
    "STRATEGIES",
    "WINDOW",
    "BarPoint",
    "Proposal",
    "Strategy",
    "atr",
    "clip01",
    "donchian_breakout",
    "ma_crossover",
    "sma",
    "zscore_reversion",
]
