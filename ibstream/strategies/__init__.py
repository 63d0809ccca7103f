"""The strategy SDK: the interface a strategy implements (``sdk``), how strategies are found (``registry``, the
entry-point group ``ibstream.strategies``), how instances are configured (``instances``,
``IBSTREAM_STRATEGIES_FILE``) and switched on and off at runtime (``switches``, control.v1), and the built-ins
(``builtin``). Everything a strategy package needs is importable from here."""

from ibstream.contracts.enums import Side
from ibstream.strategies.registry import GROUP, Registry, discover
from ibstream.strategies.sdk import (
    TIMEFRAME_SECONDS,
    TIMEFRAMES,
    BarPoint,
    Bars,
    Proposal,
    Strategy,
    StrategyError,
    StrategyParams,
    Timeframe,
    bar_topic_name,
    check_proposal,
)

__all__ = [
    "GROUP",
    "TIMEFRAMES",
    "TIMEFRAME_SECONDS",
    "BarPoint",
    "Bars",
    "Proposal",
    "Registry",
    "Side",
    "Strategy",
    "StrategyError",
    "StrategyParams",
    "Timeframe",
    "bar_topic_name",
    "check_proposal",
    "discover",
]
