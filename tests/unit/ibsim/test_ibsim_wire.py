"""Wire mapping against the real decoder and encoder of IB's 10.x client (nautilus-ibapi; no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from ibapi import comm
from ibapi.client import EClient
from ibapi.const import UNSET_DOUBLE
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from ibsim import messages as m
from ibsim.config import DEFAULT_UNIVERSE
from ibsim.market import Bar
from ibsim.wire import (
    FieldReader,
    FrameDecoder,
    FrameTooLargeError,
    ProtocolError,
    encode_field,
    encode_message,
    parse_version_range,
)
from ibstream.sim.matching import Execution, OrderRequest, OrderSnapshot

AAPL = DEFAULT_UNIVERSE[0]


class Capture(EWrapper):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if name.startswith("_") or name in {"calls", "logAnswer"} or not callable(attr):
            return attr
        return lambda *a: object.__getattribute__(self, "calls").append((name, a))


def decode(fields: list[Any], version: int = 157) -> list[tuple[str, tuple[Any, ...]]]:
    """Frame with ibsim, unframe and interpret with the 10.x client's own comm + Decoder at ``version``, splitting off
    the message id as its EClient.run does (text ids below the protobuf versions)."""
    frame = encode_message(fields)
    size, payload, rest = comm.read_msg(frame)
    assert size == len(frame) - 4 and rest == b""
    msg_id, _, text = payload.partition(b"\0")
    w = Capture()
    decoder = Decoder(w, version)
    handler = decoder.msgId2handleInfo[int(msg_id)]
    if handler.processMeth is None:  # decoded by the wrapper's signature: a count mismatch drops the message
        decoder.interpret(comm.read_fields(text), int(msg_id))
        return w.calls
    rest = iter(comm.read_fields(text))
    handler.processMeth(decoder, rest)
    assert list(rest) == [], f"fields left over at server {version}: the layout does not match the version"
    return w.calls


@pytest.fixture(params=[157, m.MAX_SERVER_VERSION], ids=lambda version: f"v{version}")
def version(request: pytest.FixtureRequest) -> int:
    """Both ends of what ibsim negotiates: ibapi 9.81's 157 and ibsim's maximum (ib_async's and 10.x's)."""
    return int(request.param)


def snapshot(**kw: Any) -> OrderSnapshot:
    req = OrderRequest(
        order_id=42,
        client_id=7,
        con_id=AAPL.con_id,
        symbol="AAPL",
        action="BUY",
        quantity=150,
        order_type="STP LMT",
        lmt_price=190.5,
        aux_price=191.0,
        tif="GTC",
        oca_group="g1",
        account="DU1234567",
        order_ref="run-9b1f",
        transmit=True,
        parent_id=41,
        outside_rth=True,
    )
    base: dict[str, Any] = dict(
        request=req,
        perm_id=1_000_000_123,
        status="PreSubmitted",
        filled=50.0,
        remaining=100.0,
        avg_fill_price=190.75,
        last_fill_price=190.8,
        created_at=0.0,
        updated_at=0.0,
    )
    base.update(kw)
    return OrderSnapshot(**base)


def test_open_order_round_trips_through_ibapi_order_decoder(version: int) -> None:
    [(name, (oid, contract, order, state))] = decode(
        m.open_order(snapshot(), AAPL, "DU1234567", version=version), version
    )
    assert name == "openOrder" and oid == 42
    assert (contract.conId, contract.symbol, contract.secType, contract.exchange, contract.currency) == (
        265598,
        "AAPL",
        "STK",
        "SMART",
        "USD",
    )
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice, order.auxPrice, order.tif) == (
        "BUY",
        150.0,
        "STP LMT",
        190.5,
        191.0,
        "GTC",
    )
    assert (order.orderRef, order.clientId, order.permId, order.parentId, order.ocaGroup, order.account) == (
        "run-9b1f",
        7,
        1_000_000_123,
        41,
        "g1",
        "DU1234567",
    )
    assert order.outsideRth is True and state.status == "PreSubmitted"
    # fields we leave unset come back as ibapi's own defaults
    d = Order()
    for f in (
        "minQty",
        "percentOffset",
        "volatility",
        "trailStopPrice",
        "cashQty",
        "triggerPrice",
        "scalePriceIncrement",
        "exemptCode",
    ):
        assert getattr(order, f) == getattr(d, f), f


def test_open_order_market_order_has_unset_prices(version: int) -> None:
    s = snapshot(request=OrderRequest(1, 1, AAPL.con_id, "AAPL", "SELL", 1, "MKT"))
    [(_, (_, _, order, _))] = decode(m.open_order(s, AAPL, "DU1", version=version), version)
    assert order.lmtPrice == UNSET_DOUBLE and order.auxPrice == UNSET_DOUBLE and order.account == "DU1"


def test_order_status_exec_details_commission(version: int) -> None:
    [(_, args)] = decode(m.order_status(snapshot()), version)
    assert args == (42, "PreSubmitted", 50.0, 100.0, 190.75, 1_000_000_123, 41, 190.8, 7, "", 0.0)
    ex = Execution(
        "0001.02.01.01",
        42,
        7,
        1_000_000_123,
        "AAPL",
        AAPL.con_id,
        "BOT",
        50.0,
        190.75,
        1736175630.0,
        50.0,
        190.75,
        "run-9b1f",
        "DU1234567",
        1.0,
        None,
    )
    [(name, (req_id, contract, e))] = decode(m.exec_details(-1, ex, AAPL, version=version), version)
    assert name == "execDetails" and req_id == -1 and contract.conId == AAPL.con_id
    assert (
        e.execId,
        e.orderId,
        e.shares,
        e.price,
        e.side,
        e.permId,
        e.clientId,
        e.cumQty,
        e.avgPrice,
        e.orderRef,
        e.acctNumber,
        e.time,
    ) == (
        "0001.02.01.01",
        42,
        50.0,
        190.75,
        "BOT",
        1_000_000_123,
        7,
        50.0,
        190.75,
        "run-9b1f",
        "DU1234567",
        "20250106  10:00:30",
    )
    [(_, (cr,))] = decode(m.commission_report(ex), version)
    assert (cr.execId, cr.commissionAndFees, cr.currency, cr.realizedPNL, cr.yield_) == (
        "0001.02.01.01",
        1.0,
        "USD",
        UNSET_DOUBLE,
        UNSET_DOUBLE,
    )


def test_market_data_and_bars(version: int) -> None:
    calls = decode(m.tick_price(3, m.Tick.BID, 190.01, 7, 1), version)
    assert [c[0] for c in calls] == ["tickPrice", "tickSize"]
    assert calls[0][1][:3] == (3, 1, 190.01) and calls[0][1][3].canAutoExecute
    assert calls[1][1] == (3, 0, 7)
    assert decode(m.tick_string(3, m.Tick.LAST_TIMESTAMP, "1736175630"), version) == [
        ("tickString", (3, 45, "1736175630"))
    ]
    bar = Bar(1736175630, 1.0, 2.0, 0.5, 1.5, 1200, 1.25, 9)
    assert decode(m.realtime_bar(4, bar), version) == [
        ("realtimeBar", (4, 1736175630, 1.0, 2.0, 0.5, 1.5, 1200, 1.25, 9))
    ]
    calls = decode(m.historical_data(5, 1736175600, 1736175640, [bar, bar], 5, 2), version)
    assert [c[0] for c in calls] == ["historicalData", "historicalData", "historicalDataEnd"]
    b = calls[0][1][1]
    assert (b.date, b.open, b.high, b.low, b.close, b.volume, b.barCount) == ("1736175630", 1.0, 2.0, 0.5, 1.5, 1200, 9)
    assert calls[2][1] == (5, "20250106  10:00:00", "20250106  10:00:40")
    [(_, (_, upd))] = decode(m.historical_data_update(6, bar, 60, 1), version)
    assert (upd.date, upd.open, upd.close, upd.high, upd.low) == ("20250106  10:00:30", 1.0, 1.5, 2.0, 0.5)


def test_contract_details_account_and_misc(version: int) -> None:
    [(name, (req_id, cd))] = decode(m.contract_data(8, AAPL, [], version=version), version)
    assert name == "contractDetails" and req_id == 8
    # 10.x reads mdSizeMultiplier below server 164 but keeps it nowhere: the fields after it land in place
    assert (cd.contract.conId, cd.contract.primaryExchange, cd.longName, cd.stockType, cd.priceMagnifier) == (
        265598,
        "NASDAQ",
        "APPLE INC",
        "COMMON",
        1,
    )
    assert decode(m.error(-1, 2104, "Market data farm connection is OK:usfarm", version=version), version) == [
        ("error", (-1, 0, 2104, "Market data farm connection is OK:usfarm", ""))
    ]  # 10.x's errorTime (0 below server 194) and advancedOrderRejectJson ("" below 166)
    assert decode(m.error(1, 201, "caf\u00e9 \\ ok", version=version), version) == [
        ("error", (1, 0, 201, "caf\u00e9 \\ ok", ""))
    ]  # ASCII7 escapes
    [(_, (acct, c, pos, avg))] = decode(m.position("DU1", AAPL, 100, 190.5), version)
    assert (acct, c.symbol, c.conId, pos, avg) == ("DU1", "AAPL", 265598, 100.0, 190.5)
    [(_, args)] = decode(m.portfolio_value(AAPL, 10, 200.0, 190.0, 5.0, "DU1"), version)
    assert args[1:] == (10.0, 200.0, 2000.0, 190.0, 100.0, 5.0, "DU1")
    assert decode(m.account_summary(3, "DU1", "NetLiquidation", "1000.00", "USD"), version) == [
        ("accountSummary", (3, "DU1", "NetLiquidation", "1000.00", "USD"))
    ]
    assert decode(m.next_valid_id(5), version) == [("nextValidId", (5,))]
    assert decode(m.managed_accounts(("DU1", "DU2")), version) == [("managedAccounts", ("DU1,DU2",))]
    assert decode(m.market_data_type(2, 3), version) == [("marketDataType", (2, 3))]
    assert decode(m.exec_details_end(4), version) == [("execDetailsEnd", (4,))]


class _Conn:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def isConnected(self) -> bool:  # noqa: N802  (ibapi's name)
        return True

    def sendMsg(self, msg: bytes) -> None:  # noqa: N802
        self.sent.append(msg)


def ibapi_request(version: int, call: str, *args: Any) -> m.Request:
    """Encode with the 10.x client's real EClient at server ``version`` and parse with ibsim at that version."""
    client = EClient(EWrapper())
    client.conn = _Conn()
    client.serverVersion_ = version
    client.connState = EClient.CONNECTED
    getattr(client, call)(*args)
    [frame] = client.conn.sent
    payload = FrameDecoder().feed(frame)[0]
    return m.parse_request(payload.decode().split("\0")[:-1], version=version)


