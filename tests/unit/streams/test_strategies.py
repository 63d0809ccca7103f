"""Each strategy on known series: side, bracket, and the documented confidence formula."""

from __future__ import annotations

import pytest

from ibstream.contracts.enums import Side
from streams.signals.strategies import (
    STRATEGIES,
    WINDOW,
    BarPoint,
    atr,
    donchian_breakout,
    ma_crossover,
    zscore_reversion,
)


def bars_from(closes: list[float], spread: float = 0.5) -> list[BarPoint]:
    return [BarPoint(high=c + spread, low=c - spread, close=c) for c in closes]


def mirrored(closes: list[float]) -> list[float]:
    return [200.0 - c for c in closes]


# Falling for 36 bars, then two sharp up bars: the fast SMA crosses the slow one exactly on the last bar.
CROSS_UP = [110.0 - 0.25 * i for i in range(36)] + [112.0, 130.0]


def test_ma_crossover_buys_on_the_cross_bar_only() -> None:
    bars = bars_from(CROSS_UP)
    assert ma_crossover(bars[:-1]) is None  # the bar before: fast still below slow
    proposal = ma_crossover(bars)
    assert proposal is not None
    assert proposal.side is Side.BUY
    closes = CROSS_UP
    range_ = atr(bars)
    fast_now, fast_then = sum(closes[-10:]) / 10, sum(closes[-15:-5]) / 10
    assert proposal.confidence == pytest.approx(min(1.0, abs(fast_now - fast_then) / range_))
    assert proposal.stop == pytest.approx(130.0 - 2 * range_)
    assert proposal.take_profit == pytest.approx(130.0 + 3 * range_)


def test_ma_crossover_sells_on_the_mirror_and_ignores_flat() -> None:
    proposal = ma_crossover(bars_from(mirrored(CROSS_UP)))
    assert proposal is not None and proposal.side is Side.SELL
    assert proposal.stop > proposal.entry > proposal.take_profit
    assert ma_crossover(bars_from([100.0] * 40)) is None
    assert ma_crossover(bars_from(CROSS_UP[-20:])) is None  # not enough history


CHANNEL = [99.0, 101.0] * 12  # highs 101.5, lows 98.5


def test_donchian_breakout_confidence_grows_with_distance_beyond_the_channel() -> None:
    bars = bars_from([*CHANNEL, 102.0])
    proposal = donchian_breakout(bars)
    assert proposal is not None and proposal.side is Side.BUY
    range_ = atr(bars)
    assert proposal.confidence == pytest.approx(0.5 + 0.5 * (102.0 - 101.5) / range_)
    assert proposal.stop == pytest.approx(102.0 - 2 * range_)
    assert proposal.take_profit == pytest.approx(102.0 + 4 * range_)
    far = donchian_breakout(bars_from([*CHANNEL, 110.0]))
    assert far is not None and far.confidence == 1.0
    down = donchian_breakout(bars_from([*CHANNEL, 97.0]))
    assert down is not None and down.side is Side.SELL
    assert donchian_breakout(bars_from([*CHANNEL, 101.0])) is None  # inside the channel


def test_zscore_reversion_fades_a_stretched_close_toward_the_mean() -> None:
    closes = [*CHANNEL[:19], 95.0]
    proposal = zscore_reversion(bars_from(closes))
    assert proposal is not None and proposal.side is Side.BUY
    mean = sum(closes) / 20
    std = (sum((c - mean) ** 2 for c in closes) / 20) ** 0.5
    z = (95.0 - mean) / std
    assert proposal.features["zscore"] == pytest.approx(z)
    assert proposal.confidence == pytest.approx(min(1.0, 0.5 + (abs(z) - 2) / 2))
    assert proposal.take_profit == pytest.approx(mean)
    assert proposal.stop == pytest.approx(95.0 - std)
    up = zscore_reversion(bars_from([*CHANNEL[:19], 105.0]))
    assert up is not None and up.side is Side.SELL and up.take_profit < up.entry < up.stop
    assert zscore_reversion(bars_from(CHANNEL[:20])) is None  # |z| = 1
    assert zscore_reversion(bars_from([100.0] * 20)) is None  # no dispersion


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_keeps_confidence_in_range_and_fits_the_window(name: str) -> None:
    strategy = STRATEGIES[name]
    for closes in (CROSS_UP, mirrored(CROSS_UP), [*CHANNEL, 150.0], [*CHANNEL, 10.0]):
        window = bars_from(closes)[-WINDOW:]
        proposal = strategy(window)
        if proposal is not None:
            assert 0.0 <= proposal.confidence <= 1.0
            assert (proposal.stop < proposal.entry) == (proposal.side is Side.BUY)
