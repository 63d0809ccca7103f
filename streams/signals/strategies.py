"""The built-in strategies as the signals lifecycle evaluates them: plain functions of a window of bars.

They live in the core (``ibstream.strategies.builtin``, the SDK's built-ins; ``STRATEGIES`` and ``WINDOW`` with the
lifecycle in ``ibstream.strategies.lifecycle``, which the backtest runs too); this module keeps the names the
signals code and its tests use.
"""

from __future__ import annotations

from ibstream.strategies.builtin import (
    ATR_PERIOD,
    atr,
    clip01,
    donchian_breakout,
    ma_crossover,
    sma,
    zscore_reversion,
)
from ibstream.strategies.lifecycle import STRATEGIES, WINDOW, Strategy
from ibstream.strategies.sdk import BarPoint, Proposal

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