def stk(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency, c.primaryExchange = symbol, "STK", "SMART", "USD", "NASDAQ"
    return c


def test_parse_requests_encoded_by_ibapi(version: int) -> None:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.auxPrice = "SELL", 25, "STP LMT", 99.5, 100.0
    o.orderRef, o.transmit, o.parentId, o.tif, o.outsideRth = "ref-1", False, 17, "GTC", True
    req = ibapi_request(version, "placeOrder", 18, stk("AAPL"), o)
    assert req == m.PlaceOrder(
        18,
        m.ContractSpec(0, "AAPL", "STK", "SMART", "NASDAQ", "USD", "", ""),
        "SELL",
        25.0,
        "STP LMT",
        99.5,
        100.0,
        "GTC",
        "",
        "",
        "ref-1",
        False,
        17,
        True,
    )
    mkt = Order()
    mkt.action, mkt.totalQuantity, mkt.orderType = "BUY", 1, "MKT"
    req = ibapi_request(version, "placeOrder", 19, stk("AAPL"), mkt)
    assert isinstance(req, m.PlaceOrder) and req.lmt_price is None and req.aux_price is None and req.transmit
    assert ibapi_request(version, "reqMktData", 3, stk("MSFT"), "233", True, False, []) == m.ReqMktData(
        3, m.ContractSpec(0, "MSFT", "STK", "SMART", "NASDAQ", "USD", "", ""), "233", True, False
    )
    h = ibapi_request(
        version,
        "reqHistoricalData",
        4,
        stk("SPY"),
        "20250106 10:00:00 US/Eastern",
        "1 D",
        "1 min",
        "MIDPOINT",
        0,
        2,
        True,
        [],
    )
    assert isinstance(h, m.ReqHistoricalData)
    assert (
        h.req_id,
        h.end_date_time,
        h.duration,
        h.bar_size,
        h.use_rth,
        h.what_to_show,
        h.format_date,
        h.keep_up_to_date,
    ) == (4, "20250106 10:00:00 US/Eastern", "1 D", "1 min", False, "MIDPOINT", 2, True)
    rt = ibapi_request(version, "reqRealTimeBars", 5, stk("QQQ"), 5, "TRADES", True, [])
    assert rt == m.ReqRealTimeBars(
        5, m.ContractSpec(0, "QQQ", "STK", "SMART", "NASDAQ", "USD", "", ""), 5, "TRADES", True
    )
    f = ExecutionFilter()
    f.clientId, f.symbol, f.side, f.time = 3, "AAPL", "BUY", "20250106 09:00:00"
    assert ibapi_request(version, "reqExecutions", 6, f) == m.ReqExecutions(
        6, 3, "", "20250106 09:00:00", "AAPL", "", "", "BUY"
    )
    cd = ibapi_request(version, "reqContractDetails", 7, stk("AAPL"))
    assert isinstance(cd, m.ReqContractDetails) and cd.contract.symbol == "AAPL"
    assert ibapi_request(version, "cancelOrder", 18, OrderCancel()) == m.SimpleRequest(4, 18)
    assert ibapi_request(version, "reqIds", -1) == m.SimpleRequest(8, -1)
    assert ibapi_request(version, "reqAccountSummary", 9, "All", "NetLiquidation") == m.ReqAccountSummary(
        9, "All", "NetLiquidation"
    )
    assert ibapi_request(version, "reqCurrentTime") == m.SimpleRequest(49, 0)
    assert ibapi_request(version, "reqMarketDataType", 3) == m.SimpleRequest(59, 3)
    assert m.parse_request(["4242", "1"], version=version) == m.UnknownRequest(4242)
    with pytest.raises(ProtocolError):
        m.parse_request(["x"], version=version)


def test_framing_and_fields() -> None:
    dec = FrameDecoder(max_frame=64)
    frame = encode_message([1, "a", 2.5, True, None, m.In.TICK_PRICE])
    assert dec.feed(frame[:3]) == [] and dec.feed(frame[3:] + frame) == [b"1\0a\x002.5\x001\0\x001\0"] * 2
    assert dec.pending == 0
    with pytest.raises(FrameTooLargeError):
        FrameDecoder(max_frame=8).feed(b"\x00\x00\x01\x00")
    assert [encode_field(x) for x in (UNSET_DOUBLE, 2**31 - 1, float("inf"), False)] == ["", "", "Infinite", "0"]
    assert parse_version_range("v100..157") == (100, 157)
    assert parse_version_range("v157..178 +PACEAPI") == (157, 178)
    with pytest.raises(ProtocolError):
        parse_version_range("157")
    r = FieldReader(["1", "", "2.0", "x"])
    assert (r.integer(), r.number(), r.integer()) == (1, None, 2)
    with pytest.raises(ProtocolError):
        r.integer()


def test_ib_datetimes_and_durations() -> None:
    now = 1736175600.0  # 2025-01-06 10:00 New York
    assert m.parse_ib_datetime("", now) == now
    assert m.parse_ib_datetime("20250106 10:00:00", now) == now
    assert m.parse_ib_datetime("20250106 10:00:00 US/Eastern", now) == now
    assert m.parse_ib_datetime("20250106 15:00:00 UTC", now) == now
    assert m.parse_ib_datetime("20250106-15:00:00", now) == now
    with pytest.raises(ProtocolError):
        m.parse_ib_datetime("yesterday", now)
    assert m.duration_seconds("3600 S") == (3600, "S") and m.duration_seconds("2 d") == (2, "D")
    with pytest.raises(ProtocolError):
        m.duration_seconds("1 X")


def decode_completed_order(version: int, fields: list[Any]) -> tuple[Any, Any, Any, list[str]]:
    """Decode a completedOrder with ibapi's own decoder, returning what it left over (must be nothing)."""
    frame = encode_message(fields)
    _, payload, _ = comm.read_msg(frame)
    w = Capture()
    _, _, text = payload.partition(b"\0")  # the message id, which 10.x's EClient.run reads before the decoder
    it = iter(comm.read_fields(text))
    Decoder(w, version).processCompletedOrderMsg(it)
    [(name, (contract, order, state))] = w.calls
    assert name == "completedOrder"
    return contract, order, state, [f.decode() for f in it]


def test_completed_order_round_trips_through_ibapi_with_no_field_left_over(version: int) -> None:
    done = snapshot(status="Filled", filled=150.0, remaining=0.0, updated_at=1736175598.0)  # 2025-01-06 09:59:58 EST
    contract, order, state, rest = decode_completed_order(
        version, m.completed_order(done, AAPL, "DU1234567", version=version)
    )
    assert rest == []
    assert (contract.conId, contract.symbol, contract.tradingClass) == (AAPL.con_id, "AAPL", "NMS")
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice, order.auxPrice) == (
        "BUY",
        150.0,
        "STP LMT",
        190.5,
        191.0,
    )
    assert (order.orderRef, order.permId, order.account, order.tif, order.ocaGroup) == (
        "run-9b1f",
        1_000_000_123,
        "DU1234567",
        "GTC",
        "g1",
    )
    assert order.filledQuantity == 150.0 and order.outsideRth is True
    assert (state.status, state.completedTime, state.completedStatus) == ("Filled", "20250106 09:59:58 EST", "Filled")
    d = Order()
    for f in ("minQty", "percentOffset", "volatility", "scalePriceIncrement", "exemptCode", "cashQty"):
        assert getattr(order, f) == getattr(d, f), f


