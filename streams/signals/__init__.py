"""Signals: strategies over 5-second bars, and each signal's lifecycle up to the moment orchestration runs it.

* ``strategies``: plain functions over a window of bars, the registry signals run.
* ``lifecycle``: pure folds, a symbol's state and a bar (or a transition) in, the new state and records out.
* ``agents``: the thin Faust agents ``signals`` and ``transitions`` over them.

The pure lifecycle's names are importable from here; importing this package does not import Faust.
"""

from ibstream.strategies.lifecycle import (
    BAR_SECONDS,
    EXPIRABLE,
    TERMINAL,
    State,
    empty_state,
    on_bar,
    on_transition,
    transition,
)

__all__ = ["BAR_SECONDS", "EXPIRABLE", "TERMINAL", "State", "empty_state", "on_bar", "on_transition", "transition"]
