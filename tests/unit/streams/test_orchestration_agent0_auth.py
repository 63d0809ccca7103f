"""Orchestration's side of Agent0 on the one road (pure, no I/O): the service token on every plan request, the
equity from the newest account.v1 record in it, a plan that does not match the signal on record fails the run,
and a missing token stops startup naming the setting."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from ibstream.config import load_settings
from ibstream.contracts import AccountState, Plan
from ibstream.contracts.enums import OrderType, RunState, Side
from ibstream.exceptions import ConfigError
from streams import orchestration as orch
from streams.orchestration.account import NewestAccount
from streams.orchestration.agent0_client import Agent0Client, plan_request
from tests.unit.streams.test_streams_orchestration import SIGNAL, T0


def plan(**changes: object) -> Plan:
    base = Plan(
        plan_id="p",
        side=Side.BUY,
        quantity=250,
        order_type=OrderType.LMT,
        limit_price=100.0,
        stop_loss=98.0,
        take_profit=104.0,
        rationale="r",
    )
    return base.model_copy(update=changes)


def account(name: str, net_liquidation: float, minutes: int) -> AccountState:
    return AccountState(
        account=name,
        base_currency="USD",
        net_liquidation=net_liquidation,
        buying_power=net_liquidation,
        available_funds=net_liquidation,
        excess_liquidity=net_liquidation,
        gross_position_value=0.0,
        time=T0 + timedelta(minutes=minutes),
    )


class Recorded:
    """A fake Agent0 over httpx's MockTransport: records each request, answers with ``answer``."""

    def __init__(self, answer: Plan) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"plan": self.answer.model_dump(mode="json")})


def client(agent0: Recorded, newest: NewestAccount) -> Agent0Client:
    return Agent0Client(
        "http://agent0",
        timeout=1,
        max_attempts=1,
        backoff_seconds=0,
        breaker=orch.CircuitBreaker(5, 1),
        token=SecretStr("service-token"),
        equity=newest.net_liquidation,
        transport=httpx.MockTransport(agent0),
    )


@pytest.mark.asyncio
async def test_every_plan_request_carries_the_service_token_and_the_newest_net_liquidation() -> None:
    agent0, newest = Recorded(plan()), NewestAccount()
    planner = client(agent0, newest)
    await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, planner)
    newest.apply(account("DU1", 80_000.0, 1))
    await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, planner)
    await planner.close()
    assert [r.headers["Authorization"] for r in agent0.requests] == ["Bearer service-token"] * 2
    bodies = [json.loads(r.content) for r in agent0.requests]
    assert "equity" not in bodies[0]  # no account record yet: Agent0 falls back to its configured equity
    assert bodies[1]["equity"] == 80_000.0
    assert bodies[1]["signal"]["signal_id"] == SIGNAL.signal_id


def test_the_newest_record_wins_and_the_configured_account_is_the_one_read() -> None:
    newest = NewestAccount()
    assert newest.net_liquidation() is None
    newest.apply(account("DU1", 100_000.0, 2))
    newest.apply(account("DU1", 90_000.0, 1))  # older, redelivered: does not win
    assert newest.net_liquidation() == 100_000.0
    newest.apply(account("DU2", 50_000.0, 3))
    assert newest.net_liquidation() == 50_000.0  # no account configured: the newest record overall
    configured = NewestAccount("DU1")
    configured.apply(account("DU1", 100_000.0, 2))
    configured.apply(account("DU2", 50_000.0, 3))
    assert configured.net_liquidation() == 100_000.0
    configured.apply(account("DU1", 0.0, 4))
    assert configured.net_liquidation() is None  # nothing to size by: Agent0's fallback (with its warning)


def test_the_plan_request_is_the_signal_on_record_with_the_equity_when_known() -> None:
    assert plan_request(SIGNAL, None) == {"signal": SIGNAL.model_dump(mode="json", exclude={"features"})}
    assert plan_request(SIGNAL, 12_345.0)["equity"] == 12_345.0


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"side": Side.SELL, "stop_loss": 102.0, "take_profit": 96.0}, "side"),
        ({"limit_price": 101.5}, "limit"),
        ({"stop_loss": 100.5}, "stop"),
        ({"take_profit": 99.0}, "take profit"),
    ],
)
@pytest.mark.asyncio
async def test_a_plan_that_does_not_match_the_signal_on_record_fails_the_run(
    changes: dict[str, object], why: str
) -> None:
    assert orch.plan_mismatch(SIGNAL, plan()) is None
    agent0 = Recorded(plan(**changes))
    planner = client(agent0, NewestAccount())
    records = await orch.plan_run(orch.trigger(SIGNAL), SIGNAL, planner)
    await planner.close()
    assert records[-1].state is RunState.FAILED
    assert "plan refused" in (records[-1].reason or "") and why in (records[-1].reason or "")


def test_a_widened_stop_still_matches() -> None:
    # Agent0 widens a stop closer than the minimum distance (keeping reward/risk): same sides, same entry.
    assert orch.plan_mismatch(SIGNAL, plan(stop_loss=97.0, take_profit=106.0)) is None


def test_without_a_service_token_orchestration_does_not_start() -> None:
    with pytest.raises(ConfigError, match="IBSTREAM_AGENT0_TOKEN"):
        Agent0Client.from_settings(load_settings())
    token = load_settings(agent0_token="t" * 40).agent0.token
    assert token is not None and "t" * 40 not in repr(token)  # a SecretStr: never printed
