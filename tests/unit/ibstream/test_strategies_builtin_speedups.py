"""The built-in strategies, made cheaper per bar, still give exactly what they gave before, bit for bit: the
functions as they were are kept here as the reference and both run over the same windows (random walks on the
cent grid, so equal averages and closes on a channel's edge, the ties the comparisons decide, are common)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from ibstream.contracts.enums import Side
from ibstream.strategies.builtin import atr, clip01, donchian_breakout, ma_crossover, zscore_reversion
from ibstream.strategies.sdk import BarPoint, Proposal


def _sma(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _bracket(side: Side, entry: float, stop_distance: float, target_distance: float) -> tuple[float, float]:
    if side is Side.BUY:
        return entry - stop_distance, entry + target_distance
    return entry + stop_distance, entry - target_distance


def reference_ma_crossover(
    bars: Sequence[BarPoint], fast: int = 10, slow: int = 30, momentum: int = 5
) -> Proposal | None:
    if len(bars) < slow + momentum + 1:
        return None
    closes = [bar.close for bar in bars]
    fast_now, slow_now = _sma(closes[-fast:]), _sma(closes[-slow:])
    fast_prev, slow_prev = _sma(closes[-fast - 1 : -1]), _sma(closes[-slow - 1 : -1])
    if fast_prev <= slow_prev and fast_now > slow_now:
        side = Side.BUY
    elif fast_prev >= slow_prev and fast_now < slow_now:
        side = Side.SELL
    else:
        return None
    range_ = atr(bars)
    if range_ <= 0:
        return None
    fast_then = _sma(closes[-fast - momentum : -momentum])
    confidence = clip01(abs(fast_now - fast_then) / range_)
    entry = closes[-1]
    stop, target = _bracket(side, entry, 2 * range_, 3 * range_)
    return Proposal(side, confidence, entry, stop, target, {"fast_sma": fast_now, "slow_sma": slow_now, "atr": range_})


def reference_donchian_breakout(bars: Sequence[BarPoint], period: int = 20) -> Proposal | None:
    if len(bars) < period + 2:
        return None
    channel = bars[-period - 1 : -1]
    high, low = max(bar.high for bar in channel), min(bar.low for bar in channel)
    close = bars[-1].close
    if close > high:
        side, distance = Side.BUY, close - high
    elif close < low:
        side, distance = Side.SELL, low - close
    else:
        return None
    range_ = atr(bars)
    if range_ <= 0:
        return None
    confidence = clip01(0.5 + 0.5 * distance / range_)
    stop, target = _bracket(side, close, 2 * range_, 4 * range_)
    return Proposal(side, confidence, close, stop, target, {"channel_high": high, "channel_low": low, "atr": range_})


def reference_zscore_reversion(bars: Sequence[BarPoint], period: int = 20, threshold: float = 2.0) -> Proposal | None:
    if len(bars) < period:
        return None
    closes = [bar.close for bar in bars[-period:]]
    mean = _sma(closes)
    std = math.sqrt(sum((c - mean) ** 2 for c in closes) / len(closes))
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


def _walk(count: int, seed: int, step: float) -> list[BarPoint]:
    """Bars on the cent grid; ``step`` 0 gives long flat stretches (equal averages everywhere)."""
    rng = random.Random(seed)
    price, made = 50.0 + 100 * rng.random(), []
    for _ in range(count):
        close = round(price * (1 + rng.gauss(0, step)), 2) if rng.random() < 0.8 else price
        high = round(max(price, close) + abs(rng.gauss(0, 0.02)), 2)
        low = round(min(price, close) - abs(rng.gauss(0, 0.02)), 2)
        made.append(BarPoint(high, low, close))
        price = close
    return made


def _same(got: Proposal | None, expected: Proposal | None) -> bool:
    """Equal, NaN-free floats compared exactly (``==`` on the dataclasses)."""
    return got == expected


def test_the_built_ins_give_what_they_gave_before_on_every_window_of_long_walks() -> None:
    made = 0
    for seed, step in itertools.product(range(6), (0.0, 0.0005, 0.002)):
        bars = _walk(400, seed, step)
        for end in range(1, len(bars) + 1):
            window = bars[max(0, end - 40) : end]
            for new, old in (
                (ma_crossover, reference_ma_crossover),
                (donchian_breakout, reference_donchian_breakout),
                (zscore_reversion, reference_zscore_reversion),
            ):
                expected = old(window)
                assert _same(new(window), expected), (new.__name__, seed, step, end)
                made += expected is not None
    assert made > 200  # the walks do make proposals of each kind to compare


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    length=st.integers(1, 60),
    fast=st.integers(1, 40),
    slow=st.integers(2, 40),
    momentum=st.integers(1, 20),
    period=st.integers(2, 40),
    threshold=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)
def test_the_built_ins_give_what_they_gave_before_for_any_params(
    seed: int, length: int, fast: int, slow: int, momentum: int, period: int, threshold: float
) -> None:
    """Any params the functions accept (fast above slow too: the function does not refuse it, the params model
    does), over windows shorter and longer than they need."""
    window = _walk(length, seed, 0.003)
    assert _same(ma_crossover(window, fast, slow, momentum), reference_ma_crossover(window, fast, slow, momentum))
    assert _same(donchian_breakout(window, period), reference_donchian_breakout(window, period))
    assert _same(zscore_reversion(window, period, threshold), reference_zscore_reversion(window, period, threshold))
