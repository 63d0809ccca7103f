"""``ibstream backtest``: pick the instances, load the bars, run the engine with a progress bar, write the report.

The instances are the pipeline's (``IBSTREAM_STRATEGIES_FILE``, or the built-ins without one), strategies found
through the entry points (``ibstream.strategies.registry``): a user's package installed in the environment is
backtested exactly as the signals worker would run it. ``--strategies`` picks instances by name (or every instance
of a strategy by the strategy's name); without it, every instance enabled in the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ibstream.config import Settings
from ibstream.strategies.instances import StrategyInstance, load_instances
from ibstream.strategies.registry import discover
from tooling.backtest.engine import Approve, Backtest, BacktestConfig, BacktestError, BacktestResult
from tooling.backtest.report import report_id, write_report
from tooling.backtest.sources import Source, load_bars
from tooling.progress import current

#: Width of the progress bar, in characters.
BAR_WIDTH = 30
#: The progress line is updated every this many bars (a call per bar would cost more than the bar).
PROGRESS_EVERY = 2000


@dataclass(frozen=True)
class BacktestOptions:
    start: datetime
    end: datetime
    symbols: Sequence[str] = ()
    strategies: Sequence[str] = ()
    source: Source = "warehouse"
    csv_path: Path | None = None
    approve: Approve = "all"
    cash: float | None = None
    report_root: Path | None = None  # default: the state directory


@dataclass
class BacktestRun:
    result: BacktestResult
    directory: Path
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def bars_per_second(self) -> float:
        return self.result.bars / self.seconds if self.seconds > 0 else 0.0


def select_instances(instances: Sequence[StrategyInstance], names: Sequence[str]) -> list[StrategyInstance]:
    """The instances named (by instance or strategy name, switched on), or every enabled one when none is.
    BacktestError naming an unknown name and the known ones."""
    if not names:
        chosen = [i for i in instances if i.enabled]
    else:
        known = {i.name for i in instances} | {i.strategy_name for i in instances}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BacktestError(
                f"no strategy instance or strategy named {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        # A named instance runs even if the file switches it off: backtesting comes before enabling it.
        chosen = [replace(i, enabled=True) for i in instances if i.name in names or i.strategy_name in names]
    if not chosen:
        raise BacktestError("no enabled strategy instance to backtest (name them with --strategies)")
    return chosen


def progress_text(done: int, total: int, seconds: float) -> str:
    """``[#########.....] 62% 31,000/50,000 bars, 9,800 bars/s``."""
    share = done / total if total else 1.0
    filled = int(share * BAR_WIDTH)
    rate = done / seconds if seconds > 0 else 0.0
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%} {done:,}/{total:,} bars, {rate:,.0f} bars/s"


def _reporter(total: int, began: float) -> Callable[[int], None]:
    progress = current()
    marks = {"next": 0}

    def report(done: int) -> None:
        if done >= marks["next"]:
            marks["next"] = done + PROGRESS_EVERY
            progress.status(progress_text(done, total, time.monotonic() - began))

    return report


def run_backtest(settings: Settings, options: BacktestOptions) -> BacktestRun:
    """Load, run, report (see the module docstring)."""
    instances = select_instances(load_instances(settings.streams.strategies_file, discover()), options.strategies)
    progress = current()
    progress.phase(f"reading bars from {options.source}")
    bars = load_bars(settings, options.source, options.start, options.end, options.symbols, options.csv_path)
    progress.phase(f"backtesting {len(bars):,} bars with {', '.join(i.name for i in instances)}")
    backtest = Backtest(instances, BacktestConfig.from_settings(settings, options.approve, options.cash))
    began = time.monotonic()
    result = backtest.run(bars, _reporter(len(bars), began))
    seconds = time.monotonic() - began
    progress.status(progress_text(result.bars, len(bars), seconds))
    meta = {
        "id": report_id(),
        "strategies": [i.name for i in instances],
        "instances": {
            i.name: {"strategy": i.strategy_name, "version": i.version, "params": i.params.model_dump()}
            for i in instances
        },
        "source": options.source if options.csv_path is None else f"csv {options.csv_path}",
        "from": options.start.isoformat(),
        "to": options.end.isoformat(),
        "approve": options.approve,
        "seconds": round(seconds, 3),
        "bars_per_second": round(result.bars / seconds, 1) if seconds > 0 else None,
    }
    progress.phase("writing the report")
    directory = write_report(result, meta, options.report_root or settings.state_dir)
    return BacktestRun(result, directory, seconds, meta)
