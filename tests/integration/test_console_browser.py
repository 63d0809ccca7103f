"""The operator console in real headless Chromium (Debian's ``chromium``, driven by Playwright's Python client)
against the real API served by uvicorn on a free port, with the real broker and the embedded warehouse sink.

Data: the scripted warehouse scenario (``console_support``). Orchestration, risk, execution and ibsim do not
run here, so after the trader approves, the test publishes to Kafka what they would have (run approved and
submitted, intent, risk decision, routed order, broker events, a fill); the sink stores it and the console, which
only polls the API, must show it without a reload. Commands the console sends (approve, kill switch) go through
the API to the real ``control.v1``; the kill switch state the admin sees comes back from the warehouse.

Screenshots of every page at laptop (1366) and phone (390) widths go to ``artifacts/console/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from api.app import create_app
from api.auth import Role
from api.commands import KafkaCommandSink
from api.embedded import SinkHandle, start_sink
from ibstream.config import PROJECT_ROOT, Settings, load_settings
from ibstream.contracts import (
    ControlCommand,
    OrderEvent,
    OrderIntent,
    Position,
    control,
    order_events,
    order_intents,
    positions,
)
from ibstream.contracts.enums import (
    ControlCommandKind,
    ExecutionSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    Side,
    TradingState,
)
from ibstream.kafka.clients import create_admin, create_producer
from ibstream.kafka.records import RecordProducer, codec_from_settings
from ibstream.kafka.topics import catalogue, delete_topics, ensure_topics
from ibstream.warehouse import Warehouse
from tests.integration.api_support import SECRET, token
from tests.integration.console_support import ConsoleScenario, load_console_scenario, pipeline_after_approval
from tests.tools import require_tool

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("IBSTREAM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "artifacts" / "console"
VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
# Flags for this machine's closed network (no background requests) and running as root in CI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python playwright package is not installed (ops/dev install adds it)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (ops/dev install adds Debian's chromium package)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_tool(_browser_missing())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a new, empty profile directory (--user-data-dir) and removes it afterwards.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Console:
    url: str
    settings: Settings
    warehouse: Warehouse
    scenario: ConsoleScenario
    producer: RecordProducer
    tokens: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def console(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    import uvicorn

    prefix = f"c{uuid.uuid4().hex[:10]}."
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=prefix,
        state_dir=tmp_path_factory.mktemp("state"),
        warehouse_dir=tmp_path_factory.mktemp("console") / "wh",
        api_jwt_secret=SecretStr(SECRET),
        api_rate_limit_per_minute=1_000_000,
        api_rate_limit_burst=1_000_000,
        warehouse_batch_rows=100,
        warehouse_batch_seconds=0.2,
        symbols=["AAPL", "MSFT", "SPY", "QQQ"],
    )
    admin = create_admin(settings)
    layouts = catalogue(prefix)
    ensure_topics(admin, layouts)
    producer = RecordProducer(create_producer(settings), codec_from_settings(settings), prefix)
    sink: SinkHandle | None = None
    commands = KafkaCommandSink(settings)
    try:
        with Warehouse.open(settings) as warehouse:
            scenario = load_console_scenario(warehouse)
            sink = start_sink(settings, warehouse)
            app = create_app(settings, warehouse, commands, sink=sink)
            port = _free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
            thread = threading.Thread(target=server.run, name="console-api", daemon=True)
            thread.start()
            deadline = time.monotonic() + 20
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.started, "uvicorn did not start within 20 s"
            tokens = {
                "viewer": token(settings, Role.VIEWER, "vera"),
                "trader": token(settings, Role.TRADER, "tom"),
                "admin": token(settings, Role.ADMIN, "alice"),
            }
            try:
                yield Console(f"http://127.0.0.1:{port}", settings, warehouse, scenario, producer, tokens)
            finally:
                server.should_exit = True
                thread.join(10)
                sink.stop()
    finally:
        commands.close()
        producer.flush(5)
        delete_topics(admin, [layout.name for layout in layouts])


class Page:
    """One browser context (fresh sessionStorage) at one viewport, recording console errors."""

    def __init__(self, browser: Any, console: Console, viewport: str = "laptop") -> None:
        self.context = browser.new_context(viewport=VIEWPORTS[viewport])
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.console = console

    def login(self, role: str) -> None:
        self.page.goto(f"{self.console.url}/console/")
        self.page.wait_for_selector("#login-form")
        self.page.fill("#token", self.console.tokens[role])
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#nav:not([hidden])")
        assert self.page.inner_text("#who-role") == role

    def go(self, hash_route: str, ready: str) -> None:
        self.page.goto(f"{self.console.url}/console/#{hash_route}")
        self.page.wait_for_selector(ready)

    def viewport(self, name: str) -> None:
        self.page.set_viewport_size(VIEWPORTS[name])

    def shoot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for size in VIEWPORTS:
            self.viewport(size)
            self.page.wait_for_timeout(150)  # charts re-layout on resize
            self.page.screenshot(path=str(ARTIFACTS / f"{name}-{size}.png"), full_page=True)
        self.viewport("laptop")

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"browser console errors: {self.errors}"


def _control_commands(console: Console) -> list[ControlCommand]:
    table = console.warehouse.schema.for_topic(control.TOPIC)
    rows = console.warehouse.query(
        f"SELECT * EXCEPT (_topic, _partition, _offset, _kafka_ts, _inserted_at) FROM "
        f"{console.warehouse.table(table.name)} FINAL ORDER BY issued_time"
    ).rows
    return [ControlCommand.model_validate(table.from_row(row).model_dump()) for row in rows]


def test_login_form_refuses_a_bad_token_and_pages_need_one(browser: Any, console: Console) -> None:
    page = Page(browser, console)
    page.page.goto(f"{console.url}/console/#/orders")
    page.page.wait_for_selector("#login:not([hidden])")
    assert page.page.is_hidden("#nav")
    page.shoot("login")
    forged = console.tokens["admin"][:-4] + ("AAAA" if not console.tokens["admin"].endswith("AAAA") else "BBBB")
    page.page.fill("#token", forged)
    page.page.click("#login-form button[type=submit]")
    page.page.wait_for_selector("#login-error:not([hidden])")
    assert "refused" in page.page.inner_text("#login-error")
    page.errors = [e for e in page.errors if "401" not in e]  # the refused verification call itself
    page.close()


def test_trader_approves_a_run_and_sees_its_order_fill(browser: Any, console: Console) -> None:
    scenario = console.scenario
    run_id = scenario.awaiting_run
    page = Page(browser, console)
    page.login("trader")
    card = f'article.run[data-run-id="{run_id}"]'
    page.go("/approvals", card)
    text = page.page.inner_text(card)
    plan = scenario.plan
    assert "range breakout" in text and "breakout" in text and "40" in text
    assert f"{plan.stop_loss:g}" in text and f"{plan.take_profit:g}" in text
    # The pre-check ran the risk limits: a fresh quote, a notional within the limit, the kill switch off (every gate
    # check but the five it defers to the moment the order exists).
    assert page.page.locator(f"{card} .precheck tbody tr").count() == 9
    for name in ("kill_switch", "stale_quote", "max_order_notional", "stop_distance", "risk_per_trade"):
        row = page.page.locator(f"{card} .precheck tbody tr", has_text=name)
        assert "pass" in row.inner_text(), (name, row.inner_text())
    page.shoot("approvals")

    page.page.click(f"{card} button.approve")
    page.page.fill("#confirm-reason", "fits the plan")
    page.page.click("#confirm-ok")
    page.page.wait_for_selector(f"{card} .notice")
    assert page.page.locator(f"{card} button.approve").count() == 0

    # The command is on control.v1 (read back through the sink): approve_run, the run, the trader, the reason.
    deadline = time.monotonic() + 30
    approvals: list[ControlCommand] = []
    while time.monotonic() < deadline and not approvals:
        approvals = [c for c in _control_commands(console) if c.command == ControlCommandKind.APPROVE_RUN]
        time.sleep(0.2)
    assert [(c.target, c.actor, c.reason) for c in approvals] == [(run_id, "tom", "fits the plan")]

    # What the pipeline would do next, through Kafka and the sink; the open page must drop the run by itself.
    started = time.monotonic()
    for spec, record in pipeline_after_approval(scenario, "tom", "fits the plan", datetime.now(UTC)):
        console.producer.send(spec, record)
    assert console.producer.flush(10) == 0
    page.page.wait_for_selector(card, state="detached")
    live_seconds = time.monotonic() - started
    assert page.page.locator("#recent-runs tr", has_text="submitted").count() >= 1
    assert live_seconds < 15, live_seconds

    from ibstream import ids

    order_id = ids.order_id(run_id)
    row = f'tr[data-order-id="{order_id}"]'
    page.go("/orders", row)
    page.page.wait_for_selector(f'{row}[data-status="filled"]')
    assert "approved" in page.page.inner_text(row)
    page.shoot("orders")
    page.page.click(f"{row} a.order-link")
    page.page.wait_for_selector("#fills tbody tr")
    assert page.page.inner_text("#order-status") == "filled"
    assert page.page.inner_text("#order-recon") == "matched"
    fills = page.page.inner_text("#fills")
    assert "console-exec-approved" in fills and "40" in fills
    page.shoot("order")
    page.close()


def test_viewer_sees_everything_and_can_change_nothing(browser: Any, console: Console) -> None:
    page = Page(browser, console)
    page.login("viewer")
    # A run for the viewer to look at (the trader's was decided in the previous test, if it ran first).
    page.go("/approvals", "#recent-runs table, #recent-runs .empty")
    assert page.page.locator("button.approve").count() == 0
    assert page.page.locator("button.reject").count() == 0
    # The API refuses anyway: the same call the button would make, with the viewer's token, from the page.
    status = page.page.evaluate(
        """async (run) => (await fetch(`/v1/runs/${run}/approve`, {method: "POST", headers: {
            Authorization: `Bearer ${sessionStorage.getItem("ibstream.token")}`, "Content-Type": "application/json"},
            body: JSON.stringify({reason: "viewer try"})})).status""",
        console.scenario.base.ids["awaiting_run"],
    )
    assert status == 403
    page.errors = [e for e in page.errors if "403" not in e]

    page.go("/health", "#tile-ib")
    assert page.page.inner_text("#tile-ib .tile-value") == "connected"
    stale = page.page.locator("tr.stale")
    assert [stale.nth(i).get_attribute("data-symbol") for i in range(stale.count())] == ["SPY", "QQQ"]
    assert page.page.locator('tr[data-symbol="AAPL"]').get_attribute("class") == ""
    assert page.page.inner_text("#tile-gaps .tile-value") == "1"
    assert page.page.inner_text("#tile-dlq .tile-value") == "1"
    # The scenario's "agent0 circuit open" failure is older than the awaiting run's plan: closed again.
    assert page.page.inner_text("#tile-circuit .tile-value") == "closed"
    page.shoot("health")

    page.go("/signals", "#signals table")
    page.page.fill('#signal-filters input[name="symbol"]', "msft")
    page.page.click("#signal-filters button")
    page.page.wait_for_function("() => [...document.querySelectorAll('#signals tbody tr')].length === 1")
    page.page.fill('#signal-filters input[name="symbol"]', "")
    page.page.click("#signal-filters button")
    page.page.wait_for_function("() => document.querySelectorAll('#signals tbody tr').length > 3")
    page.shoot("signals")

    page.go("/performance?strategy=breakout", '#performance-overall[data-scored="4"]')
    # breakout scored +2, -1, -1, +2 (console_support.SCORED_R): half of them won, 0.5 R a signal
    overall = page.page.inner_text("#performance-overall")
    assert "hit rate\n50.0 %" in overall and "expectancy (R)\n0.5\n" in overall
    assert page.page.locator("#performance-symbols tbody tr").count() == 3  # AAPL, MSFT, QQQ
    page.page.select_option('#performance-filters select[name="period"]', "month")
    page.page.click("#performance-filters button")
    page.page.wait_for_function("() => document.querySelectorAll('#performance-periods tbody tr').length === 1")
    page.shoot("performance")

    page.go("/charts?symbol=AAPL", '#chart[data-bars="240"]')
    markers = int(page.page.get_attribute("#chart", "data-markers") or "0")
    assert markers >= 6  # the traded signal, its entry, stop and target, two fills (+ the awaiting signal)
    assert page.page.locator("#chart canvas").count() > 0
    assert "session P&L" in page.page.inner_text("#chart-summary")
    page.shoot("charts")

    page.go("/kill-switch", "#kill-status")
    assert page.page.locator("#kill-on").count() == 0 and page.page.is_visible("#kill-readonly")
    page.close()


def test_admin_engages_the_kill_switch_and_sees_the_state_change(browser: Any, console: Console) -> None:
    page = Page(browser, console)
    page.login("admin")
    page.go("/kill-switch", "#kill-status")
    assert page.page.inner_text("#kill-status") == "OFF"
    page.page.click("#kill-on")
    page.page.wait_for_selector("#confirm[open]")
    page.page.click("#confirm-ok")  # no reason: the dialog stays open (the reason field is required)
    page.page.wait_for_timeout(300)
    assert page.page.is_visible("#confirm[open]")
    assert not [c for c in _control_commands(console) if c.command == ControlCommandKind.KILL_SWITCH_ON]
    page.page.fill("#confirm-reason", "broker incident drill")
    page.page.click("#confirm-ok")
    # control.v1 → sink → warehouse → /v1/health/pipeline → the page's next poll.
    page.page.wait_for_function("() => document.querySelector('#kill-status')?.textContent === 'ENGAGED'")
    assert "broker incident drill" in page.page.inner_text("#kill-targets")
    assert "alice" in page.page.inner_text("#kill-targets")
    page.shoot("kill-switch")
    page.go("/health", "#tile-kill")
    page.page.wait_for_function("() => document.querySelector('#tile-kill .tile-value').textContent === 'ENGAGED'")
    page.close()


def test_admin_sets_a_trading_state_and_sees_it_with_who_and_why(browser: Any, console: Console) -> None:
    page = Page(browser, console)
    page.login("admin")
    page.go("/kill-switch", "#trading-set")
    page.page.fill("#trading-scope", "MSFT")
    page.page.select_option("#trading-state", "reducing")
    page.page.click("#trading-set")
    page.page.wait_for_selector("#confirm[open]")
    page.page.fill("#confirm-reason", "earnings wind-down")
    page.page.click("#confirm-ok")
    # control.v1 → sink → warehouse → /v1/health/pipeline → the page's next poll.
    page.page.wait_for_function(
        "() => (document.querySelector('#trading-states')?.textContent || '').includes('earnings wind-down')"
    )
    text = page.page.inner_text("#trading-states")
    assert "MSFT" in text and "reducing" in text and "alice" in text
    (sent,) = [c for c in _control_commands(console) if c.command == ControlCommandKind.TRADING_STATE]
    assert (sent.target, sent.state, sent.actor) == ("MSFT", TradingState.REDUCING, "alice")
    page.go("/health", "#tile-trading")
    page.page.wait_for_function(
        "() => document.querySelector('#tile-trading .tile-value').textContent.includes('reducing')"
    )
    page.close()


def _working_order_and_position(console: Console) -> str:
    """A working MSFT limit order (intent + acknowledged event) and an MSFT position, as execution would record."""
    now = datetime.now(UTC)
    order_id = str(uuid.uuid4())
    intent = OrderIntent(
        order_id=order_id,
        symbol="MSFT",
        side=Side.BUY,
        quantity=7,
        order_type=OrderType.LMT,
        limit_price=300.0,
        requested_by="orchestration",
        created_time=now,
    )
    event = OrderEvent(
        event_id=str(uuid.uuid4()),
        order_id=order_id,
        leg=OrderLeg.PARENT,
        symbol="MSFT",
        ib_order_id=901,
        status=OrderStatus.ACKNOWLEDGED,
        filled_quantity=0,
        remaining_quantity=7,
        broker_status="Submitted",
        source=ExecutionSource.LIVE,
        event_time=now,
    )
    position = Position(
        account="DU1", symbol="MSFT", con_id=272093, quantity=5, avg_cost=310.0, source=ExecutionSource.LIVE, time=now
    )
    console.producer.send(order_intents.TOPIC, intent)
    console.producer.send(order_events.TOPIC, event)
    console.producer.send(positions.TOPIC, position)
    assert console.producer.flush(10) == 0
    return order_id


def _wait_for_command(console: Console, kind: ControlCommandKind) -> list[ControlCommand]:
    deadline = time.monotonic() + 30
    found: list[ControlCommand] = []
    while time.monotonic() < deadline and not found:
        found = [c for c in _control_commands(console) if c.command == kind]
        time.sleep(0.2)
    return found


def test_trader_cancels_an_order_and_all_orders_of_a_symbol_after_confirming(browser: Any, console: Console) -> None:
    order_id = _working_order_and_position(console)
    viewer = Page(browser, console)
    viewer.login("viewer")
    viewer.go(f"/orders/{order_id}", "#order-status")
    viewer.page.wait_for_function("() => document.querySelector('#order-status').textContent === 'acknowledged'")
    assert viewer.page.locator("#order-cancel").count() == 0
    viewer.go("/positions", 'tr[data-symbol="MSFT"]')
    assert viewer.page.locator("button.cancel-all").count() == 0 and viewer.page.is_visible("#positions-readonly")
    viewer.close()

    page = Page(browser, console)
    page.login("trader")
    page.go(f"/orders/{order_id}", "#order-cancel")
    # Modify: the fields a limit order has (no stop price, no bracket), a new limit, confirmed with a reason.
    assert page.page.locator("#order-modify input").evaluate_all("els => els.map(e => e.name)") == [
        "quantity",
        "limit_price",
    ]
    page.page.fill("#modify-limit_price", "299.5")
    page.page.click("#order-modify-send")
    page.page.fill("#confirm-reason", "closer to support")
    page.page.click("#confirm-ok")
    (modified,) = _wait_for_command(console, ControlCommandKind.MODIFY_ORDER)
    assert (modified.target, modified.actor, modified.reason) == (order_id, "tom", "closer to support")
    assert (modified.parameters["limit_price"], modified.parameters["quantity"]) == ("299.5", "7.0")
    assert modified.parameters["changes"] == "limit_price"
    page.page.click("#order-cancel")
    page.page.wait_for_selector("#confirm[open]")
    page.page.click("#confirm-cancel")  # changed my mind: nothing is sent
    page.page.click("#order-cancel")
    page.page.fill("#confirm-reason", "price moved away")
    page.page.click("#confirm-ok")
    page.page.wait_for_selector("#banner.info")
    assert "accepted" in page.page.inner_text("#banner")
    (sent,) = _wait_for_command(console, ControlCommandKind.CANCEL_ORDER)
    assert (sent.target, sent.actor, sent.reason) == (order_id, "tom", "price moved away")
    # The command shows in the order's audit trail once the sink has recorded it.
    page.page.wait_for_function("() => (document.querySelector('#order')?.textContent || '').includes('cancel_order')")
    page.shoot("order-cancel")

    page.go("/positions", 'button.cancel-all[data-symbol="MSFT"]')
    page.shoot("positions")
    page.page.click('button.cancel-all[data-symbol="MSFT"]')
    page.page.wait_for_selector("#confirm[open]")
    page.page.fill("#confirm-reason", "earnings in an hour")
    page.page.click("#confirm-ok")
    (scoped,) = _wait_for_command(console, ControlCommandKind.CANCEL_ALL)
    assert (scoped.target, scoped.actor, scoped.reason) == ("MSFT", "tom", "earnings in an hour")
    page.close()


def test_admin_lists_strategies_and_disables_one_with_a_reason(browser: Any, console: Console) -> None:
    page = Page(browser, console)
    page.login("admin")
    # Without a strategies file: the three built-ins, each on every symbol.
    page.go("/strategies", 'tr[data-instance="donchian_breakout"]')
    text = page.page.inner_text("#strategies")
    for name in ("ma_crossover 1.0.0", "donchian_breakout 1.0.0", "zscore_reversion 1.0.0", "period=20"):
        assert name in text, text
    row = 'tr[data-instance="donchian_breakout"]'
    assert "enabled" in page.page.inner_text(row)
    page.page.click(f'{row} button[data-instance="donchian_breakout"]')
    page.page.wait_for_selector("#confirm[open]")
    page.page.fill("#confirm-reason", "too many false breakouts")
    page.page.click("#confirm-ok")
    # control.v1 → sink → warehouse → /v1/strategies → the page's next poll.
    page.page.wait_for_function(
        "() => (document.querySelector('tr[data-instance=\"donchian_breakout\"]')?.textContent || '')"
        ".includes('too many false breakouts')"
    )
    assert "disabled" in page.page.inner_text(row) and "enabled" in page.page.inner_text(
        'tr[data-instance="ma_crossover"]'
    )
    (sent,) = [c for c in _control_commands(console) if c.target == "strategy:donchian_breakout"]
    assert (sent.command, sent.state, sent.actor) == (ControlCommandKind.TRADING_STATE, TradingState.HALTED, "alice")
    page.shoot("strategies")
    page.close()
