"""The three built-in strategies: plain functions over a window of bars (oldest first) returning a proposal or None,
and the ``Strategy`` classes that register them in the entry-point group ``ibstream.strategies`` (pyproject.toml).

Every strategy sizes its stop and target with the average true range (ATR) of the window, so the same rules
work for any price level, and each computes ``confidence`` in [0, 1] as documented on the function.
Nothing here knows about Kafka, Faust or time: the same window always gives the same proposal.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from pydantic import Field, model_validator

from ibstream.contracts.enums import Side
from ibstream.strategies.sdk import BarPoint, Bars, Proposal, Strategy, StrategyParams

#: A strategy as a plain function of the window (what the signals lifecycle evaluates).
Evaluator = Callable[[Sequence[BarPoint]], Proposal | None]
#: Bars the ATR reads (true range needs one more: the previous close).
ATR_PERIOD = 14


def clip01(value: float) -> float:
    return 0.0 if value != value else max(0.0, min(1.0, value))  # NaN → 0


def sma(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def atr(bars: Sequence[BarPoint], period: int = ATR_PERIOD) -> float:
    """Average true range of the last ``period`` bars (true range needs the previous close)."""
    window = bars[-(period + 1) :]
    ranges = [
        max(cur.high - cur.low, abs(cur.high - prev.close), abs(cur.low - prev.close))
        for prev, cur in itertools.pairwise(window)
    ]
    return sum(ranges) / len(ranges) if ranges else 0.0


def _bracket(side: Side, entry: float, stop_distance: float, target_distance: float) -> tuple[float, float]:
    if side is Side.BUY:
        return entry - stop_distance, entry + target_distance
    return entry + stop_distance, entry - target_distance


def ma_crossover(bars: Sequence[BarPoint], fast: int = 10, slow: int = 30, momentum: int = 5) -> Proposal | None:
    """Buy when the fast SMA crosses above the slow SMA on the last bar, sell when it crosses below.

    Confidence: how fast the fast SMA moved over the last ``momentum`` bars, in ATRs —
    ``clip(|fast_now − fast_{now−momentum}| / ATR, 0, 1)``: a cross with one ATR of momentum is full confidence,
    a drift across the slow average is close to zero. Stop 2 ATR, target 3 ATR.
    """
    if len(bars) < slow + momentum + 1:
        return None
    # Only the closes the averages read: the same values summed in the same order as over the whole window.
    closes = [bar.close for bar in bars[-max(slow + 1, fast + momentum) :]]
    fast_now, slow_now = sma(closes[-fast:]), sma(closes[-slow:])
    fast_prev, slow_prev = sma(closes[-fast - 1 : -1]), sma(closes[-slow - 1 : -1])
    if fast_prev <= slow_prev and fast_now > slow_now:
        side = Side.BUY
    elif fast_prev >= slow_prev and fast_now < slow_now:
        side = Side.SELL
    else:
        return None
    range_ = atr(bars)
    if range_ <= 0:
        return None
    fast_then = sma(closes[-fast - momentum : -momentum])
    confidence = clip01(abs(fast_now - fast_then) / range_)
    entry = closes[-1]
    stop, target = _bracket(side, entry, 2 * range_, 3 * range_)
    return Proposal(side, confidence, entry, stop, target, {"fast_sma": fast_now, "slow_sma": slow_now, "atr": range_})


def donchian_breakout(bars: Sequence[BarPoint], period: int = 20) -> Proposal | None:
    """Buy when the close breaks above the highest high of the previous ``period`` bars, sell below the lowest low.

    Confidence: 0.5 for a breakout plus half of how far beyond the channel the close is, in ATRs —
    ``clip(0.5 + 0.5 · distance / ATR, 0, 1)``: a close one ATR beyond the channel is full confidence, a close
    that just touches it is 0.5. Stop 2 ATR, target 4 ATR (trend following lets winners run).
    """
    if len(bars) < period + 2:
        return None
    channel = bars[-period - 1 : -1]
    # Lists, not generators: the same values compared in the same order, faster.
    high, low = max([bar.high for bar in channel]), min([bar.low for bar in channel])
    close = bars[-1].close
    if close > high:
        side, distance = Side.BUY, close - high
    elif close < low:
        side, distance = Side.SELL, low - close
    else:
        return None
    range_ = atr(bars)  # only for a breakout: most bars are inside the channel
    if range_ <= 0:
        return None
    confidence = clip01(0.5 + 0.5 * distance / range_)
    stop, target = _bracket(side, close, 2 * range_, 4 * range_)
    return Proposal(side, confidence, close, stop, target, {"channel_high": high, "channel_low": low, "atr": range_})


def zscore_reversion(bars: Sequence[BarPoint], period: int = 20, threshold: float = 2.0) -> Proposal | None:
    """Fade a stretched close: buy when the close is ``threshold`` standard deviations below its ``period`` mean,
    sell when above.

    Confidence: how far past the threshold the z-score is — ``clip(0.5 + (|z| − threshold) / 2, 0, 1)``:
    |z| = 2 is 0.5, |z| = 3 is 1.0. Target the mean, stop one standard deviation beyond the entry.
    """
    if len(bars) < period:
        return None
    closes = [bar.close for bar in bars[-period:]]
    mean = sma(closes)
    std = math.sqrt(sum([(c - mean) ** 2 for c in closes]) / len(closes))
    if std <= 0:
        return None
    close = closes[-1]
    z = (close - mean) / std
    if z <= -threshold:
        side = Side.BUY
    elif z >= threshold:
        side = Side.SELL
    else:
        return None
    confidence = clip01(0.5 + (abs(z) - threshold) / 2)
    stop = close - std if side is Side.BUY else close + std
    return Proposal(side, confidence, close, stop, mean, {"zscore": z, "mean": mean, "std": std})


class MaCrossoverParams(StrategyParams):
    fast: int = Field(default=10, ge=1, description="bars of the fast simple moving average")
    slow: int = Field(default=30, ge=2, description="bars of the slow simple moving average")
    momentum: int = Field(default=5, ge=1, description="bars over which the fast average's move sets confidence")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MaCrossoverParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class MaCrossover(Strategy):
    """Moving-average crossover (``ma_crossover``)."""

    name = "ma_crossover"
    version = "1.0.0"
    params_model = MaCrossoverParams
    params: MaCrossoverParams
    description = "Buy when the fast SMA crosses above the slow SMA, sell when it crosses below."

    @property
    def warmup(self) -> int:
        return max(self.params.slow + self.params.momentum + 1, ATR_PERIOD + 1)

    def on_bar(self, bars: Bars) -> Proposal | None:
        return ma_crossover(bars.window, self.params.fast, self.params.slow, self.params.momentum)


class DonchianBreakoutParams(StrategyParams):
    period: int = Field(default=20, ge=2, description="bars of the channel the close must break")


class DonchianBreakout(Strategy):
    """Donchian channel breakout (``donchian_breakout``)."""

    name = "donchian_breakout"
    version = "1.0.0"
    params_model = DonchianBreakoutParams
    params: DonchianBreakoutParams
    description = "Buy a close above the previous bars' highest high, sell one below their lowest low."

    @property
    def warmup(self) -> int:
        return max(self.params.period + 2, ATR_PERIOD + 1)

    def on_bar(self, bars: Bars) -> Proposal | None:
        return donchian_breakout(bars.window, self.params.period)


class ZscoreReversionParams(StrategyParams):
    period: int = Field(default=20, ge=2, description="bars of the mean and standard deviation")
    threshold: float = Field(default=2.0, gt=0, description="standard deviations from the mean that trigger a fade")


class ZscoreReversion(Strategy):
    """Z-score mean reversion (``zscore_reversion``)."""

    name = "zscore_reversion"
    version = "1.0.0"
    params_model = ZscoreReversionParams
    params: ZscoreReversionParams
    description = "Fade a close stretched beyond the threshold in standard deviations, targeting the mean."

    @property
    def warmup(self) -> int:
        return self.params.period

    def on_bar(self, bars: Bars) -> Proposal | None:
        return zscore_reversion(bars.window, self.params.period, self.params.threshold)


#: The built-ins by name: registered as entry points too, and found from here when the entry points are not
#: installed (a source checkout run without ``pip install``).
BUILTIN: dict[str, type[Strategy]] = {cls.name: cls for cls in (MaCrossover, DonchianBreakout, ZscoreReversion)}
