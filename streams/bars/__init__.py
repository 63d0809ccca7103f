"""Bars: the 5-second bars aggregated into session-aligned 1m, 5m, 15m, 1h and 1d bars.

* ``aggregation``: the pure fold, a symbol's state and a 5-second bar in, the new state and aggregates out.
* ``agents``: the thin Faust agent ``bars`` over it.

Importing this package does not import Faust.
"""

from streams.bars.aggregation import AggregationConfig, Emitted, bucket_bounds, empty_state, on_bar, session_bounds

__all__ = ["AggregationConfig", "Emitted", "bucket_bounds", "empty_state", "on_bar", "session_bounds"]
