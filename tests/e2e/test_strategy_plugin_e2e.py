"""A user's strategy package trades on ibsim (real processes, ibsim at 300x): the package is pip-installed into a
directory on the deployables' PYTHONPATH and configured by IBSTREAM_STRATEGIES_FILE (switched off); the API lists it,
an admin enables it, its signals go through orchestration, approval, risk and execution, and an order of one of its
signals fills at ibsim. Before that, ``ibstream backtest`` runs the installed instance over recorded bars and writes
its report. ibstream's code does not name the package anywhere."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import PROJECT_ROOT, load_settings
from tests.e2e.test_api_e2e import ApproveUntilFilled, _wait
from tests.strategy_packages import pip_install
from tooling.demo import Demo, DemoConfig, get_json, post_json

# The package is backtested before the live part (about 10 s more than the live part alone).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STRATEGIES_FILE = """
[[instances]]
name = "rising-3"
strategy = "rising_closes"
enabled = false
params = { count = 3, stop_pct = 0.5 }
"""


def _csv_session(path: Path, bars: int = 600) -> tuple[str, str]:
    """A seeded random walk of 5-second bars as a CSV file (what ``ibstream backtest --source csv`` reads); the
    window it spans as --from and --to."""
    rng = random.Random(11)
    start = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
    lines = ["symbol,start,open,high,low,close,volume"]
    price = 100.0
    for i in range(bars):
        close = round(price * (1 + rng.gauss(0, 0.002)), 2)
        at = (start + timedelta(seconds=5 * i)).isoformat()
        lines.append(f"AAPL,{at},{price},{max(price, close) + 0.02},{min(price, close) - 0.02},{close},100")
        price = close
    path.write_text("\n".join(lines) + "\n")
    return start.isoformat(), (start + timedelta(seconds=5 * bars)).isoformat()


def _backtest(site: Path, strategies: Path, tmp_path: Path) -> dict[str, Any]:
    """``ibstream backtest`` of the installed strategy's instance, as a user runs it: its report's figures."""
    start, end = _csv_session(tmp_path / "bars.csv")
    env = {
        **os.environ,
        "PYTHONPATH": f"{PROJECT_ROOT}:{site}",
        "IBSTREAM_STRATEGIES_FILE": str(strategies),
        "IBSTREAM_STATE_DIR": str(tmp_path / "backtest-state"),
    }
    command = [sys.executable, "-m", "ibstream.cli", "backtest", "--strategies", "rising-3", "--from", start]
    command += ["--to", end, "--source", "csv", str(tmp_path / "bars.csv")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    [report] = (tmp_path / "backtest-state" / "backtests").iterdir()
    assert {path.name for path in report.iterdir()} == {"report.html", "equity.png", "figures.json"}
    assert "rising-3" in (report / "report.html").read_text()
    figures: dict[str, Any] = json.loads((report / "figures.json").read_text())
    return figures


def test_an_installed_strategy_enabled_via_the_api_trades_on_ibsim(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pip_install(tmp_path)
    strategies = tmp_path / "strategies.toml"
    strategies.write_text(STRATEGIES_FILE)
    # Backtested first, as the package's author would before trading it.
    figures = _backtest(site, strategies, tmp_path)
    assert figures["meta"]["instances"]["rising-3"]["strategy"] == "rising_closes"
    assert figures["meta"]["instances"]["rising-3"]["version"] == "1.2.0"
    assert figures["strategies"]["trades"]["rising-3"]["trades"] >= 1
    assert {signal["strategy"] for signal in figures["signals"]} == {"rising-3"}
    # Every deployable the demo starts inherits this environment.
    monkeypatch.setenv("PYTHONPATH", f"{PROJECT_ROOT}:{site}")
    monkeypatch.setenv("IBSTREAM_STRATEGIES_FILE", str(strategies))
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, state_dir=tmp_path)
    demo = Demo(
        DemoConfig(
            speed=300.0,
            session_minutes=150,
            fault_at=None,
            live_view=False,
            directory=tmp_path / "demo",
            signal_expiry_seconds=4 * 3600,
        ),
        settings,
    )
    try:
        demo.prepare()
        demo.start_processes()
        viewer, trader, admin = (demo._token(role) for role in ("viewer", "trader", "admin"))
        api = demo.api
        (listed,) = get_json(f"{api}/v1/strategies", viewer)["items"]
        assert (listed["name"], listed["strategy"], listed["version"], listed["enabled"]) == (
            "rising-3",
            "rising_closes",
            "1.2.0",
            False,
        )
        accepted = post_json(f"{api}/v1/strategies/rising-3/enable", {"reason": "e2e: trade it"}, admin)
        assert accepted["target"] == "strategy:rising-3"

        signals: list[dict[str, Any]] = _wait(
            lambda: get_json(f"{api}/v1/signals?strategy=rising-3&limit=5", viewer)["items"], 120, "its signal"
        )
        assert signals[0]["side"] == "BUY"
        order_id, order = _wait(ApproveUntilFilled(api, viewer, trader), 240, "an order of its signal filled")
        signal = get_json(f"{api}/v1/signals/{order['order']['signal_id']}", viewer)
        assert signal["strategy"] == "rising-3"
        assert next(o for o in demo.ibsim_orders() if o["order_ref"] == order_id)["filled"] > 0
        assert order["risk_decision"]["approved"] is True
        assert get_json(f"{api}/v1/strategies", viewer)["items"][0]["signals"]["total"] >= 1
        demo.stop_pipeline()
    finally:
        demo.group.stop_all()
