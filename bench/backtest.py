"""Backtest benchmark: 5-second bars per second of ``ibstream backtest``'s engine on one core, the three built-in
strategies over 10 symbols, as a ratio to the bare strategy loop measured in the same run.

    python -m bench.backtest [--bars 4680] [--symbols 10] [--runs 3]

The bars are a seeded random walk (``--bars`` per symbol: 4,680 is one regular session), built before the clock
starts. ``backtest_bars_per_s``: the whole engine (``tooling.backtest.engine.Backtest``: matching, signal
lifecycle, scoring, runs, risk, fills). ``strategy_loop_bars_per_s``, the ceiling: the same bars through the three
built-in strategy functions alone, each over its symbol's last 40 bars, with nothing else done.
``backtest_to_strategy_loop`` divides the first by the second. Each figure is the median of ``--runs``; the last
line is ``json: {...}`` with every figure. No broker, no I/O: pure CPU, timed in the process's CPU seconds
(``time.process_time``), so a machine shared with other work still gives the rate of one core.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from bench.history import emit_figures
from ibstream.config import load_settings
from ibstream.contracts import Bar
from ibstream.contracts.enums import MarketDataSource
from ibstream.strategies.builtin import donchian_breakout, ma_crossover, zscore_reversion
from ibstream.strategies.instances import default_instances
from ibstream.strategies.sdk import BarPoint
from tooling.backtest.engine import Backtest, BacktestConfig

WINDOW = 40
SESSION_OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def session_bars(per_symbol: int, symbols: int, seed: int = 5) -> list[Bar]:
    """A seeded random walk, in start order then symbol."""
    rng = random.Random(seed)
    names = [f"S{n:02d}" for n in range(symbols)]
    price = {name: 50.0 + 10 * n for n, name in enumerate(names)}
    made = []
    for i in range(per_symbol):
        start = SESSION_OPEN + timedelta(seconds=5 * i)
        for name in names:
            opened = price[name]
            close = round(opened * (1 + rng.gauss(0, 0.0015)), 2)
            high = round(max(opened, close) + abs(rng.gauss(0, 0.03)), 2)
            low = round(min(opened, close) - abs(rng.gauss(0, 0.03)), 2)
            price[name] = close
            made.append(
                Bar(
                    symbol=name,
                    start=start,
                    open=opened,
                    high=high,
                    low=low,
                    close=close,
                    volume=100,
                    wap=close,
                    count=1,
                    event_time=start,
                    ingest_time=start,
                    source=MarketDataSource.REPLAY,
                )
            )
    return made


def backtest_rate(bars: list[Bar]) -> float:
    backtest = Backtest(default_instances(), BacktestConfig.from_settings(load_settings()))
    began = time.process_time()
    backtest.run(bars)
    return len(bars) / (time.process_time() - began)


def strategy_loop_rate(bars: list[Bar]) -> float:
    windows: dict[str, deque[BarPoint]] = {}
    strategies = (ma_crossover, donchian_breakout, zscore_reversion)
    began = time.process_time()
    for bar in bars:
        window = windows.setdefault(bar.symbol, deque(maxlen=WINDOW))
        window.append(BarPoint(bar.high, bar.low, bar.close, bar.start, bar.open, bar.volume))
        seen = list(window)
        for strategy in strategies:
            strategy(seen)
    return len(bars) / (time.process_time() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest", description=__doc__)
    parser.add_argument("--bars", type=int, default=4680, help="bars per symbol (default: one session)")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    bars = session_bars(args.bars, args.symbols)
    engine = statistics.median(backtest_rate(bars) for _ in range(args.runs))
    ceiling = statistics.median(strategy_loop_rate(bars) for _ in range(args.runs))
    print(f"backtest: {engine:,.0f} bars/s over {len(bars):,} bars ({args.symbols} symbols, 3 strategies)")
    print(f"bare strategy loop (ceiling): {ceiling:,.0f} bars/s; backtest / ceiling {engine / ceiling:.3f}")
    emit_figures(
        {
            "backtest_bars_per_s": round(engine, 1),
            "strategy_loop_bars_per_s": round(ceiling, 1),
            "backtest_to_strategy_loop": round(engine / ceiling, 4),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
