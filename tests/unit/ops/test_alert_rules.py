"""Alert rules: valid for promtool, each proven by promtool unit tests to fire on its condition and stay quiet
otherwise, each with a runbook, and each watching a metric the code really emits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.metric_names import emitted_metric_names, referenced_metrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "ops" / "alerts" / "ibstream.rules.yaml"
RULE_TESTS = ROOT / "ops" / "alerts" / "tests" / "ibstream.rules.test.yaml"
REQUIRED = {
    "IBStreamIBDisconnected",
    "IBStreamStaleFeed",
    "IBStreamUnrecoverableGap",
    "IBStreamConsumerLag",
    "IBStreamDLQGrowth",
    "IBStreamOrderRejectRate",
    "IBStreamReconciliationMismatch",
    "IBStreamKillSwitchEngaged",
    "IBStreamAgent0CircuitOpen",
    "IBStreamUnapprovedOrder",
}
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (ops/dev install adds Debian's prometheus package, which ships it)"


def _rules() -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_every_required_alert_exists_with_a_runbook() -> None:
    rules = _rules()
    assert set(rules) >= REQUIRED
    for name, rule in rules.items():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert (ROOT / annotations["runbook_url"]).is_file(), f"{name}: runbook missing"


def test_every_alert_watches_an_emitted_metric() -> None:
    emitted = emitted_metric_names()
    for name, rule in _rules().items():
        used = referenced_metrics(str(rule["expr"]))
        assert used, f"{name} watches no ibstream metric"
        assert used <= emitted, f"{name} watches metrics no code emits: {sorted(used - emitted)}"


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for name in _rules():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no test shows it firing"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no test shows it quiet"


def test_promtool_checks_and_unit_tests_pass() -> None:
    require_tool(NO_PROMTOOL if PROMTOOL is None else None)
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
