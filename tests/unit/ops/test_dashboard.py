"""The Grafana dashboard: valid JSON Grafana loads (panels, targets, a Prometheus datasource variable), one row per
pipeline stage, every query valid PromQL naming metrics the code really emits, and the chart's copy current."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.metric_names import emitted_metric_names, referenced_metrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "ops" / "dashboards" / "ibstream.json"
ROWS = ["IB & market data", "Streams: signals & orchestration", "Risk", "Execution", "Warehouse & DLQ", "API", "Alerts"]
#: Series Prometheus itself provides (the state of alert rules), not emitted by our code.
BUILTIN = re.compile(r"^ALERTS\{")
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (ops/dev install adds Debian's prometheus package, which ships it)"
DATASOURCE = "${datasource}"


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _targets() -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], target) for panel in _panels() for target in panel["targets"]]


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels():
        assert panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: duplicate refId"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE and target["expr"].strip(), panel["title"]


def test_panels_are_laid_out_on_the_grid_without_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        columns, lines = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        cells = {(x, y) for x in columns for y in lines}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_one_row_per_stage_in_pipeline_order_each_with_panels() -> None:
    panels = _dashboard()["panels"]
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == ROWS
    row_positions = [index for index, panel in enumerate(panels) if panel["type"] == "row"] + [len(panels)]
    for title, start, end in zip(rows, row_positions, row_positions[1:], strict=False):
        assert end - start > 1, f"row {title} has no panels"


def test_every_query_names_metrics_the_code_emits() -> None:
    emitted = emitted_metric_names()
    for title, target in _targets():
        expr = target["expr"]
        used = referenced_metrics(expr)
        if BUILTIN.match(expr):
            continue
        assert used, f"{title}: {expr} names no metric of ours or of our instrumentation"
        assert used <= emitted, f"{title}: no code emits {sorted(used - emitted)}"
        if "histogram_quantile" in expr:
            assert all(name.endswith("_bucket") for name in used) and "le" in expr, f"{title}: quantile of {expr}"


def test_the_key_metrics_of_each_stage_are_on_the_dashboard() -> None:
    shown = set().union(*(referenced_metrics(target["expr"]) for _, target in _targets()))
    for metric in (
        "ibstream_ib_connected",
        "ibstream_quotes_published_total",
        "ibstream_feed_staleness_seconds",
        "ibstream_signals_total",
        "ibstream_orchestration_runs_total",
        "ibstream_agent0_requests_total",
        "ibstream_risk_checks_total",
        "ibstream_risk_decisions_total",
        "ibstream_execution_orders_total",
        "ibstream_sink_consumer_lag",
        "ibstream_dlq_records_total",
        "ibstream_errors_total",
        "ibstream_api_requests_total",
        "http_server_duration_milliseconds_bucket",
        "ibstream_alerts_firing",
    ):
        assert metric in shown, f"{metric} is on no panel"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL only inside rules: each query becomes a recording rule; Grafana's $__rate_interval
    # is replaced by the interval it stands for.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": target["expr"].replace("$__rate_interval", "1m")}
        for index, (_, target) in enumerate(_targets())
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    require_tool(NO_PROMTOOL if PROMTOOL is None else None)
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_chart_ships_the_current_dashboard() -> None:
    copy = ROOT / "charts" / "ibstream" / "files" / "dashboards" / DASHBOARD.name
    assert copy.is_file() and copy.read_bytes() == DASHBOARD.read_bytes(), "run charts/sync"
