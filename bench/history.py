"""The benchmarks' history: every run of ``python -m bench`` appends its figures to a JSON-lines file (by default
``<state dir>/bench/history.jsonl``), prints each figure's change against the previous run that measured it, and
draws every figure over time (``history.svg`` beside the file).

A figure is one number with a dotted name (``killswitch.pipeline_to_direct_ratio``). In-process benchmarks give theirs
from their result dicts; a benchmark run as its own process prints them on one line that starts with
``FIGURES_MARKER`` (``emit_figures``), which the harness takes out of the output it shows. Apart from the file I/O
(``append``, ``load``, ``write_plot``) and the facts about the run (``git_commit``, ``machine_facts``) it is pure.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooling.svg import COLOURS, Axes, polyline, svg, text

FIGURES_MARKER = "bench-figures: "


def emit_figures(figures: Mapping[str, float]) -> None:
    """Print a benchmark's figures for the harness (one line; the human-readable lines stay as they are)."""
    print(FIGURES_MARKER + json.dumps(dict(figures), sort_keys=True), flush=True)


def split_output(lines: Iterable[str]) -> tuple[dict[str, float], list[str]]:
    """A benchmark's printed figures and the rest of its output."""
    figures: dict[str, float] = {}
    rest = []
    for line in lines:
        if line.startswith(FIGURES_MARKER):
            figures.update(numeric_leaves(json.loads(line.removeprefix(FIGURES_MARKER))))
        else:
            rest.append(line)
    return figures, rest


def numeric_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in nested dicts, named by its dotted path (booleans and text are not figures)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)} if math.isfinite(value) and prefix else {}
    if isinstance(value, Mapping):
        found: dict[str, float] = {}
        for key, inner in value.items():
            found.update(numeric_leaves(inner, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {}


def run_figures(results: Mapping[str, Any]) -> dict[str, float]:
    """The figures of one run from the harness's ``results``: a median of repeated runs stands for its benchmark,
    a benchmark run as a process contributes the figures it printed."""
    figures: dict[str, float] = {}
    for name, value in results.items():
        if isinstance(value, Mapping) and "median" in value:
            figures[name] = float(value["median"])
        elif isinstance(value, Mapping) and "figures" in value:
            figures.update(numeric_leaves(value["figures"], name))  # nested (percentiles) flattened by path
        elif isinstance(value, int | float) and not isinstance(value, bool):
            figures[name] = float(value)
    return figures


def git_commit(root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: the machine, its cores and memory, and how loaded it was at the start."""
    import psutil

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def entry(
    figures: Mapping[str, float], commit: str | None, machine: Mapping[str, Any], when: dt.datetime
) -> dict[str, Any]:
    return {"time": when.isoformat(timespec="seconds"), "commit": commit, "machine": dict(machine), "figures": figures}


def append(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")


def load(path: Path) -> list[dict[str, Any]]:
    """Every run recorded so far, oldest first (a torn or foreign line is skipped, not fatal)."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("figures"), dict):
            runs.append(record)
    return runs


@dataclass(frozen=True)
class Change:
    """One figure of this run against the last earlier run that measured it (``previous`` None: a new figure)."""

    name: str
    current: float
    previous: float | None = None
    previous_time: str | None = None
    previous_commit: str | None = None

    @property
    def percent(self) -> float | None:
        if self.previous is None or self.previous == 0:
            return None
        return (self.current - self.previous) / abs(self.previous) * 100.0

    def render(self) -> str:
        if self.previous is None:
            return f"{self.name:48} {self.current:>14,.3f}  (new: no earlier run measured it)"
        change = "n/a" if self.percent is None else f"{self.percent:+.1f}%"
        return (
            f"{self.name:48} {self.current:>14,.3f}  {change:>8} against {self.previous:,.3f} "
            f"({self.previous_time}, {self.previous_commit or 'no commit'})"
        )


def compare(earlier: list[dict[str, Any]], figures: Mapping[str, float]) -> list[Change]:
    """Each figure of this run against the newest earlier run that has it (a run of ``--only killswitch`` is compared
    with the last run that measured the kill switch, not with whatever ran last)."""
    changes = []
    for name in sorted(figures):
        before = next((run for run in reversed(earlier) if name in run["figures"]), None)
        if before is None:
            changes.append(Change(name, figures[name]))
        else:
            changes.append(
                Change(name, figures[name], float(before["figures"][name]), before.get("time"), before.get("commit"))
            )
    return changes


_WIDTH, _PANEL_HEIGHT, _PANEL_GAP, _LEFT, _RIGHT = 720, 90, 46, 90, 700


def render_history_svg(runs: list[dict[str, Any]]) -> str:
    """Each figure over the runs that measured it: one small panel per figure, runs in order on x (oldest left)."""
    names = sorted({name for run in runs for name in run["figures"]})
    height = max(len(names), 1) * (_PANEL_HEIGHT + _PANEL_GAP) + 10
    parts = [] if names else [text(_LEFT, 30, "no figures recorded yet")]
    for row, name in enumerate(names):
        top = 24 + row * (_PANEL_HEIGHT + _PANEL_GAP)
        points = [(i, float(run["figures"][name])) for i, run in enumerate(runs) if name in run["figures"]]
        values = [value for _, value in points]
        low, high = min(values), max(values)
        pad = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
        axes = Axes(
            0, max(len(runs) - 1, 1), low - pad, high + pad, left=_LEFT, right=_RIGHT, top=top, height=_PANEL_HEIGHT
        )
        colour = COLOURS[row % len(COLOURS)]
        first, last = runs[points[0][0]], runs[points[-1][0]]
        parts += [
            f"<rect x='{_LEFT}' y='{top}' width='{_RIGHT - _LEFT}' height='{_PANEL_HEIGHT}' fill='none' "
            "stroke='#d0d7de'/>",
            text(_LEFT, top - 6, f"{name}: {values[-1]:,.3f} (min {low:,.3f}, max {high:,.3f}, {len(values)} runs)"),
            text(_LEFT - 4, top + 10, f"{high + pad:,.4g}", size=9, anchor="end"),
            text(_LEFT - 4, top + _PANEL_HEIGHT, f"{low - pad:,.4g}", size=9, anchor="end"),
            text(_LEFT, top + _PANEL_HEIGHT + 12, str(first.get("time", ""))[:16], size=9),
            text(_RIGHT, top + _PANEL_HEIGHT + 12, str(last.get("time", ""))[:16], size=9, anchor="end"),
            polyline([(axes.x(i), axes.y(value)) for i, value in points], colour),
        ]
        for i, value in points:
            tip = f"{runs[i].get('time')} {runs[i].get('commit') or ''}: {value:,.3f}"
            parts.append(
                f"<circle cx='{axes.x(i):.1f}' cy='{axes.y(value):.1f}' r='3' fill='{colour}'><title>{tip}</title>"
                "</circle>"
            )
    return svg(_WIDTH, height, parts, "benchmark figures over time")


def write_plot(runs: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_history_svg(runs))
    return path
