"""ibsim's messages at server version 157 against ibapi 9.81's own decoder and encoder, in its side venv (no sockets).

The main venv has IB's 10.x client (test_ibsim_wire.py decodes with it at 157 and 178); 9.81 is the client that
defined the 157 layouts, so every message ibsim sends a 9.81 session goes through 9.81's Decoder here too, and must
leave no field over; and placeOrder as 9.81 writes it must read back the same through ibsim's parser.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from ibsim import messages as m
from ibsim.config import DEFAULT_UNIVERSE
from ibsim.market import Bar
from ibsim.wire import encode_message
from ibstream.sim.matching import Execution, OrderRequest, OrderSnapshot
from tests.integration.ibapi981_support import ibapi981_python
from tests.tools import require_tool

AAPL = next(i for i in DEFAULT_UNIVERSE if i.symbol == "AAPL")
VERSION = 157

#: Runs in the side venv: decodes the frames given on stdin with 9.81's Decoder, and encodes two placeOrders.
SCRIPT = r"""
import json, sys
from ibapi import comm
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.order import Order
from ibapi.wrapper import EWrapper

class Capture(EWrapper):
    def __init__(self):
        super().__init__()
        self.calls = []
    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name.startswith("_") or name in ("calls", "logAnswer") or not callable(attr):
            return attr
        return lambda *a: object.__getattribute__(self, "calls").append(name)

out = {"decoded": [], "placed": []}
for frame in json.load(sys.stdin):
    _, payload, _ = comm.read_msg(bytes.fromhex(frame))
    fields = comm.read_fields(payload)
    w = Capture()
    decoder = Decoder(w, 157)
    handler = decoder.msgId2handleInfo[int(fields[0])]
    if handler.processMeth is None:
        decoder.interpret(fields)
        left = 0
    else:
        rest = iter(fields)  # 9.81's process methods skip the message id themselves
        handler.processMeth(decoder, rest)
        left = len(list(rest))
    out["decoded"].append([w.calls, left])

sent = []
client = EClient(EWrapper())
client.serverVersion_ = 157
client.connState = EClient.CONNECTED
client.isConnected = lambda: True
client.sendMsg = sent.append
contract = Contract()
contract.symbol, contract.secType, contract.exchange, contract.currency = "AAPL", "STK", "SMART", "USD"
for what_if, kind in ((False, "TRAIL"), (True, "MKT")):
    order = Order()
    order.action, order.totalQuantity, order.orderType, order.auxPrice = "SELL", 25, kind, 0.5
    order.whatIf, order.ocaGroup, order.ocaType = what_if, "g1", 3
    client.placeOrder(7, contract, order)
out["placed"] = [s.split("\0")[:-1] for s in sent]
print(json.dumps(out))
"""


def run_981(frames: list[bytes]) -> dict[str, Any]:
    python = ibapi981_python()
    require_tool(None if python.exists() else f"no ibapi 9.81 side venv at {python} (run ops/dev install)")
    done = subprocess.run(
        [str(python), "-c", SCRIPT],
        input=json.dumps([f.hex() for f in frames]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _snapshot() -> OrderSnapshot:
    req = OrderRequest(
        order_id=42,
        client_id=7,
        con_id=AAPL.con_id,
        symbol="AAPL",
        action="BUY",
        quantity=150,
        order_type="LMT",
        lmt_price=190.5,
        aux_price=None,
        tif="DAY",
        oca_group="",
        account="DU1",
        order_ref="r",
        transmit=True,
        parent_id=0,
        outside_rth=False,
    )
    return OrderSnapshot(
        request=req,
        perm_id=1,
        status="Filled",
        filled=150.0,
        remaining=0.0,
        avg_fill_price=190.5,
        last_fill_price=190.5,
        created_at=0.0,
        updated_at=1736175598.0,
    )


def test_every_message_ibsim_sends_a_9_81_session_decodes_in_9_81_with_nothing_left_over() -> None:
    order = _snapshot()
    ex = Execution(
        "0001.01", 42, 7, 1, "AAPL", AAPL.con_id, "BOT", 150.0, 190.5, 1736175630.0, 150.0, 190.5, "r", "DU1", 1.0, None
    )
    bar = Bar(1736175630, 1.0, 2.0, 0.5, 1.5, 1200, 1.25, 9)
    messages: list[tuple[str, list[Any]]] = [
        ("openOrder", m.open_order(order, AAPL, "DU1", version=VERSION)),
        ("completedOrder", m.completed_order(order, AAPL, "DU1", version=VERSION)),
        ("execDetails", m.exec_details(-1, ex, AAPL, version=VERSION)),
        ("contractDetails", m.contract_data(8, AAPL, [], version=VERSION)),
        ("error", m.error(1, 201, "Order rejected", version=VERSION)),
        ("orderStatus", m.order_status(order)),
        ("commissionReport", m.commission_report(ex)),
        ("historicalData", m.historical_data(5, 1736175600, 1736175640, [bar], 5, 2)),
        ("realtimeBar", m.realtime_bar(4, bar)),
        ("position", m.position("DU1", AAPL, 100, 190.5)),
    ]
    result = run_981([encode_message(fields) for _, fields in messages])
    for (name, _), (calls, left) in zip(messages, result["decoded"], strict=True):
        assert name in calls and left == 0, (name, calls, left)


def test_place_order_as_9_81_writes_it_reads_back_through_ibsim_at_157() -> None:
    trail, what_if = (m.parse_request(fields, version=VERSION) for fields in run_981([])["placed"])
    assert isinstance(trail, m.PlaceOrder) and isinstance(what_if, m.PlaceOrder)
    assert (trail.order_id, trail.action, trail.quantity, trail.order_type, trail.aux_price) == (
        7,
        "SELL",
        25,
        "TRAIL",
        0.5,
    )
    assert (trail.what_if, what_if.what_if) == (False, True)
    assert trail.tail.oca_type == 3
