"""`ibstream uat` end to end: the scenario catalogue against ibsim, every deployable as a real process.

The first test is the CI UAT run: three sessions (manual flow with IB faults at 600x, policy flow on delayed data
across the close at 600x, the desk session with tight risk limits and a Kafka broker restart at 30x); it checks
each scenario's verdict and the evidence behind it, the report files (with a plot of each session's day) and the
session recorded as a rehearsal: reported by the verdict, never counted.
The second breaks one risk limit on purpose (a daily loss limit so large it never fires) and checks that exactly
the matching scenario fails and the verdict says no-go and shows the failing rehearsal.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from ibstream.config import load_settings
from tooling.progress import Progress, use
from tooling.uat import UatOptions, load_verdict, run_uat
from tooling.uat.catalogue import RISK_CHECKS, SCENARIOS

# A campaign runs three sessions of real processes; the default 300 s per test is too tight on a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_uat_campaign_on_ibsim_passes_with_evidence(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, state_dir=tmp_path / "state")
    started = time.monotonic()
    progress = io.StringIO()
    with use(Progress("uat", progress, interactive=False)):
        run = run_uat(settings, UatOptions(reports_dir=tmp_path / "reports"))
    seconds = time.monotonic() - started
    results = {r.id: r for r in run.results}
    assert set(results) == {s.id for s in SCENARIOS}
    failed = {r.id: r.failures for r in run.results if r.status != "pass"}
    assert failed == {}, run.markdown.read_text()[:4000]
    assert seconds < 240, f"the UAT run took {seconds:.0f}s"

    # The evidence behind the verdicts, figure by figure.
    manual = results["flow.manual"].figures
    assert manual["manual_runs_approved"] > 0 and manual["filled_orders"] > 0 and manual["closed_trades_reviewed"] > 0
    assert manual["actors"] == ["demo-trader"]
    review = results["review.post_trade"]
    assert review.figures["reviewed_trades"] > 0 and review.figures["api_signal_with_review"]
    api_review = next(e for e in review.evidence if e.name == "api_review")
    assert {"entry_slippage", "r_multiple", "holding_seconds", "exit_reason"} <= set(api_review.columns)
    assert results["market.open"].figures["signals_before_open"] == 0
    assert results["market.open"].figures["signals_after_open"] > 0
    for fault in ("ib.disconnect", "gateway.restart"):
        assert results[fault].figures["gaps"] >= 4 and results[fault].figures["gap_states"] == {
            "backfilled": results[fault].figures["gaps"]
        }
    assert results["gateway.restart"].figures["duplicate_ib_ids"] == []
    assert results["flow.policy"].figures["policy_orders_filled"] > 0
    assert set(results["data.delayed"].figures["quotes_by_source"]) == {"delayed"}
    assert results["market.close"].figures["signals_after_close"] == 0
    for check in RISK_CHECKS:
        figures = results[f"risk.{check}"].figures
        assert check in figures["failed_checks"] and figures["rejections_by_check"] >= 1, (check, figures)
    assert results["order.partial_fill"].figures["executions"] >= 3
    assert results["order.broker_reject"].figures["broker_code"] == 201
    assert results["control.kill_switch"].figures["resting_order_at_ibsim"] == "Cancelled"
    assert results["control.flatten"].figures["ibsim_after"] == {"position": 0.0, "working_orders": 0}
    assert results["kafka.broker_restart"].figures["dead_letters"] == 0
    assert all(e.query for r in run.results for e in r.evidence)

    # Reports in both formats, and the session recorded for the verdict.
    markdown, page = run.markdown.read_text(), run.html.read_text()
    for scenario in SCENARIOS:
        assert scenario.id in markdown and scenario.id in page
    assert json.loads(run.json.read_text())["meta"]["session_id"] == run.session_id
    # A run on ibsim is a rehearsal: recorded and reported, never counted towards go (that needs gateway days).
    decision = load_verdict(settings, required=1)
    assert not decision.go and decision.consecutive_days == 0 and decision.gateway_sessions == 0
    assert decision.rehearsals.total == 1 and decision.rehearsals.passed == 1
    assert decision.rehearsals.latest is not None and decision.rehearsals.latest.session_id == run.session_id
    assert "rehearsals on ibsim (never counted): 1 of 1 passed" in decision.render()
    assert "needs 5 more" in load_verdict(settings).render()
    # The HTML report plots each session's day: prices, signals, fills and P&L as inline SVG.
    assert page.count("<svg") == 3 and f"{run.session_id} main:" in page, page.count("nothing to plot")
    assert "<polygon" in page and "<circle" in page

    # Live progress while it ran: each session's start, what it waited for, its end; plain lines (no terminal).
    lines = progress.getvalue().splitlines()
    for name in ("main", "close", "desk"):
        assert any(f"session {name} started" in line for line in lines), lines[:40]
        assert any(f"session {name} done: " in line for line in lines), lines[-40:]
    assert any("waiting for market time" in line for line in lines)
    assert any("session desk — waiting for quotes for every symbol" in line for line in lines)
    assert any("writing the report" in line for line in lines) and "\r" not in progress.getvalue()
    assert len(lines) < 400, "progress must not be noisy"


def test_a_risk_limit_that_never_fires_fails_its_scenario_and_the_verdict(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, state_dir=tmp_path / "state")
    options = UatOptions(
        reports_dir=tmp_path / "reports",
        sessions=("desk",),
        # Broken on purpose: a daily loss limit no session can reach.
        env_overrides={"desk": {"IBSTREAM_RISK_DAILY_LOSS_LIMIT": "1000000000"}},
    )
    run = run_uat(settings, options)
    desk = [r for r in run.results if r.session == "desk"]
    failing = {r.id for r in desk if r.status == "fail"}
    assert failing == {"risk.daily_loss"}, {r.id: r.failures for r in desk if r.status == "fail"}
    broken = next(r for r in desk if r.id == "risk.daily_loss")
    assert any("`daily_loss` did not fail" in failure for failure in broken.failures)
    assert "risk.daily_loss" in run.markdown.read_text() and "FAIL" in run.html.read_text()
    decision = load_verdict(settings, required=1)
    assert not decision.go
    assert "risk.daily_loss" in decision.render()
