"""The benchmark harness: `python -m bench` (or `ibstream bench`) on the local stack.

Runs each benchmark, prints a table and writes JSON to bench/results/<timestamp>.json (ignored by git); ``--json``
prints that JSON instead of the table, with the figures issue #24 tracks at its top level (``bench.report``:
``producer_to_python_ceiling``, ``sink_rows_per_s``, ``replay_rows_per_s``, ``quote_to_consumer_ms``,
``peak_rss_mb`` per deployable, …). The machine is noisy and shared: each figure is the median of repeated runs
with min and max, and the ratios measured in the same run are the figures to trust: producer path / broker baseline
(ProducerPerformance), risk and signals / a bare Faust agent (``risk_to_faust_ceiling``,
``signals_to_faust_ceiling``, from ``bench.streams``), and the order path's ``routed_to_ack_ms`` percentiles
(``bench.pipeline``). ``--quick`` runs the subprocess benchmarks at their smallest sizes (a smoke test).
Every run's figures are appended to a history (default <state dir>/bench/history.jsonl, with the date, the git
commit and the machine); the change of each figure against the previous run that measured it is printed, and a plot
of every figure over time is written beside the history (history.svg).
Needs a broker (`ibstream stack up`; IBSTREAM_KAFKA_BOOTSTRAP_SERVERS).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import history
from bench.report import tracked_figures

RESULTS = Path(__file__).resolve().parent / "results"

#: Arguments of ``--quick``: the smallest sizes that still exercise every path.
QUICK_ARGUMENTS = {
    "streams": ["--bars", "600", "--intents", "300", "--symbols", "10"],
    "pipeline": ["--seconds", "8"],
    "sink": ["--records", "20000"],
    "backtest": ["--bars", "600", "--runs", "1"],
}
#: Figures lifted from a benchmark's ``json:`` line to the top of the report: (benchmark, figure, keys to keep).
HEADLINES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("streams", "risk_to_faust_ceiling", ()),
    ("streams", "signals_to_faust_ceiling", ()),
    ("pipeline", "routed_to_ack_ms", ("p50", "p95", "p99", "count")),
    ("backtest", "backtest_bars_per_s", ()),
    ("backtest", "backtest_to_strategy_loop", ()),
)

#: Benchmarks run as their own processes (their peak RSS is theirs alone); name → module.
SUBPROCESS_BENCHES = {
    "serde": "bench.serde",
    "sink": "bench.sink",
    "streams": "bench.streams",
    "ibsim": "bench.ibsim",
    "pipeline": "bench.pipeline",
    "killswitch": "bench.killswitch",
    "backtest": "bench.backtest",
}


def _run_module(module: str, arguments: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments], capture_output=True, text=True, timeout=1800, check=False
    )
    figures, output = history.split_output(result.stdout.strip().splitlines())
    return {
        "module": module,
        "exit_code": result.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "output": [line for line in output if not line.startswith("json: ")],
        # The structured figures a benchmark printed (``json: {...}``: nested, e.g. routed_to_ack_ms's percentiles)
        # where it prints them, else its flat history figures.
        "figures": figures_of(output) or figures,
        "error": result.stderr.strip().splitlines()[-5:],
    }


def figures_of(output: list[str]) -> dict[str, Any]:
    """The figures a benchmark printed on its last ``json: {...}`` line (empty: none)."""
    for line in reversed(output):
        if line.startswith("json: "):
            figures: dict[str, Any] = json.loads(line.removeprefix("json: "))
            return figures
    return {}


def headlines(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue tracks, from the benchmarks' own figures (pure)."""
    lifted: dict[str, Any] = {}
    for bench, name, keys in HEADLINES:
        value = results.get(bench, {}).get("figures", {}).get(name) if isinstance(results.get(bench), dict) else None
        if value is None:
            continue
        lifted[name] = {key: value[key] for key in keys if key in value} if keys else value
    return lifted


def print_table(results: dict[str, Any]) -> None:
    print(f"{'benchmark':34} figures")
    for name, value in results.items():
        if isinstance(value, dict) and "median" in value:
            print(f"{name:34} median {value['median']:,.0f}  (min {value['min']:,.0f}, max {value['max']:,.0f})")
        elif isinstance(value, dict) and "output" in value:
            print(f"{name:34} exit {value['exit_code']}, {value['seconds']} s")
            for line in value["output"]:
                print(f"{'':36}{line}")
        else:
            print(f"{name:34} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", nargs="*", help="subset: baseline producer serde sink streams ibsim pipeline killswitch backtest"
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smallest sizes: a smoke test, not a measurement")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    parser.add_argument(
        "--history", type=Path, default=None, help="the history file (default <state dir>/bench/history.jsonl)"
    )
    args = parser.parse_args(argv)
    wanted = set(args.only or ["baseline", "producer", *SUBPROCESS_BENCHES])
    report: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "results": {},
    }

    if "baseline" in wanted or "producer" in wanted:
        from bench import baseline, producer

        base = baseline.measure(max(args.records, 300_000), args.runs, 88) if "baseline" in wanted else None
        sizes = (20_000, 1) if args.quick else (args.records, args.runs)
        path = producer.measure(*sizes) if "producer" in wanted else None
        if base is not None:
            report["results"]["broker_baseline_records_per_s"] = base
        if path is not None:
            report["results"]["producer_path_records_per_s"] = path
        if base and path:
            report["results"]["producer_to_baseline_ratio"] = round(path["median"] / base["median"], 3)

    for name, module in SUBPROCESS_BENCHES.items():
        if name in wanted:
            if not (Path(__file__).resolve().parent / f"{module.split('.')[-1]}.py").exists():
                report["results"][name] = {"skipped": f"{module} is not built yet"}
                continue
            report["results"][name] = _run_module(module, QUICK_ARGUMENTS.get(name, []) if args.quick else [])
    report["results"].update(headlines(report["results"]))
    # The figures under its names, at the top of the document (bench.report).
    report.update(tracked_figures(report["results"]))

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_table(report["results"])
    print(f"\nwritten to {out}")
    _record_history(args.history, report)
    return 0


def _record_history(path: Path | None, report: dict[str, Any]) -> None:
    """Append this run's figures to the history, print each one's change against the previous run, plot them all."""
    if path is None:
        from ibstream.config import get_settings

        path = get_settings().state_dir / "bench" / "history.jsonl"
    figures = history.run_figures(report["results"])
    earlier = history.load(path)
    if not figures:
        print(f"\nno figures measured: nothing added to {path}")
        return
    root = Path(__file__).resolve().parent.parent
    record = history.entry(figures, history.git_commit(root), history.machine_facts(), datetime.now(UTC))
    history.append(path, record)
    print(f"\nchange against the previous run ({len(earlier)} earlier runs in {path}):")
    for change in history.compare(earlier, figures):
        print(f"  {change.render()}")
    plot = history.write_plot([*earlier, record], path.with_suffix(".svg"))
    print(f"plot of every figure over time: {plot}")


if __name__ == "__main__":
    raise SystemExit(main())
