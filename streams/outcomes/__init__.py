"""Outcomes: every signal scored from the 5-second bars after it, traded or not (``signals.outcomes.v1``).

* ``scoring``: the pure folds, a symbol's state and a signal or a bar in, the new state and outcomes out.
* ``agents``: the thin Faust agent ``outcomes`` over signals and bars.

Importing this package does not import Faust.
"""

from ibstream.strategies.scoring import Sizing, empty_state, on_bar, on_signal, planned_quantity, r_multiple

__all__ = ["Sizing", "empty_state", "on_bar", "on_signal", "planned_quantity", "r_multiple"]
