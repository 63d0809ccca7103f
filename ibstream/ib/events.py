"""Immutable events translated from ibapi's EWrapper callbacks.

The ibapi reader thread only builds these and puts them on a queue; all business logic runs on the consumer's
own thread, so no deployable state is ever touched from ibapi's thread.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ibstream.ib.codes import CodeKind


@dataclass(frozen=True, slots=True)
class Connected:
    """Handshake complete: both nextValidId and managedAccounts arrived."""

    next_valid_id: int
    accounts: tuple[str, ...]
    server_version: int
    generation: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The socket closed (gateway restart, network, or our own disconnect)."""

    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class IbError:
    """IB's error callback: code and message verbatim, with what the code means for us."""

    req_id: int
    code: int
    message: str
    kind: CodeKind


@dataclass(frozen=True, slots=True)
class NextValidId:
    order_id: int


@dataclass(frozen=True, slots=True)
class TickPrice:
    req_id: int
    tick_type: int
    price: float


@dataclass(frozen=True, slots=True)
class TickSize:
    req_id: int
    tick_type: int
    size: float


@dataclass(frozen=True, slots=True)
class TickString:
    req_id: int
    tick_type: int
    value: str


@dataclass(frozen=True, slots=True)
class MarketDataType:
    req_id: int
    market_data_type: int


@dataclass(frozen=True, slots=True)
class RealtimeBar:
    req_id: int
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


@dataclass(frozen=True, slots=True)
class HistoricalBar:
    req_id: int
    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


@dataclass(frozen=True, slots=True)
class HistoricalEnd:
    req_id: int
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class CurrentTime:
    time: int


@dataclass(frozen=True, slots=True)
class OrderStatusUpdate:
    order_id: int
    status: str
    filled: float
    remaining: float
    avg_fill_price: float
    perm_id: int
    parent_id: int
    last_fill_price: float
    client_id: int
    why_held: str
    #: When the message reached us (ibapi's reader thread builds the event on arrival): the time IB's answer is
    #: known, recorded as its order event's time rather than the later moment the executor's loop gets to it.
    received_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True, slots=True)
class OpenOrder:
    order_id: int
    perm_id: int
    parent_id: int
    symbol: str
    con_id: int
    account: str
    action: str
    quantity: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    order_ref: str
    transmit: bool
    status: str
    #: The API client that placed it (reqAllOpenOrders reports other clients' orders, whose ids may collide).
    client_id: int = 0
    time_in_force: str = ""


@dataclass(frozen=True, slots=True)
class OpenOrderEnd:
    pass


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    req_id: int
    exec_id: str
    order_id: int
    perm_id: int
    symbol: str
    con_id: int
    account: str
    side: str
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str
    time: str
    #: The API client whose order traded (IB order ids are only unique per client id).
    client_id: int = 0


@dataclass(frozen=True, slots=True)
class ExecutionEnd:
    req_id: int


@dataclass(frozen=True, slots=True)
class CommissionReport:
    exec_id: str
    commission: float
    currency: str
    realized_pnl: float | None


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    account: str
    symbol: str
    con_id: int
    quantity: float
    avg_cost: float


@dataclass(frozen=True, slots=True)
class PositionEnd:
    pass


@dataclass(frozen=True, slots=True)
class ContractDetail:
    req_id: int
    symbol: str
    con_id: int
    primary_exchange: str
    min_tick: float


@dataclass(frozen=True, slots=True)
class ContractDetailsEnd:
    req_id: int


@dataclass(frozen=True, slots=True)
class AccountValue:
    """updateAccountValue (reqAccountUpdates): one key in one currency (``BASE``: the total in the base currency);
    ``value`` is IB's text, not always a number."""

    key: str
    value: str
    currency: str
    account: str


@dataclass(frozen=True, slots=True)
class PortfolioUpdate:
    """updatePortfolio (reqAccountUpdates): one position marked by IB."""

    account: str
    symbol: str
    con_id: int
    position: float
    market_price: float
    market_value: float
    avg_cost: float
    unrealized_pnl: float | None
    realized_pnl: float | None


@dataclass(frozen=True, slots=True)
class AccountDownloadEnd:
    """accountDownloadEnd: a full round of account values and portfolio has arrived."""

    account: str


@dataclass(frozen=True, slots=True)
class AccountPnL:
    """pnl (reqPnL): the account's P&L today; None where IB left a number unset."""

    req_id: int
    daily: float | None
    unrealized: float | None
    realized: float | None


@dataclass(frozen=True, slots=True)
class PositionPnL:
    """pnlSingle (reqPnLSingle): one contract's position, P&L today and market value."""

    req_id: int
    position: float
    daily: float | None
    unrealized: float | None
    realized: float | None
    value: float | None


IbEvent = (
    Connected
    | Disconnected
    | IbError
    | NextValidId
    | TickPrice
    | TickSize
    | TickString
    | MarketDataType
    | RealtimeBar
    | HistoricalBar
    | HistoricalEnd
    | CurrentTime
    | OrderStatusUpdate
    | OpenOrder
    | OpenOrderEnd
    | ExecutionDetail
    | ExecutionEnd
    | CommissionReport
    | PositionUpdate
    | PositionEnd
    | ContractDetail
    | ContractDetailsEnd
    | AccountValue
    | PortfolioUpdate
    | AccountDownloadEnd
    | AccountPnL
    | PositionPnL
)
