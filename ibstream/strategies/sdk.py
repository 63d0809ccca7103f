"""The strategy SDK: what a strategy is, what it sees, and what it may propose.

A strategy is a class deriving from ``Strategy``: a ``name`` and ``version``, a pydantic ``params_model`` (the
parameters one instance is configured with), the bar ``timeframes`` it needs (the first drives evaluation), a
``warmup`` (bars of that timeframe it needs before it can propose anything) and a pure ``on_bar``: the bars of one
symbol in, a ``Proposal`` or None out. Pure means the same bars always give the same answer: no clock, no I/O, no
state kept between calls (the signals worker replays bars after a restart and must get the same signals back).

Strategies are found through the entry-point group ``ibstream.strategies`` (``ibstream.strategies.registry``);
instances (one strategy, its params and symbols) come from ``IBSTREAM_STRATEGIES_FILE``
(``ibstream.strategies.instances``). The signals worker turns a proposal into a ``signals.v1`` record: prices on
IB's tick grid, the instance's name as the signal's strategy, ``rationale`` in the signal's first transition.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, get_args, overload

from pydantic import BaseModel, ConfigDict

from ibstream.contracts.bars import timeframe_topic
from ibstream.contracts.enums import Side
from ibstream.exceptions import IbstreamError

Timeframe = Literal["5s", "1m", "5m", "15m", "1h", "1d"]
#: Every bar timeframe a strategy may declare, shortest first.
TIMEFRAMES: tuple[Timeframe, ...] = get_args(Timeframe)
#: Length of one bar of each timeframe (a daily bar: one calendar day; a signal's expiry counts from its bar's end).
TIMEFRAME_SECONDS: dict[str, int] = {"5s": 5, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


def bar_topic_name(timeframe: str) -> str:
    """The Kafka topic (without prefix) carrying bars of ``timeframe``: ``md.bars.5s.v1``, ``md.bars.1m.v1``, …
    (the catalogue's topic: the bars agent publishes every timeframe there)."""
    return timeframe_topic(timeframe).name


class StrategyError(IbstreamError):
    """A strategy misbehaved: it raised, or proposed something impossible (its instance is disabled)."""


@dataclass(frozen=True)
class BarPoint:
    """One bar as a strategy sees it. ``start``, ``open`` and ``volume`` may be missing (None) for bars kept by a
    worker from before they were recorded; high, low and close are always there."""

    high: float
    low: float
    close: float
    start: datetime | None = None
    open: float | None = None
    volume: float | None = None


@dataclass(frozen=True)
class Proposal:
    """What a strategy proposes: the side, the bracket, how sure it is and why.

    ``confidence`` is in [0, 1] (how each strategy computes it is the strategy's to document); for a BUY the stop
    is below the entry and the take-profit above (the reverse for a SELL). ``expiry``: how long after its bar's end
    the signal stays actionable (None: ``IBSTREAM_SIGNAL_EXPIRY_SECONDS``). ``features`` travel with the signal;
    ``rationale`` is the human reason recorded with it.
    """

    side: Side
    confidence: float
    entry: float
    stop: float
    take_profit: float
    features: dict[str, float] = field(default_factory=dict)
    expiry: timedelta | None = None
    rationale: str = ""


def check_proposal(proposal: object) -> Proposal:
    """The proposal if it is one a signal can carry; StrategyError saying what is wrong otherwise."""
    if not isinstance(proposal, Proposal):
        raise StrategyError(f"on_bar returned {type(proposal).__name__}, expected a Proposal or None")
    prices = {"entry": proposal.entry, "stop": proposal.stop, "take_profit": proposal.take_profit}
    for name, value in prices.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise StrategyError(f"{name} must be a positive finite price, got {value!r}")
    if not (isinstance(proposal.confidence, int | float) and 0.0 <= proposal.confidence <= 1.0):
        raise StrategyError(f"confidence must be in [0, 1], got {proposal.confidence!r}")
    if not isinstance(proposal.side, Side):
        raise StrategyError(f"side must be Side.BUY or Side.SELL, got {proposal.side!r}")
    below, above = ("stop", "take_profit") if proposal.side is Side.BUY else ("take_profit", "stop")
    if not prices[below] < proposal.entry < prices[above]:
        raise StrategyError(f"a {proposal.side.value} needs {below} < entry < {above}, got {prices}")
    if proposal.expiry is not None and proposal.expiry.total_seconds() <= 0:
        raise StrategyError(f"expiry must be positive, got {proposal.expiry}")
    return proposal


class StrategyParams(BaseModel):
    """Base of every params model: immutable, and an unknown field is an error (a typo in the strategies file must
    not silently run the default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Bars(Sequence[BarPoint]):
    """What ``on_bar`` sees: one symbol's bars of its first timeframe (``timeframe``), oldest first, the newest bar
    last; at least ``warmup`` of them, maybe more. ``frames`` holds the bars of every timeframe kept for the symbol
    (the others a strategy declared among them). A ``Bars`` is itself the sequence of ``window``, so a function of
    a plain list of bars takes it as it is."""

    symbol: str
    timeframe: str
    window: Sequence[BarPoint]
    frames: Mapping[str, Sequence[BarPoint]] = field(default_factory=dict)

    @overload
    def __getitem__(self, index: int) -> BarPoint: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[BarPoint]: ...

    def __getitem__(self, index: int | slice) -> BarPoint | Sequence[BarPoint]:
        return self.window[index]

    def __len__(self) -> int:
        return len(self.window)


class Strategy(ABC):
    """A trading strategy. Subclasses set the class attributes and implement ``warmup`` and ``on_bar``.

    One object is built per configured instance with its validated params (``self.params``); ``on_bar`` must not
    keep state on it between calls.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    params_model: ClassVar[type[StrategyParams]] = StrategyParams
    timeframes: ClassVar[tuple[Timeframe, ...]] = ("5s",)
    description: ClassVar[str] = ""

    def __init__(self, params: StrategyParams) -> None:
        self.params: Any = params

    def __eq__(self, other: object) -> bool:
        """Same strategy class with equal params: the same proposals for the same bars."""
        return type(other) is type(self) and isinstance(other, Strategy) and other.params == self.params

    def __hash__(self) -> int:
        return hash((type(self), self.params))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    @property
    @abstractmethod
    def warmup(self) -> int:
        """Bars of the first timeframe needed before ``on_bar`` is called."""

    @abstractmethod
    def on_bar(self, bars: Bars) -> Proposal | None:
        """The proposal for the newest bar, or None. Pure: same bars, same answer."""
