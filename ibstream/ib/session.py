"""One connection to IB Gateway/TWS through IB's official 10.x client (``nautilus-ibapi``, package ``ibapi``).

ibapi runs two threads of its own (the socket reader and the message loop in ``EClient.run``); callbacks arrive on
the message-loop thread. ``IbSession`` turns every callback into an immutable event on a thread-safe queue, so the
deployable's own loop is the only place that reacts. Every outbound request goes through the pacing governor.

10.x gives sizes as ``Decimal`` and takes an order's quantity as one: :mod:`ibstream.ib.quantities` converts both
ways here, so the events and everything behind them carry plain floats (see that module for why that is exact).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import sys
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ibapi.client import EClient
from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.common import BarData
from ibapi.contract import Contract, ContractDetails
from ibapi.execution import Execution as IbExecution
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.order_state import OrderState
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from ibstream.exceptions import IbstreamError
from ibstream.ib import events
from ibstream.ib.codes import classify
from ibstream.ib.pacing import PacingGovernor
from ibstream.ib.quantities import quantity_from_ib, quantity_to_ib

log = logging.getLogger(__name__)

UNSET_DOUBLE = sys.float_info.max
UNSET_INTEGER = 2**31 - 1


def _value(number: float) -> float | None:
    """IB marks an unset double with DBL_MAX."""
    return None if number == UNSET_DOUBLE else number


def _maybe(number: float | None) -> float | None:
    """A P&L number: None when IB left it unset (DBL_MAX) or the server is too old to send it (ibapi's None)."""
    return None if number is None else _value(number)


class IbConnectError(IbstreamError):
    """The gateway did not complete the handshake."""


def stock_contract(symbol: str, con_id: int = 0, primary_exchange: str = "") -> Contract:
    """A SMART-routed US stock or ETF."""
    contract = Contract()
    contract.symbol = symbol
    contract.secType = "STK"
    contract.exchange = "SMART"
    contract.currency = "USD"
    contract.conId = con_id
    contract.primaryExchange = primary_exchange
    return contract


@dataclass(frozen=True)
class OrderTicket:
    """What we ask IB to do, independent of ibapi's mutable Order class."""

    action: str  # BUY | SELL
    quantity: float
    order_type: str  # MKT | LMT | STP | STP LMT | TRAIL
    order_ref: str
    limit_price: float | None = None
    aux_price: float | None = None
    time_in_force: str = "DAY"
    parent_id: int = 0
    transmit: bool = True
    account: str = ""
    outside_rth: bool = False
    #: TRAIL: the trail in percent (``aux_price`` None then; else ``aux_price`` is the trail amount) and the initial
    #: stop (IB's trailStopPrice).
    trailing_percent: float | None = None
    trail_stop_price: float | None = None
    #: An IB algo (e.g. ``Adaptive``) and its parameters as (tag, value) pairs.
    algo_strategy: str = ""
    algo_params: tuple[tuple[str, str], ...] = ()
    #: One-cancels-all group and its type (1 cancel the others on a fill, 2/3 reduce them); "" for none.
    oca_group: str = ""
    oca_type: int = 0

    def to_ibapi(self) -> Order:
        order = Order()
        order.action = self.action
        order.totalQuantity = quantity_to_ib(self.quantity)
        order.orderType = self.order_type
        order.orderRef = self.order_ref
        order.tif = self.time_in_force
        order.parentId = self.parent_id
        order.transmit = self.transmit
        order.account = self.account
        order.outsideRth = self.outside_rth
        if self.limit_price is not None:
            order.lmtPrice = self.limit_price
        if self.aux_price is not None:
            order.auxPrice = self.aux_price
        if self.trailing_percent is not None:
            order.trailingPercent = self.trailing_percent
        if self.trail_stop_price is not None:
            order.trailStopPrice = self.trail_stop_price
        if self.oca_group:
            order.ocaGroup, order.ocaType = self.oca_group, self.oca_type
        if self.algo_strategy:
            order.algoStrategy = self.algo_strategy
            order.algoParams = [TagValue(tag, value) for tag, value in self.algo_params]
        # Current gateways reject these two when set (error 10268/10269); say so whatever the client's defaults are.
        order.eTradeOnly = False
        order.firmQuoteOnly = False
        return order


class _Wrapper(EWrapper):  # type: ignore[misc]  # ibapi ships no type hints
    """Callbacks → events. Runs on ibapi's message-loop thread: build an event, enqueue it, nothing else."""

    def __init__(self, session: IbSession) -> None:
        super().__init__()
        self._session = session

    def _put(self, event: events.IbEvent) -> None:
        self._session.events.put(event)

    def error(
        self, reqId: int, errorTime: int, errorCode: int, errorString: str, advancedOrderRejectJson: str = ""
    ) -> None:
        self._put(events.IbError(reqId, errorCode, errorString, classify(errorCode, errorString)))

    def connectionClosed(self) -> None:
        self._session._on_closed("connection closed")

    def nextValidId(self, orderId: int) -> None:
        self._session._on_next_valid_id(orderId)

    def managedAccounts(self, accountsList: str) -> None:
        self._session._on_accounts(tuple(a for a in accountsList.split(",") if a))

    def currentTime(self, time: int) -> None:
        self._put(events.CurrentTime(time))

    def marketDataType(self, reqId: int, marketDataType: int) -> None:
        self._put(events.MarketDataType(reqId, marketDataType))

    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        self._put(events.TickPrice(reqId, tickType, price))

    def tickSize(self, reqId: int, tickType: int, size: Decimal) -> None:
        self._put(events.TickSize(reqId, tickType, quantity_from_ib(size)))

    def tickString(self, reqId: int, tickType: int, value: str) -> None:
        self._put(events.TickString(reqId, tickType, value))

    def realtimeBar(
        self,
        reqId: int,
        time: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: Decimal,
        wap: Decimal,
        count: int,
    ) -> None:
        self._put(
            events.RealtimeBar(
                reqId, time, open_, high, low, close, quantity_from_ib(volume), quantity_from_ib(wap), count
            )
        )

    def historicalData(self, reqId: int, bar: BarData) -> None:
        self._put(
            events.HistoricalBar(
                reqId,
                bar.date,
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                quantity_from_ib(bar.volume),
                quantity_from_ib(bar.wap),
                bar.barCount,
            )
        )

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        self._put(events.HistoricalEnd(reqId, start, end))

    def orderStatus(
        self,
        orderId: int,
        status: str,
        filled: Decimal,
        remaining: Decimal,
        avgFillPrice: float,
        permId: int,
        parentId: int,
        lastFillPrice: float,
        clientId: int,
        whyHeld: str,
        mktCapPrice: float,
    ) -> None:
        self._put(
            events.OrderStatusUpdate(
                orderId,
                status,
                quantity_from_ib(filled),
                quantity_from_ib(remaining),
                avgFillPrice,
                permId,
                parentId,
                lastFillPrice,
                clientId,
                whyHeld,
            )
        )

    def openOrder(self, orderId: int, contract: Contract, order: Order, orderState: OrderState) -> None:
        self._put(
            events.OpenOrder(
                orderId,
                order.permId,
                order.parentId,
                contract.symbol,
                contract.conId,
                order.account,
                order.action,
                quantity_from_ib(order.totalQuantity),
                order.orderType,
                _value(order.lmtPrice),
                _value(order.auxPrice),
                order.orderRef or "",
                bool(order.transmit),
                orderState.status,
                int(order.clientId),
                order.tif or "",
            )
        )

    def openOrderEnd(self) -> None:
        self._put(events.OpenOrderEnd())

    def execDetails(self, reqId: int, contract: Contract, execution: IbExecution) -> None:
        self._put(
            events.ExecutionDetail(
                reqId,
                execution.execId,
                execution.orderId,
                execution.permId,
                contract.symbol,
                contract.conId,
                execution.acctNumber,
                execution.side,
                quantity_from_ib(execution.shares),
                execution.price,
                quantity_from_ib(execution.cumQty),
                execution.avgPrice,
                execution.orderRef or "",
                execution.time,
                int(execution.clientId),
            )
        )

    def execDetailsEnd(self, reqId: int) -> None:
        self._put(events.ExecutionEnd(reqId))

    def commissionAndFeesReport(self, commissionAndFeesReport: CommissionAndFeesReport) -> None:
        report = commissionAndFeesReport
        self._put(
            events.CommissionReport(
                report.execId, report.commissionAndFees, report.currency, _value(report.realizedPNL)
            )
        )

    def position(self, account: str, contract: Contract, position: Decimal, avgCost: float) -> None:
        self._put(events.PositionUpdate(account, contract.symbol, contract.conId, quantity_from_ib(position), avgCost))

    def positionEnd(self) -> None:
        self._put(events.PositionEnd())

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        contract = contractDetails.contract
        self._put(
            events.ContractDetail(
                reqId, contract.symbol, contract.conId, contract.primaryExchange, contractDetails.minTick
            )
        )

    def contractDetailsEnd(self, reqId: int) -> None:
        self._put(events.ContractDetailsEnd(reqId))

    def updateAccountValue(self, key: str, val: str, currency: str, accountName: str) -> None:
        self._put(events.AccountValue(key, val, currency, accountName))

    def updatePortfolio(
        self,
        contract: Contract,
        position: Decimal,
        marketPrice: float,
        marketValue: float,
        averageCost: float,
        unrealizedPNL: float,
        realizedPNL: float,
        accountName: str,
    ) -> None:
        self._put(
            events.PortfolioUpdate(
                accountName,
                contract.symbol,
                contract.conId,
                quantity_from_ib(position),
                marketPrice,
                marketValue,
                averageCost,
                _value(unrealizedPNL),
                _value(realizedPNL),
            )
        )

    def accountDownloadEnd(self, accountName: str) -> None:
        self._put(events.AccountDownloadEnd(accountName))

    def pnl(self, reqId: int, dailyPnL: float, unrealizedPnL: float | None, realizedPnL: float | None) -> None:
        self._put(events.AccountPnL(reqId, _maybe(dailyPnL), _maybe(unrealizedPnL), _maybe(realizedPnL)))

    def pnlSingle(
        self,
        reqId: int,
        pos: Decimal,
        dailyPnL: float,
        unrealizedPnL: float | None,
        realizedPnL: float | None,
        value: float,
    ) -> None:
        self._put(
            events.PositionPnL(
                reqId,
                quantity_from_ib(pos),
                _maybe(dailyPnL),
                _maybe(unrealizedPnL),
                _maybe(realizedPnL),
                _maybe(value),
            )
        )


class IbSession:
    """A connection to one gateway with one client id. Reconnecting means a new ``connect()`` on the same session;
    every connection gets a new generation number so late events of an old socket can be told apart."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int,
        governor: PacingGovernor | None = None,
        event_queue: queue.Queue[events.IbEvent] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.governor = governor or PacingGovernor()
        self.events: queue.Queue[events.IbEvent] = event_queue if event_queue is not None else queue.Queue()
        self.generation = 0
        self._lock = threading.Lock()
        self._client: EClient | None = None
        self._thread: threading.Thread | None = None
        self._next_valid_id: int | None = None
        self._accounts: tuple[str, ...] | None = None
        self._ready = threading.Event()
        self._closed_generation = -1

    # --- connection -------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and bool(client.isConnected()) and self._ready.is_set()

    def connect(self, timeout: float = 10.0) -> events.Connected:
        """Connect and wait for the handshake (nextValidId + managedAccounts); raise IbConnectError otherwise."""
        self.disconnect()
        with self._lock:
            self.generation += 1
            self._next_valid_id = None
            self._accounts = None
            self._ready.clear()
            client = EClient(_Wrapper(self))
            self._client = client
        handshake = threading.Thread(target=self._handshake, args=(client,), daemon=True)
        handshake.start()
        # ibapi's handshake loops forever if the peer accepts but never answers; bound it.
        handshake.join(timeout)
        if handshake.is_alive() or not client.isConnected():
            # A handshake still running: the peer accepted but never answered. One that ended unconnected: the
            # socket itself failed (ibapi reports 502): the gateway is down, refusing, or the port is wrong.
            silent = handshake.is_alive()
            self._abort(client)
            handshake.join(2)
            if silent:
                raise IbConnectError(f"no IB handshake from {self.host}:{self.port} within {timeout:.0f}s")
            raise IbConnectError(
                f"no connection to IB at {self.host}:{self.port} (refused or unreachable: is the gateway up, its API "
                "enabled and this its port?)"
            )
        send_without_delay(client)
        self._thread = threading.Thread(target=_run, args=(client,), name=f"ibapi-{self.client_id}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self._abort(client)
            raise IbConnectError(f"IB at {self.host}:{self.port} sent no nextValidId/managedAccounts in {timeout:.0f}s")
        assert self._next_valid_id is not None and self._accounts is not None
        connected = events.Connected(self._next_valid_id, self._accounts, int(client.serverVersion()), self.generation)
        self.events.put(connected)
        return connected

    def _handshake(self, client: EClient) -> None:
        try:
            client.connect(self.host, self.port, self.client_id)
        except Exception as error:  # aborting a stuck handshake pulls the socket from under ibapi
            log.debug("IB handshake ended", extra={"error": repr(error)})

    def _abort(self, client: EClient) -> None:
        with contextlib.suppress(Exception):
            if client.conn is not None:
                client.conn.disconnect()
        with contextlib.suppress(Exception):
            client.disconnect()

    def disconnect(self) -> None:
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.disconnect()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self._thread = None

    def _on_next_valid_id(self, order_id: int) -> None:
        with self._lock:
            first = self._next_valid_id is None
            self._next_valid_id = order_id
            self._check_ready()
        if not first or self._ready.is_set():
            self.events.put(events.NextValidId(order_id))

    def _on_accounts(self, accounts: tuple[str, ...]) -> None:
        with self._lock:
            self._accounts = accounts
            self._check_ready()

    def _check_ready(self) -> None:
        if self._next_valid_id is not None and self._accounts is not None:
            self._ready.set()

    def _on_closed(self, reason: str) -> None:
        with self._lock:
            # ibapi reports one close up to three times (connection, client, run loop): report it once.
            if self._closed_generation == self.generation:
                return
            self._closed_generation = self.generation
            self._ready.clear()
        self.events.put(events.Disconnected(self.generation, reason))

    # --- requests ---------------------------------------------------------------------------------------------

    def _send(self, method: str, *args: Any, historical: tuple[Any, Any] | None = None) -> bool:
        """Pace, then call the EClient method; False if not connected or the socket broke while sending."""
        client = self._client
        if client is None or not client.isConnected():
            return False
        self.governor.acquire(historical)
        try:
            getattr(client, method)(*args)
        except OSError as error:
            log.warning("IB send failed", extra={"request": method, "error": str(error)})
            self._on_closed(f"send failed: {error}")
            return False
        return True

    def req_current_time(self) -> bool:
        return self._send("reqCurrentTime")

    def req_ids(self) -> bool:
        return self._send("reqIds", 1)

    def req_market_data_type(self, market_data_type: int) -> bool:
        return self._send("reqMarketDataType", market_data_type)

    def req_contract_details(self, req_id: int, contract: Contract) -> bool:
        return self._send("reqContractDetails", req_id, contract)

    def req_mkt_data(self, req_id: int, contract: Contract, generic_ticks: str = "") -> bool:
        return self._send("reqMktData", req_id, contract, generic_ticks, False, False, [])

    def cancel_mkt_data(self, req_id: int) -> bool:
        return self._send("cancelMktData", req_id)

    def req_real_time_bars(
        self, req_id: int, contract: Contract, what_to_show: str = "TRADES", use_rth: bool = False
    ) -> bool:
        return self._send("reqRealTimeBars", req_id, contract, 5, what_to_show, use_rth, [])

    def cancel_real_time_bars(self, req_id: int) -> bool:
        return self._send("cancelRealTimeBars", req_id)

    def req_historical_data(
        self,
        req_id: int,
        contract: Contract,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = False,
        format_date: int = 2,
    ) -> bool:
        return self._send(
            "reqHistoricalData",
            req_id,
            contract,
            end,
            duration,
            bar_size,
            what_to_show,
            int(use_rth),
            format_date,
            False,
            [],
            historical=_historical_key(contract, end, duration, bar_size, what_to_show, use_rth),
        )

    def historical_delay(
        self,
        contract: Contract,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = False,
    ) -> float:
        """Seconds until ``req_historical_data`` with these arguments would go out without waiting on IB's
        historical pacing (0: now)."""
        return self.governor.historical_delay(
            *_historical_key(contract, end, duration, bar_size, what_to_show, use_rth)
        )

    def place_order(self, order_id: int, contract: Contract, ticket: OrderTicket) -> bool:
        return self._send("placeOrder", order_id, contract, ticket.to_ibapi())

    def cancel_order(self, order_id: int) -> bool:
        return self._send("cancelOrder", order_id, OrderCancel())

    def req_open_orders(self) -> bool:
        return self._send("reqOpenOrders")

    def req_all_open_orders(self) -> bool:
        return self._send("reqAllOpenOrders")

    def req_executions(self, req_id: int, since: str = "", symbol: str = "", client_id: int = 0) -> bool:
        execution_filter = ExecutionFilter()
        execution_filter.time = since
        execution_filter.symbol = symbol
        execution_filter.clientId = client_id
        return self._send("reqExecutions", req_id, execution_filter)

    def req_positions(self) -> bool:
        return self._send("reqPositions")

    def req_account_updates(self, subscribe: bool, account: str) -> bool:
        return self._send("reqAccountUpdates", subscribe, account)

    def req_pnl(self, req_id: int, account: str) -> bool:
        return self._send("reqPnL", req_id, account, "")

    def cancel_pnl(self, req_id: int) -> bool:
        return self._send("cancelPnL", req_id)

    def req_pnl_single(self, req_id: int, account: str, con_id: int) -> bool:
        return self._send("reqPnLSingle", req_id, account, "", con_id)

    def cancel_pnl_single(self, req_id: int) -> bool:
        return self._send("cancelPnLSingle", req_id)


def send_without_delay(client: EClient) -> None:
    """Turn Nagle's algorithm off on ibapi's socket (ibapi leaves it on; asyncio clients such as ib_async, and ibsim,
    have it off).

    With it on, a request written while an earlier one is still unacknowledged waits for the gateway's ACK; a gateway
    with nothing to answer yet (a bracket's parent, sent with transmit=False, is answered only with its last child)
    delays that ACK by ~40 ms on Linux. So every bracket's children, the leg that transmits it included, reached the
    gateway 40-70 ms after its parent: most of routed → acknowledged (issue #24). Our requests are single messages, each
    one ``send``; nothing is gained by holding them back to coalesce."""
    conn = client.conn
    if conn is None or conn.socket is None:
        return
    try:
        conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as error:  # a socket closed under us: the run loop reports the disconnect
        log.debug("TCP_NODELAY not set on the IB socket", extra={"error": str(error)})


def _run(client: EClient) -> None:
    """ibapi's message loop. 10.x's loop goes on decoding messages still queued after a disconnect, but disconnect()
    has reset the server version to None by then, so the next one ends the loop with a TypeError (the connection is
    already closed and reported): that one is not an error of ours."""
    try:
        client.run()
    except TypeError as error:
        if client.isConnected():
            raise
        log.debug("ibapi's message loop ended after the disconnect", extra={"error": str(error)})


def _historical_key(
    contract: Contract, end: str, duration: str, bar_size: str, what_to_show: str, use_rth: bool
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(the contract's pacing key, the request's identity) as IB's historical pacing rules see them."""
    identity = (contract.symbol, contract.conId, end, duration, bar_size, what_to_show, use_rth)
    return (contract.symbol, contract.conId, what_to_show), identity
