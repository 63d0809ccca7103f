# ruff: noqa: F811  (the run_executor fixture imported from test_execution is redefined as an argument)
"""Kill switch and flatten through the API, every part real: the API (uvicorn, Kafka command sink), a streams worker
(orchestration and risk) in its own process, the executor, ibsim over its TWS socket, the broker.

A filled MSFT bracket (stop and target working) and a resting AAPL entry are at ibsim. The kill switch through the API
cancels the entry and keeps the MSFT bracket's legs; the time from the API call to the entry cancelled at ibsim is
measured and printed (issue #20: ≤ 1 s). Then ``POST /v1/control/flatten`` for the account, with the kill switch still
on: orchestration emits one market intent for MSFT, risk approves it (a flatten that closes the position), execution
places it through the halt and, once filled, cancels the bracket's stop and target: ibsim's position is 0 and no
order of ours is working.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from api.auth import Role
from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import RiskDecision, order_events, order_intents, risk_decisions
from ibstream.contracts.enums import OrderLeg, OrderStatus, OrderType, Side
from tests.integration.execution_support import Reader, routed, send, wait_for
from tests.integration.streams_support import AGENT0_SECRET, StreamsWorker, TopicReader
from tests.integration.test_agent0_one_road import ApiServer, bearer
from tests.integration.test_execution import Running, run_executor, statuses  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(
        warehouse_dir=tmp_path / "wh",
        api_jwt_secret=SecretStr(AGENT0_SECRET),
        warehouse_batch_rows=100,
        warehouse_batch_seconds=0.2,
    )


@pytest.fixture
def api_for() -> Iterator[Callable[[Settings], ApiServer]]:
    servers: list[ApiServer] = []

    def start(settings: Settings) -> ApiServer:
        server = ApiServer(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def held_bracket_and_resting_entry(running: Running) -> tuple[str, str]:
    """A filled MSFT entry with its stop and target working, and an AAPL entry resting 20% under the market."""
    price = running.sim.quote("MSFT").ask
    held = routed("MSFT", Side.BUY, 5, stop_loss=round(price * 0.90, 2), take_profit=round(price * 1.10, 2))
    bid = running.sim.quote("AAPL").bid
    resting = routed(
        "AAPL",
        Side.BUY,
        5,
        order_type=OrderType.LMT,
        limit_price=round(bid * 0.8, 2),
        stop_loss=round(bid * 0.7, 2),
        take_profit=round(bid * 0.9, 2),
    )
    events = Reader(running.settings, order_events.TOPIC)
    send(running.settings, held, resting)
    events.wait(
        lambda es: (
            OrderStatus.FILLED in statuses(es, held.order_id)
            and OrderStatus.ACKNOWLEDGED in statuses(es, held.order_id, OrderLeg.STOP_LOSS)
            and OrderStatus.ACKNOWLEDGED in statuses(es, held.order_id, OrderLeg.TAKE_PROFIT)
            and OrderStatus.ACKNOWLEDGED in statuses(es, resting.order_id)
        ),
        timeout=30,
    )
    events.close()
    return held.order_id, resting.order_id


def test_kill_switch_then_flatten_through_the_api_leave_ibsim_flat_with_no_working_order(
    run_executor: Callable[..., Running], api_for: Callable[[Settings], ApiServer], tmp_path: Path
) -> None:
    running = run_executor()
    settings = running.settings
    worker = StreamsWorker(settings, tmp_path, "orchestration,risk").start()
    with_api = api_settings(settings, tmp_path)
    api = api_for(with_api)
    admin = bearer(with_api, Role.ADMIN, "ops")
    decisions = TopicReader(settings, risk_decisions.TOPIC)
    intents = TopicReader(settings, order_intents.TOPIC)
    try:
        held, resting = held_bracket_and_resting_entry(running)

        with httpx.Client(base_url=api.url, headers=admin, timeout=10) as client:
            client.get("/health")  # connected before the clock starts: we measure the pipeline, not a TCP handshake
            issued = time.monotonic()
            engaged = client.post("/v1/control/kill-switch", json={"state": "on", "reason": "drill"})
            answered = time.monotonic()
            assert engaged.status_code == 202, engaged.text
            wait_for(lambda: {o.status for o in running.ib_orders(resting)} == {"Cancelled"}, timeout=10)
            cancelled = time.monotonic()
            print(
                f"kill switch: API call → last entry cancelled at ibsim {(cancelled - issued) * 1000:.0f} ms "
                f"(API answered after {(answered - issued) * 1000:.0f} ms)"
            )
            assert cancelled - issued <= 1.0
            legs = {o.status for o in running.ib_orders(held)}
            assert legs == {"Filled", "Submitted"}, legs  # the position keeps its stop and target

            flatten = client.post("/v1/control/flatten", json={"scope": "account", "reason": "drill: go flat"})
            assert flatten.status_code == 202, flatten.text
        command_id = flatten.json()["command_id"]
        flatten_order = ids.flatten_order_id(command_id, "MSFT")

        def flat_with_nothing_working() -> bool:
            positions = {p.symbol: p.quantity for p in running.sim.positions()}
            working = [(o.order_ref, o.status) for o in running.sim.orders() if o.is_active]
            return all(quantity == 0 for quantity in positions.values()) and not working

        wait_for(flat_with_nothing_working, timeout=90)
        (placed,) = running.ib_orders(flatten_order)
        assert (placed.request.action, placed.request.order_type, placed.status) == ("SELL", "MKT", "Filled")
        assert {o.status for o in running.ib_orders(held)} == {"Filled", "Cancelled"}
        intents.poll_until(lambda records: any(i.order_id == flatten_order for i in records), 10)
        (intent,) = [i for i in intents.records if i.order_id == flatten_order]
        assert (intent.flatten_id, intent.quantity, intent.stop_loss) == (command_id, 5.0, None)
        decisions.poll_until(lambda records: any(d.order_id == flatten_order for d in records), 10)
        decision: RiskDecision = next(d for d in decisions.records if d.order_id == flatten_order)
        assert decision.approved  # while the kill switch is on: it closes the position
        kill = next(c for c in decision.checks if c.name == "kill_switch")
        assert "closes the 5 held" in kill.reason
    except BaseException:
        print(worker.log()[-5000:])
        raise
    finally:
        worker.stop()
        decisions.close()
        intents.close()
