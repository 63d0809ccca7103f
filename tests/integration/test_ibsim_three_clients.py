# ruff: noqa: F811  (pytest fixtures imported from the support modules are redefined as arguments)
"""IB's three Python clients on one ibsim at once, each at the version it negotiates: ibapi 10.x in this process,
ibapi 9.81 in its side venv, ib_async 2.x. One trade each, and every client reads the same position in its own
type (10.x and ib_async a Decimal or float of the exact shares, 9.81 a float)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from ib_async import IB
from ibapi import server_versions as ibapi10_versions
from ibapi.order import Order

from ibsim import Simulator
from ibsim.config import SERVER_VERSION
from tests.integration.ibapi981_support import Ibapi981, contract, ibapi981_factory, order  # noqa: F401
from tests.integration.ibsim_support import Recorder, ibapi_factory, sim_factory, stock  # noqa: F401

pytestmark = pytest.mark.integration


def test_ibapi_10_ibapi_9_81_and_ib_async_each_get_their_version_and_share_one_account(
    sim_factory: Callable[..., Simulator],
    ibapi_factory: Callable[[Simulator, int], Recorder],
    ibapi981_factory: Callable[[Simulator, int], Ibapi981],
) -> None:
    sim = sim_factory()
    new = ibapi_factory(sim, 1)
    old = ibapi981_factory(sim, 2)
    # 10.x asks v100..225, 9.81 v100..157, ib_async v157..178: each gets the highest version ibsim speaks with it
    assert ibapi10_versions.MAX_CLIENT_VER > SERVER_VERSION == 178
    assert (new.serverVersion(), old.server_version) == (178, 157)

    buy = Order()
    buy.action, buy.totalQuantity, buy.orderType = "BUY", Decimal("100"), "MKT"
    new.placeOrder(new.of("nextValidId")[0][1], stock("AAPL"), buy)
    new.wait_event("execDetails")
    old.call("placeOrder", old.next_valid_id, contract("AAPL"), order("BUY", 50, "MKT"))
    old.wait_event("execDetails")

    async def with_ib_async() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=3, timeout=5, raiseSyncErrors=True)
        try:
            assert ib.client.serverVersion() == 178
            assert sorted(sim.connected_client_ids()) == [1, 2, 3]
            [position] = await ib.reqPositionsAsync()
            assert (position.contract.symbol, position.position) == ("AAPL", 150)
        finally:
            ib.disconnect()

    asyncio.run(with_ib_async())
    new.reqPositions()
    old.call("reqPositions")
    [(_, _, _, shares_10x, _)] = new.wait_event("position")
    [[_, _, _, shares_981, _]] = old.wait_event("position")
    [held] = sim.positions()
    assert held.quantity == 150
    assert (type(shares_10x), shares_10x) == (Decimal, Decimal("150"))  # 10.x: Decimal, exact
    assert shares_981 == 150.0
    # execDetails: reqId, contract, execution; each client hears of its own fills only
    assert [e[3]["shares"] for e in old.of("execDetails")] == [50.0]
    assert [e[3].shares for e in new.of("execDetails")] == [Decimal("100")]
