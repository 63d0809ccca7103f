"""The one fake IB session of the tests: implements ``ibstream.ib.protocol.Session`` without a gateway.

Requests are recorded (and return ``connected``); the test puts IB's events on ``events`` itself. ``connect()``
answers with ``accounts`` under a new generation, or raises ``IbConnectError`` while ``refuse_connect`` is set.
"""

from __future__ import annotations

import queue
from typing import Any

from ibapi.contract import Contract

from ibstream.ib import events as ib
from ibstream.ib.session import IbConnectError, OrderTicket


class FakeIbSession:
    def __init__(self, client_id: int = 0, accounts: tuple[str, ...] = ("DU1",), next_valid_id: int = 1) -> None:
        self.client_id = client_id
        self.accounts = accounts
        self.next_valid_id = next_valid_id
        self.events: queue.Queue[ib.IbEvent] = queue.Queue()
        self.connected = True
        self.refuse_connect = False
        self.generation = 0
        #: Every request that went out, by method name.
        self.requests: list[tuple[str, tuple[Any, ...]]] = []
        #: cancelOrder ids that went out (only while connected).
        self.cancelled: list[int] = []
        #: reqHistoricalData as (req_id, end, duration).
        self.historical: list[tuple[int, str, str]] = []
        self.placed: list[tuple[int, OrderTicket]] = []

    def connect(self, timeout: float = 10.0) -> ib.Connected:
        if self.refuse_connect:
            raise IbConnectError(f"fake gateway refused the connection (timeout {timeout:g}s)")
        self.generation += 1
        self.connected = True
        connected = ib.Connected(self.next_valid_id, self.accounts, 178, self.generation)
        self.events.put(connected)
        return connected

    def disconnect(self) -> None:
        self.connected = False

    def _send(self, method: str, *args: Any) -> bool:
        if self.connected:
            self.requests.append((method, args))
        return self.connected

    def req_current_time(self) -> bool:
        return self._send("reqCurrentTime")

    def req_market_data_type(self, market_data_type: int) -> bool:
        return self._send("reqMarketDataType", market_data_type)

    def req_contract_details(self, req_id: int, contract: Contract) -> bool:
        return self._send("reqContractDetails", req_id, contract.symbol)

    def req_mkt_data(self, req_id: int, contract: Contract, generic_ticks: str = "") -> bool:
        return self._send("reqMktData", req_id, contract.symbol)

    def cancel_mkt_data(self, req_id: int) -> bool:
        return self._send("cancelMktData", req_id)

    def req_real_time_bars(
        self, req_id: int, contract: Contract, what_to_show: str = "TRADES", use_rth: bool = False
    ) -> bool:
        return self._send("reqRealTimeBars", req_id, contract.symbol)

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
        self.historical.append((req_id, end, duration))
        return self._send("reqHistoricalData", req_id, contract.symbol, end, duration)

    def historical_delay(
        self,
        contract: Contract,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = False,
    ) -> float:
        return 0.0

    def place_order(self, order_id: int, contract: Contract, ticket: OrderTicket) -> bool:
        if self.connected:
            self.placed.append((order_id, ticket))
        return self._send("placeOrder", order_id, contract.symbol)

    def cancel_order(self, order_id: int) -> bool:
        if self.connected:
            self.cancelled.append(order_id)
        return self._send("cancelOrder", order_id)

    def req_all_open_orders(self) -> bool:
        return self._send("reqAllOpenOrders")

    def req_executions(self, req_id: int, since: str = "", symbol: str = "", client_id: int = 0) -> bool:
        return self._send("reqExecutions", req_id, symbol)

    def req_positions(self) -> bool:
        return self._send("reqPositions")

    def req_account_updates(self, subscribe: bool, account: str) -> bool:
        return self._send("reqAccountUpdates", subscribe, account)

    def req_pnl(self, req_id: int, account: str) -> bool:
        return self._send("reqPnL", req_id, account)

    def cancel_pnl(self, req_id: int) -> bool:
        return self._send("cancelPnL", req_id)

    def req_pnl_single(self, req_id: int, account: str, con_id: int) -> bool:
        return self._send("reqPnLSingle", req_id, account, con_id)

    def cancel_pnl_single(self, req_id: int) -> bool:
        return self._send("cancelPnLSingle", req_id)