def test_completed_order_of_a_cancel_and_a_reject_says_what_ended_it(version: int) -> None:
    cancelled = snapshot(status="Cancelled", filled=50.0, remaining=100.0)
    _, order, state, rest = decode_completed_order(version, m.completed_order(cancelled, AAPL, "DU1", version=version))
    assert rest == [] and (state.status, state.completedStatus) == ("Cancelled", "Cancelled by Trader")
    assert order.filledQuantity == 50.0
    rejected = snapshot(status="Inactive", filled=0.0, reject_code=201)
    _, _, state, rest = decode_completed_order(version, m.completed_order(rejected, AAPL, "DU1", version=version))
    assert rest == [] and (state.status, state.completedStatus) == ("Inactive", "Rejected (201)")


def test_place_order_keeps_the_trail_oca_type_and_adaptive_algo_ibapi_sends(version: int) -> None:
    trail = Order()
    trail.action, trail.totalQuantity, trail.orderType = "SELL", 10, "TRAIL"
    trail.trailingPercent, trail.trailStopPrice = 1.5, 97.25
    trail.ocaGroup, trail.ocaType = "exit-1", 3
    req = ibapi_request(version, "placeOrder", 21, stk("AAPL"), trail)
    assert isinstance(req, m.PlaceOrder)
    assert (req.order_type, req.oca_group, req.aux_price) == ("TRAIL", "exit-1", None)
    assert req.tail == m.PlaceOrderTail(oca_type=3, trail_stop_price=97.25, trailing_percent=1.5)
    adaptive = Order()
    adaptive.action, adaptive.totalQuantity, adaptive.orderType, adaptive.lmtPrice = "BUY", 5, "LMT", 101.0
    adaptive.algoStrategy, adaptive.algoParams = "Adaptive", [TagValue("adaptivePriority", "Patient")]
    req = ibapi_request(version, "placeOrder", 22, stk("AAPL"), adaptive)
    assert isinstance(req, m.PlaceOrder) and not req.what_if
    assert (req.tail.algo_strategy, req.tail.algo_params) == ("Adaptive", (("adaptivePriority", "Patient"),))
    adaptive.whatIf = True
    req = ibapi_request(version, "placeOrder", 23, stk("AAPL"), adaptive)
    assert isinstance(req, m.PlaceOrder) and req.what_if and req.tail.algo_strategy == "Adaptive"


def test_place_order_reads_a_trailing_stop_limits_offset_after_what_if(version: int) -> None:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.auxPrice, o.lmtPriceOffset = "SELL", 10, "TRAIL LIMIT", 1.0, 0.5
    o.trailStopPrice = 98.0
    req = ibapi_request(version, "placeOrder", 24, stk("AAPL"), o)
    assert isinstance(req, m.PlaceOrder) and not req.what_if
    assert (req.order_type, req.aux_price, req.tail.trail_stop_price, req.tail.lmt_price_offset) == (
        "TRAIL LIMIT",
        1.0,
        98.0,
        0.5,
    )
