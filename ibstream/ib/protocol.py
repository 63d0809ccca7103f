"""The IB session as the deployables see it: a Protocol that ``IbSession`` (ibapi) implements, and the tests' one
fake session too (``tests/fake_ib.py``).

Events arrive on ``events`` (a thread-safe queue) and are handled by the deployable's own loop; every request
returns False when it could not be sent (not connected, or the socket broke while sending).
"""

from __future__ import annotations

import queue
from typing import Protocol

from ibapi.contract import Contract

from ibstream.ib import events as ib
from ibstream.ib.session import OrderTicket


class Session(Protocol):
    """One connection to IB Gateway/TWS with one client id; each ``connect()`` starts a new generation."""

    client_id: int
    events: queue.Queue[ib.IbEvent]

    def connect(self, timeout: float = 10.0) -> ib.Connected:
        """Connect and complete the handshake; raise ``IbConnectError`` otherwise."""
        ...

    def disconnect(self) -> None: ...

    # --- market data --------------------------------------------------------------------------------------------

    def req_current_time(self) -> bool: ...

    def req_market_data_type(self, market_data_type: int) -> bool: ...

    def req_contract_details(self, req_id: int, contract: Contract) -> bool: ...

    def req_mkt_data(self, req_id: int, contract: Contract, generic_ticks: str = "") -> bool: ...

    def cancel_mkt_data(self, req_id: int) -> bool: ...

    def req_real_time_bars(
        self, req_id: int, contract: Contract, what_to_show: str = "TRADES", use_rth: bool = False
    ) -> bool: ...

    def cancel_real_time_bars(self, req_id: int) -> bool: ...

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
    ) -> bool: ...

    def historical_delay(
        self,
        contract: Contract,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        use_rth: bool = False,
    ) -> float: ...

    # --- orders ---------------------------------------------------------------------------------------------------

    def place_order(self, order_id: int, contract: Contract, ticket: OrderTicket) -> bool: ...

    def cancel_order(self, order_id: int) -> bool: ...

    def req_all_open_orders(self) -> bool: ...

    def req_executions(self, req_id: int, since: str = "", symbol: str = "", client_id: int = 0) -> bool: ...

    def req_positions(self) -> bool: ...

    # --- account ----------------------------------------------------------------------------------------------------

    def req_account_updates(self, subscribe: bool, account: str) -> bool:
        """reqAccountUpdates: updateAccountValue/updatePortfolio rounds, each ended by accountDownloadEnd."""
        ...

    def req_pnl(self, req_id: int, account: str) -> bool: ...

    def cancel_pnl(self, req_id: int) -> bool: ...

    def req_pnl_single(self, req_id: int, account: str, con_id: int) -> bool: ...

    def cancel_pnl_single(self, req_id: int) -> bool: ...
