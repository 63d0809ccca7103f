"""The API in the whole pipeline (real processes, ibsim at 600x): a signal from ibsim data is visible via the API,
approved via the API, its order reaches ibsim and fills; the order's trail via the API matches the warehouse audit
row for row; the kill switch via the API stops new orders (the risk gate rejects with `kill_switch`)."""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from ibstream.config import load_settings
from tooling.demo import Demo, DemoConfig, get_json, post_json

pytestmark = pytest.mark.integration


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


class ApproveUntilFilled:
    """Approves runs awaiting approval through the API as a trader, one at a time (another every 15 s, at most 8),
    until one's order has filled; returns that order. A plan's limit entry may never fill: at 300x the market moves
    minutes in each wall second, and ibsim's path changes with the session date, so the first run cannot be counted
    on to fill."""

    def __init__(self, api: str, viewer: str, trader: str) -> None:
        self.api, self.viewer, self.trader = api, viewer, trader
        self.approved: list[str] = []
        self.last_approval = time.monotonic()

    def _approve_next(self) -> None:
        waiting = get_json(f"{self.api}/v1/runs?state=awaiting_approval&limit=1", self.viewer)["items"]
        for run in waiting:
            accepted = post_json(f"{self.api}/v1/runs/{run['run_id']}/approve", {"reason": "e2e approves"}, self.trader)
            assert accepted["actor"] == "demo-trader"
            self.approved.append(run["run_id"])
            self.last_approval = time.monotonic()

    def __call__(self) -> tuple[str, dict[str, Any]] | None:
        if not self.approved or (len(self.approved) < 8 and time.monotonic() - self.last_approval > 15):
            self._approve_next()
        for run_id in self.approved:
            for order_id in get_json(f"{self.api}/v1/runs/{run_id}", self.viewer).get("order_ids") or []:
                order = get_json(f"{self.api}/v1/orders/{order_id}", self.viewer)
                if order["fills"] and order["order"]["status"] == "filled":
                    return order_id, order
        return None


def test_signal_approved_via_api_reaches_ibsim_and_kill_switch_stops_orders(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap, state_dir=tmp_path)
    # Signals stay actionable for 4 market hours (48 wall seconds at 300x): a loaded CI machine must not let the
    # run expire between "awaiting approval" and the approval this test sends.
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
    viewer = trader = admin = ""
    try:
        demo.prepare()
        demo.start_processes()
        viewer, trader, admin = (demo._token(role) for role in ("viewer", "trader", "admin"))
        api = demo.api

        # 1. Signals from ibsim's market show up through the API.
        signals = _wait(lambda: get_json(f"{api}/v1/signals?limit=5", viewer)["items"], 60, "a signal via the API")
        assert signals[0]["symbol"] in demo.config.symbols

        # 2. Runs await approval; approve them through the API as a trader, one at a time, until one's order fills.
        # 3. That order reached ibsim (orderRef = our order id) and filled; the API's trail matches the audit.
        order_id, order = _wait(ApproveUntilFilled(api, viewer, trader), 180, "an approved order filled via the API")
        at_ibsim = [o for o in demo.ibsim_orders() if o["order_ref"] == order_id]
        assert at_ibsim and at_ibsim[0]["filled"] > 0
        assert order["risk_decision"]["approved"] is True
        assert [step for step in order["trail"] if step] == order["trail"]

        # 3b. Execution's account.v1 reaches the warehouse: after the fill (and its commission) the account via the API
        # has P&L for the day; the position via the API carries IB's quantity (ibsim's book) and its protective legs.
        # (At 300x the bracket may close the position within seconds, so the account's position value is not waited
        # for.)
        symbol = order["order"]["symbol"]

        def account_after_the_fill() -> dict[str, Any] | None:
            try:
                view = get_json(f"{api}/v1/account", viewer)
            except urllib.error.HTTPError as error:
                assert error.code == 404  # nothing recorded yet
                return None
            return view if view["state"]["daily_pnl"] not in (None, 0.0) else None

        account = _wait(account_after_the_fill, 60, "the account's P&L after the fill via the API")
        assert account["state"]["account"] == get_json(f"{demo.control}/state")["account"]
        assert account["state"]["net_liquidation"] > 0 and account["age_seconds"] >= 0

        def position() -> dict[str, Any] | None:
            # Equal to ibsim's book once execution's positions.v1 record is in the warehouse (a leg may fill later).
            at_ibsim = {p["symbol"]: p["quantity"] for p in get_json(f"{demo.control}/positions")}
            items = get_json(f"{api}/v1/positions?include_flat=true", viewer)["items"]
            return next((p for p in items if p["symbol"] == symbol and p["quantity"] == at_ibsim[symbol]), None)

        held = _wait(position, 60, "the position via the API as ibsim holds it")
        legs = {o["order_id"] for o in held["protective_orders"]}
        assert legs <= {order_id} and all(o["status"] != "filled" for o in held["protective_orders"])

        # 4. Kill switch via the API: the next intents are rejected by the risk gate with reason kill_switch.
        post_json(f"{api}/v1/control/kill-switch", {"state": "on", "reason": "e2e drill"}, admin)
        engaged_at = dt.datetime.now(dt.UTC)

        def rejected_by_kill_switch() -> bool:
            demo.approve_waiting_runs()
            page = get_json(f"{api}/v1/orders?limit=50", viewer)["items"]
            for item in page:
                detail = get_json(f"{api}/v1/orders/{item['order_id']}", viewer)
                decision = detail.get("risk_decision") or {}
                decided = decision.get("decided_time")
                if decided and dt.datetime.fromisoformat(decided) > engaged_at:
                    checks = {c["name"]: c["passed"] for c in decision["checks"]}
                    assert decision["approved"] is False and checks["kill_switch"] is False
                    return True
            return False

        _wait(rejected_by_kill_switch, 90, "an intent decided after the kill switch")
        orders_before = len(demo.ibsim_orders())
        time.sleep(3)
        assert len(demo.ibsim_orders()) == orders_before, "an order reached ibsim after the kill switch"
        trail_via_api = get_json(f"{api}/v1/orders/{order_id}", viewer)["trail"]
        demo.stop_pipeline()
    finally:
        demo.group.stop_all()

    from ibstream.warehouse import Warehouse
    from ibstream.warehouse.audits import run_audit

    warehouse = Warehouse.open(load_settings(state_dir=demo.directory, warehouse_dir=demo.directory / "warehouse"))
    try:
        audit = run_audit(warehouse, "order-trail", order_id=order_id)
    finally:
        warehouse.close()
    assert len(audit.rows) == len(trail_via_api) > 0
