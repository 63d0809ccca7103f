"""Chaos campaigns as CI tests: the whole pipeline as processes on a private Kafka broker under a seeded fault
schedule, judged by the independent checker.

* a short campaign (a couple of wall minutes, a handful of faults) must end with zero violations;
* the same machinery with execution's test-only ``IBSTREAM_EXECUTION_TEST_NO_DEDUP`` hook (no orderRef lookup, no
  journaled ids) and a crash right after placing must be reported as a duplicate order — proof the checker can fail.

Each campaign runs in its own process (`ibstream chaos` / a small script): the checker opens the embedded chDB
warehouse, and chDB allows one data directory per process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import PROJECT_ROOT

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")
#: The CI campaign's faults: one of each family (process crash, broker crash, gateway restart with nextValidId
#: rollback, poison). kill_streams is left to the long run: a restarted streams worker rejoins at once (static
#: membership) but its start-up and table recovery take ~20 s on a loaded 2-core machine.
CI_FAULTS = ("kill_execution", "broker_restart", "ib_gateway_restart", "poison", "kill_producer")


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the campaign stop the broker and processes it started (they live in their own sessions).
        process.terminate()
        stdout, _ = process.communicate(timeout=60)
        pytest.fail(f"campaign exceeded {timeout:.0f}s:\n{stdout[-6000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, "")


def _report(path: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert path.exists(), f"no report written:\n{result.stdout[-6000:]}"
    report: dict[str, Any] = json.loads(path.read_text())
    return report


@pytest.mark.timeout(300)
def test_short_campaign_survives_every_fault_without_violation(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run(
        [
            sys.executable,
            "-m",
            "ibstream.cli",
            "chaos",
            "--minutes",
            "1.5",
            "--rate",
            "400",
            "--seed",
            "14",
            "--symbols",
            *SYMBOLS,
            "--faults",
            ",".join(CI_FAULTS),
            "--dir",
            str(tmp_path / "run"),
            "--json",
            str(out),
        ],
        timeout=280,
    )
    report = _report(out, result)
    assert report["error"] is None, result.stdout[-4000:]
    assert report["violations"] == [], result.stdout[-6000:]
    assert report["ok"] and result.returncode == 0
    # Every scheduled fault was injected and the pipeline recovered from each.
    assert len(report["faults"]) == len(CI_FAULTS)
    assert {fault["kind"] for fault in report["faults"]} == set(CI_FAULTS)
    assert all(fault["error"] is None and fault["recovery_seconds"] is not None for fault in report["faults"])
    # The invariants really looked at something: bars, orders, the warehouse, the poison.
    checked = {item["name"]: item["checked"] for item in report["invariants"]}
    assert checked["bars_in_kafka"] > 500 and checked["bars_in_warehouse"] == checked["bars_in_kafka"]
    assert checked["one_ib_order_per_routed_order"] > 0, "no order was routed: the campaign tested no order safety"
    assert checked["poison_in_dlq_only"] > 0
    assert checked["warehouse_equals_kafka"] > 10
    assert report["throughput"]["quotes_per_second_p50"] > 100
    # The report page: the timeline of faults, recoveries and throughput, and the text tables.
    page = Path(report["html"]).read_text()
    assert Path(report["html"]) == out.with_suffix(".html") and page.count("<svg") == 1
    assert all(f"#{fault['index']} {fault['kind']}: recovered" in page for fault in report["faults"])
    assert "invariants" in page and len(report["throughput_samples"]) > 10
    # Live progress on stderr (merged here): a line per fault and what the campaign waited for.
    assert all(f"fault #{fault['index']:02d} {fault['kind']} injected" in result.stdout for fault in report["faults"])
    assert "waiting for recovery" in result.stdout and "[chaos +" in result.stdout


@pytest.mark.timeout(240)
def test_checker_reports_the_duplicate_order_of_a_broken_executor(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from tooling.chaos.campaign import ChaosConfig, run_campaign
        run_campaign(ChaosConfig(
            # Half a minute: the crash comes with the first placement (2-3 s in) and 120 orders route in a minute.
            minutes=0.5, rate=400, seed=5, symbols={SYMBOLS!r}, kinds=["ib_reject_order"],
            directory=Path({str(tmp_path / "run")!r}), json_path=Path({str(out)!r}),
            # The deliberately injected bug, and a crash between placeOrder and the commit of its events (first
            # start only): the restarted executor meets the routed order again and, blind, places it again.
            execution_env={{"IBSTREAM_EXECUTION_TEST_NO_DEDUP": "1"}},
            execution_first_start_env={{"IBSTREAM_EXECUTION_CRASH_AT": "after_place"}},
        ))
    """)
    result = _run([sys.executable, "-c", script], timeout=230)
    report = _report(out, result)
    assert report["error"] is None, result.stdout[-4000:]
    checked = {item["name"]: item["checked"] for item in report["invariants"]}
    assert checked["one_ib_order_per_routed_order"] > 0, "no order was routed: the hook was never exercised"
    assert not report["ok"]
    duplicates = [
        v
        for v in report["violations"]
        if v["invariant"] == "one_ib_order_per_routed_order" and "duplicate order" in v["detail"]
    ]
    assert duplicates, report["violations"]
    # The crash itself is reported too (execution exited without being killed by the campaign).
    assert any(v["invariant"] == "deployables_stay_up" and v["id"] == "execution" for v in report["violations"])


