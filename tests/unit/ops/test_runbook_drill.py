"""The triage drill's plan (ops/runbooks/drill.yaml) against the runbooks, the alert rules and the code, without
running anything: each drilled runbook still names its alert, every metric and every log event the drill follows
(so an edit that drops a triage step fails here), and each of those is real — the alert exists and links the
runbook, the metrics are emitted, the log events are logged by the code. The drill itself, against a running
pipeline, is tests/e2e/test_triage_drill.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.e2e.drill_support import DRILL_PLAN, Drill, drill_plan
from tests.metric_names import PACKAGES, emitted_metric_names, referenced_metrics

ROOT = Path(__file__).resolve().parents[3]
RUNBOOKS = ROOT / "ops" / "runbooks"
RULES = ROOT / "ops" / "alerts" / "ibstream.rules.yaml"
#: The runbooks issue 26 asks the drill to cover (disconnect, stale data, order failures, DLQ, lag, reconciliation).
DRILLED = {
    "ib-disconnect.md",
    "stale-data.md",
    "order-failures.md",
    "dlq.md",
    "consumer-lag.md",
    "reconciliation-mismatch.md",
}
PLAN = drill_plan()


def _rules() -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _jq_filter(event: str) -> str:
    """How a runbook spells the log event in its jq filter: an exact event, or a prefix (ends with a space)."""
    return f'startswith("{event}")' if event.endswith(" ") else f'.event=="{event}"'


def _logged_events() -> list[str]:
    """Every message literal passed to a logger in the deployables and the core (``%s`` where a value goes)."""
    found: list[str] = []
    call = re.compile(r"log\.(?:debug|info|warning|error|exception|log)\(\s*(?:logging\.\w+[^,]*,\s*)?\"([^\"]+)\"")
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found.extend(call.findall(path.read_text()))
    return found


def _is_logged(event: str, literals: list[str]) -> bool:
    """Some logger call can emit ``event`` (a prefix when it ends with a space; ``%s`` stands for any value)."""
    if event.endswith(" "):
        return any(literal.startswith(event) for literal in literals)
    return any(re.fullmatch(re.escape(literal).replace("%s", ".+"), event) for literal in literals)


def test_the_drill_covers_the_runbooks_the_issue_names() -> None:
    assert set(PLAN) == DRILLED, DRILL_PLAN


@pytest.mark.parametrize("drill", PLAN.values(), ids=list(PLAN))
def test_each_drilled_runbook_names_its_alert_metrics_and_log_events(drill: Drill) -> None:
    text = (RUNBOOKS / drill.runbook).read_text()
    assert f"`{drill.alert}`" in text, f"{drill.runbook} does not name its alert {drill.alert}"
    missing_metrics = [metric for metric in drill.metrics if metric not in referenced_metrics(text)]
    assert not missing_metrics, f"{drill.runbook} no longer sends the operator to {missing_metrics}"
    missing_logs = [event for event in drill.logs if _jq_filter(event) not in text]
    assert not missing_logs, f"{drill.runbook} has no jq filter for {[_jq_filter(e) for e in missing_logs]}"
    assert "SELECT " not in text.split("## Fix")[0], f"{drill.runbook}: triage must not need SQL"


@pytest.mark.parametrize("drill", PLAN.values(), ids=list(PLAN))
def test_each_drill_step_is_real(drill: Drill) -> None:
    rules = _rules()
    assert drill.alert in rules, f"no alert rule {drill.alert}"
    annotations = rules[drill.alert]["annotations"]
    assert isinstance(annotations, dict) and annotations["runbook_url"] == f"ops/runbooks/{drill.runbook}"
    unknown = set(drill.metrics) - emitted_metric_names()
    assert not unknown, f"{drill.runbook}: no code emits {sorted(unknown)}"
    literals = _logged_events()
    unlogged = [event for event in drill.logs if not _is_logged(event, literals)]
    assert not unlogged, f"{drill.runbook}: no code logs {unlogged}"
