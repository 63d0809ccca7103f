"""The simulated broker's order and event values: a parsed ``placeOrder``, a fill, an order's snapshot, and the events
the matching engine (:mod:`ibstream.sim.matching`) emits for the I/O layer to turn into TWS messages. Immutable, no
logic."""

from __future__ import annotations

from dataclasses import dataclass

#: Statuses after which an order never changes again.
TERMINAL = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A parsed ``placeOrder`` (only the fields ibsim acts on)."""

    order_id: int
    client_id: int
    con_id: int
    symbol: str
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    #: OCA group behaviour (``ocaType``): 1 a fill cancels the group's other orders, 2 and 3 reduce them by the
    #: filled quantity (2 with block, 3 without: the same here); 0 unset, as 1.
    oca_type: int = 0
    #: TRAIL: the initial stop (None: one trail from the market) and the trail in percent (None: ``aux_price`` is
    #: the trail amount).
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    #: IB algo (``Adaptive`` only) and its parameters, as (tag, value).
    algo_strategy: str = ""
    algo_params: tuple[tuple[str, str], ...] = ()
    #: TRAIL LIMIT: the limit's offset from the stop once triggered (lmtPriceOffset); None: ``lmt_price`` is the limit.
    lmt_price_offset: float | None = None


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill, as reported by ``execDetails`` and ``commissionReport``."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    symbol: str
    con_id: int
    side: str  # BOT / SLD, as IB reports it
    shares: float
    price: float
    time: float  # simulated epoch seconds
    cum_qty: float
    avg_price: float
    order_ref: str
    account: str
    commission: float
    #: ``None`` for opening trades (IB sends UNSET_DOUBLE there).
    realized_pnl: float | None
    exchange: str = "ISLAND"


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """Immutable view of an order at one moment; what tests and the control endpoint see."""

    request: OrderRequest
    perm_id: int
    status: str
    filled: float
    remaining: float
    avg_fill_price: float
    last_fill_price: float
    created_at: float
    updated_at: float
    executions: tuple[Execution, ...] = ()
    why_held: str = ""
    reject_code: int | None = None
    #: A TRAIL order's current stop (None before it starts working or for other orders).
    trail_stop: float | None = None

    @property
    def order_id(self) -> int:
        """IB order id (unique per client id)."""
        return self.request.order_id

    @property
    def client_id(self) -> int:
        """API client that placed the order."""
        return self.request.client_id

    @property
    def order_ref(self) -> str:
        """Caller's reference, echoed by IB in openOrder and execDetails."""
        return self.request.order_ref

    @property
    def is_active(self) -> bool:
        """Not yet in a terminal state."""
        return self.status not in TERMINAL


@dataclass(frozen=True, slots=True)
class OrderUpdated:
    """Order state changed (acknowledged, activated, modified): openOrder + orderStatus."""

    order: OrderSnapshot


@dataclass(frozen=True, slots=True)
class OrderFilled:
    """An execution happened: execDetails, orderStatus, openOrder, commissionReport."""

    order: OrderSnapshot
    execution: Execution


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """Order cancelled (by the client or by OCA/bracket logic): orderStatus + error 202."""

    order: OrderSnapshot
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderRejected:
    """Order refused: an IB error code for ``order_id``; ``order`` is set when it was recorded."""

    client_id: int
    order_id: int
    code: int
    message: str
    order: OrderSnapshot | None = None


Event = OrderUpdated | OrderFilled | OrderCancelled | OrderRejected