#: The cluster campaign's fault: the node leading orders.routed.v1 (execution's one partition) SIGKILLed mid-run. Its
#: leadership is spread like every node's, so it also leads partitions of md.bars.5s.v1 (ingestion) and
#: orders.intents.v1 (risk): one kill takes a leader from all three stages, which is what CI can afford (a node's
#: restart under load costs most of a minute). The other leader kills and rolling restarts are for
#: `ibstream chaos --brokers 3`.
CLUSTER_FAULTS = ("leader_kill_execution",)
STAGE_TOPICS = ("md.bars.5s.v1", "orders.intents.v1", "orders.routed.v1")
#: The cluster's six ports: past the test broker's (+0, +1) and the cluster integration tests' (+10 … +15).
CLUSTER_CHAOS_PORT = int(os.environ.get("IBSTREAM_TEST_KAFKA_PORT", "29092")) + 20


@pytest.mark.timeout(480)
def test_a_cluster_campaign_loses_no_bar_decision_or_order_when_the_partition_leader_dies(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run(
        [
            sys.executable,
            "-m",
            "ibstream.cli",
            "chaos",
            "--brokers",
            "3",
            "--broker-port",
            str(CLUSTER_CHAOS_PORT),
            "--minutes",
            "1.5",
            "--rate",
            "300",
            "--seed",
            "14",
            "--symbols",
            *SYMBOLS,
            "--faults",
            ",".join(CLUSTER_FAULTS),
            "--max-faults",
            "1",
            "--dir",
            str(tmp_path / "run"),
            "--json",
            str(out),
        ],
        timeout=460,
    )
    report = _report(out, result)
    assert report["error"] is None, result.stdout[-4000:]
    assert report["brokers"] == 3 and "--brokers 3" in report["replay"] and "--max-faults 1" in report["replay"]
    assert report["violations"] == [], result.stdout[-6000:]
    assert report["ok"] and result.returncode == 0
    assert len(report["faults"]) == 1, "one leader kill: no more, no less"
    first = report["faults"][0]
    assert first["kind"] == "leader_kill_execution" and first["error"] is None and first["recovery_seconds"] is not None
    led, also_led, successor = first["notes"][:3]
    killed = int(led.split()[1])
    # Another node took the partition over while the killed one was down.
    assert int(successor.rsplit("node ", 1)[1]) != killed, first["notes"]
    # The killed node led a partition of each stage's topic: ingestion, risk and execution all lost a leader.
    for topic in STAGE_TOPICS:
        assert re.search(rf"{re.escape(topic)} \[\d", also_led), also_led
    checked = {item["name"]: item["checked"] for item in report["invariants"]}
    # Ingestion: no bar lost (every bar ibsim built is in Kafka and in the warehouse).
    assert checked["bars_in_kafka"] > 300 and checked["bars_in_warehouse"] == checked["bars_in_kafka"]
    # Risk: every intent has exactly one decision. Execution: one ibsim order per routed order, none lost.
    assert checked["one_risk_decision_per_intent"] > 0
    assert checked["one_ib_order_per_routed_order"] > 0, "no order was routed: the campaign tested no order safety"
