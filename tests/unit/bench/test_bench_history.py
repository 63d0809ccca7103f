"""The benchmarks' history: figures out of a run, appended, compared with the previous run, plotted over time."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from bench import history
from bench.__main__ import _record_history


def _results(ratio: float, pipeline_ms: float) -> dict[str, object]:
    return {
        "broker_baseline_records_per_s": {"median": 200_000.0, "min": 190_000.0, "max": 210_000.0},
        "producer_to_baseline_ratio": ratio,
        "killswitch": {"exit_code": 0, "figures": {"pipeline_ms": pipeline_ms, "pipeline_to_direct_ratio": 3.0}},
        "streams": {"skipped": "bench.streams is not built yet"},
    }


def test_a_benchmark_process_prints_its_figures_on_one_line_the_harness_takes_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    history.emit_figures({"pipeline_ms": 41.5, "direct_ms": 12.0})
    printed = capsys.readouterr().out.splitlines()
    figures, rest = history.split_output(["kill switch, 20 resting entries: …", *printed, "done"])
    assert figures == {"direct_ms": 12.0, "pipeline_ms": 41.5}
    assert rest == ["kill switch, 20 resting entries: …", "done"]


def test_nested_numbers_are_figures_by_their_dotted_path_and_nothing_else_is() -> None:
    report = {"intent_to_ack_ms": {"p50": 4.0, "p99": 9.5}, "approved": 3, "ok": True, "name": "x", "nan": float("nan")}
    assert history.numeric_leaves(report) == {"intent_to_ack_ms.p50": 4.0, "intent_to_ack_ms.p99": 9.5, "approved": 3.0}


def test_a_runs_figures_are_medians_ratios_and_each_process_figures() -> None:
    assert history.run_figures(_results(0.61, 40.0)) == {
        "broker_baseline_records_per_s": 200_000.0,
        "producer_to_baseline_ratio": 0.61,
        "killswitch.pipeline_ms": 40.0,
        "killswitch.pipeline_to_direct_ratio": 3.0,
    }


def test_each_figure_is_compared_with_the_last_run_that_measured_it(tmp_path: Path) -> None:
    path = tmp_path / "bench" / "history.jsonl"
    at = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    history.append(path, history.entry({"a": 100.0, "b": 10.0}, "c0ffee", {"cpus": 2}, at))
    history.append(path, history.entry({"a": 110.0}, "beef00", {"cpus": 2}, at + dt.timedelta(days=1)))
    with path.open("a") as out:
        out.write('{"torn line\n')
    runs = history.load(path)
    assert [run["commit"] for run in runs] == ["c0ffee", "beef00"]
    changes = {c.name: c for c in history.compare(runs, {"a": 99.0, "b": 12.5, "c": 1.0})}
    assert changes["a"].previous == 110.0 and changes["a"].previous_commit == "beef00"
    assert changes["a"].percent == pytest.approx(-10.0)
    # b was not measured by the last run: compared with the run before it.
    assert changes["b"].previous == 10.0 and changes["b"].percent == pytest.approx(25.0)
    assert changes["c"].previous is None and "new: no earlier run measured it" in changes["c"].render()
    assert "+25.0% against 10.000 (2026-12-01T08:00:00+00:00, c0ffee)" in changes["b"].render()


def test_the_plot_has_a_panel_per_figure_with_a_point_per_run_that_measured_it() -> None:
    runs = [
        {"time": "2026-12-01T08:00:00+00:00", "commit": "a", "figures": {"x": 1.0, "y": 5.0}},
        {"time": "2026-12-02T08:00:00+00:00", "commit": "b", "figures": {"x": 2.0}},
        {"time": "2026-12-03T08:00:00+00:00", "commit": "c", "figures": {"x": 4.0, "y": 5.0}},
    ]
    drawing = history.render_history_svg(runs)
    assert drawing.startswith("<svg") and drawing.count("<polyline") == 2
    assert drawing.count("<circle") == 5
    assert "x: 4.000 (min 1.000, max 4.000, 3 runs)" in drawing and "y: 5.000 (min 5.000, max 5.000, 2 runs)" in drawing
    xs = [float(x) for x in re.findall(r"<circle cx='([\d.]+)'", drawing)]
    assert xs[:3] == sorted(xs[:3]) and xs[0] < xs[1] < xs[2]  # oldest run left
    assert "no figures recorded yet" in history.render_history_svg([])


def test_the_harness_appends_each_run_prints_the_change_and_writes_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.jsonl"
    _record_history(path, {"results": _results(0.60, 40.0)})
    first = capsys.readouterr().out
    assert "0 earlier runs" in first and "new: no earlier run measured it" in first
    _record_history(path, {"results": _results(0.66, 30.0)})
    second = capsys.readouterr().out
    assert re.search(r"producer_to_baseline_ratio\s+0\.660\s+\+10\.0% against 0\.600", second), second
    assert re.search(r"killswitch\.pipeline_ms\s+30\.000\s+-25\.0% against 40\.000", second), second
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(runs) == 2 and runs[1]["figures"]["killswitch.pipeline_ms"] == 30.0
    assert {"platform", "python", "cpus", "memory_gb", "load_average_1m"} <= set(runs[1]["machine"])
    assert runs[1]["commit"] is None or re.fullmatch(r"[0-9a-f]{12}", runs[1]["commit"])
    plot = path.with_suffix(".svg")
    assert plot.exists() and plot.read_text().count("<polyline") == 4
    assert f"plot of every figure over time: {plot}" in second
    _record_history(path, {"results": {"streams": {"skipped": "not built"}}})
    assert "no figures measured" in capsys.readouterr().out and len(path.read_text().splitlines()) == 2
