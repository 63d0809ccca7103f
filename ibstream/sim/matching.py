"""Order matching (pure: no I/O, no wall clock); each fill is booked in the account's :mod:`ibstream.sim.ledger`.

The engine is the simulated broker. It keeps every order ever placed (but the untransmitted ones a
gateway restart loses), matches working orders
against the generated market one simulated second at a time, and produces immutable events that
the I/O layer turns into TWS messages for whichever client owns the order (or for nobody, if that
client is disconnected: the order still fills, which is the point of LEAN-IB #249).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ibstream.prices import on_tick
from ibstream.sim.ledger import CommissionSchedule, Ledger, Position
from ibstream.sim.market_view import MarketView, Quote
from ibstream.sim.order_types import (
    ADAPTIVE,
    adaptive_price,
    adaptive_priority,
    adaptive_refusal,
    ratchet,
    stop_reached,
    trail_offset,
)
from ibstream.sim.order_values import (
    TERMINAL,
    Event,
    Execution,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderSnapshot,
    OrderUpdated,
)

__all__ = [
    "SUPPORTED_ORDER_TYPES",
    "TERMINAL",
    "Event",
    "Execution",
    "MarketView",
    "MatchingEngine",
    "OrderCancelled",
    "OrderFilled",
    "OrderRejected",
    "OrderRequest",
    "OrderSnapshot",
    "OrderUpdated",
]

SUPPORTED_ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT", "TRAIL", "TRAIL LIMIT", "MOC", "LOC"})
#: Trailing stops: the stop follows the market (:mod:`ibstream.sim.order_types`).
TRAIL_TYPES = frozenset({"TRAIL", "TRAIL LIMIT"})
#: Orders that trade only in the closing auction: at the session's last second, at its closing (last) price.
CLOSE_TYPES = frozenset({"MOC", "LOC"})
#: MOC/LOC orders are refused, and may no longer be cancelled or modified, this long before the session's close
#: (IB's rule for NYSE markets: 15:50 ET, 12:50 on a half day; Nasdaq takes new ones until 15:55, ibsim does not).
CLOSE_ORDER_CUTOFF_SECONDS = 600
#: Order types that wait for a trigger (see :mod:`ibstream.sim.order_types` for the trailing stop).
STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL", "TRAIL LIMIT"})
#: OCA types under which a fill reduces the group's other orders instead of cancelling them.
OCA_REDUCE_TYPES = frozenset({2, 3})


@dataclass
class _Order:
    req: OrderRequest
    perm_id: int
    status: str
    created_at: float
    updated_at: float
    eligible_at: float
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    triggered: bool = False
    trail_stop: float | None = None
    executions: list[Execution] = field(default_factory=list)
    reject_code: int | None = None
    #: The gateway session (see ``Engine.new_gateway_session``) the order was placed in.
    gateway_session: int = 0
    #: The quantity first placed: an OCA reduction (ocaType 2, 3) is a share of it.
    original_quantity: float = 0.0

    def __post_init__(self) -> None:
        self.original_quantity = self.original_quantity or self.req.quantity

    @property
    def remaining(self) -> float:
        return max(self.req.quantity - self.filled, 0.0)

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot(
            request=self.req,
            perm_id=self.perm_id,
            status=self.status,
            filled=self.filled,
            remaining=self.remaining,
            avg_fill_price=self.avg_fill_price,
            last_fill_price=self.last_fill_price,
            created_at=self.created_at,
            updated_at=self.updated_at,
            executions=tuple(self.executions),
            reject_code=self.reject_code,
            trail_stop=self.trail_stop,
        )


class MatchingEngine:
    """The simulated broker's order book, matcher and ledger for one account."""

    def __init__(
        self,
        market: MarketView,
        account: str,
        *,
        con_ids: dict[str, int],
        commissions: CommissionSchedule | None = None,
        initial_cash: float = 1_000_000.0,
        partial_fill_max: float = 0.0,
        first_perm_id: int = 1_000_000_001,
    ) -> None:
        self._market = market
        self.account = account
        self._con_ids = dict(con_ids)
        self._commissions = commissions or CommissionSchedule()
        self.partial_fill_max = partial_fill_max
        self._orders: dict[tuple[int, int], _Order] = {}
        self._sequence: list[_Order] = []
        #: The orders not yet in a terminal state, in placement order: what matching scans (``_sequence`` keeps every
        #: order ever placed, so scanning it made a long backtest quadratic in its orders).
        self._open: list[_Order] = []
        self._next_perm = first_perm_id
        self._exec_seq = 0
        self._executions: list[Execution] = []
        self.ledger = Ledger(initial_cash)
        self._last_second: int | None = None
        #: A trading halt: orders are accepted and cancelled, nothing trades (the market goes on without us).
        self.halted = False
        #: Counts gateway restarts (see ``new_gateway_session``).
        self.gateway_session = 0

    @property
    def commissions(self) -> CommissionSchedule:
        """The commission schedule fills are charged by."""
        return self._commissions

    # -- order entry -------------------------------------------------------------------------------

    def place(self, req: OrderRequest, now: float, fill_delay: float = 0.0) -> list[Event]:
        """Accept, modify, hold or reject an order; may fill it at once (marketable orders)."""
        if self._last_second is None:
            # matching starts here: advance() then covers every second after this one
            self._last_second = int(now)
        key = (req.client_id, req.order_id)
        existing = self._orders.get(key)
        if existing is not None:
            refusal = _modification_refused(existing, req, self.gateway_session) or self._past_close_cutoff(
                req.order_type, now
            )
            if refusal is not None:
                # As at IB: the modification is refused, the order stays as it was.
                return [OrderRejected(req.client_id, req.order_id, *refusal)]
            return self._modify(existing, req, now)
        parent = self._orders.get((req.client_id, req.parent_id)) if req.parent_id else None
        problem = _invalid(req, parent_missing=bool(req.parent_id) and parent is None) or self._past_close_cutoff(
            req.order_type, now
        )
        if problem is not None:
            return [self._reject(req, now, *problem)]
        order = _Order(req, self._next_perm, "PendingSubmit", now, now, now + fill_delay)
        order.gateway_session = self.gateway_session
        self._next_perm += 1
        self._orders[key] = order
        self._sequence.append(order)
        self._open.append(order)
        if not req.transmit:
            # Held in the "TWS" until an order of the same bracket arrives with transmit=True.
            return []
        return self._transmit(order, parent, now, fill_delay)

    def _transmit(self, order: _Order, parent: _Order | None, now: float, fill_delay: float) -> list[Event]:
        """Release an order, or with its parent the whole held bracket, to the market."""
        group = [order]
        if parent is not None:
            root = parent
            group = [root] + [o for o in self._children(root) if o.status == "PendingSubmit"]
        events: list[Event] = []
        for o in group:
            if o.status != "PendingSubmit":
                continue
            o.status = self._working_status(o, now)
            o.updated_at = now
            o.eligible_at = max(o.eligible_at, now + fill_delay)
            events.append(OrderUpdated(o.snapshot()))
        events += self._match_second(int(now), only=group)
        return events

    def cancel(self, client_id: int, order_id: int, now: float) -> list[Event]:
        """Cancel an order of ``client_id``: 10147 if unknown, 10148 if already done."""
        order = self._orders.get((client_id, order_id))
        if order is None:
            return [
                OrderRejected(
                    client_id, order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found."
                )
            ]
        if order.status in TERMINAL:
            return [
                OrderRejected(
                    client_id,
                    order_id,
                    10148,
                    f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}.",
                )
            ]
        if self._past_close_cutoff(order.req.order_type, now):
            return [OrderRejected(client_id, order_id, 161, _CLOSE_CUTOFF_CANCEL)]
        return self._cancel_tree(order, now, "")

    def new_gateway_session(self) -> None:
        """The gateway restarted: the orders placed so far belong to its earlier session."""
        self.gateway_session += 1

    def discard_untransmitted(self) -> list[OrderSnapshot]:
        """Forget every order still held untransmitted (``PendingSubmit``): those live only in the gateway process,
        so a gateway restart loses them and IB's servers never knew them. Returns what was forgotten."""
        held = [o for o in self._sequence if o.status == "PendingSubmit"]
        if not held:
            return []
        self._sequence = [o for o in self._sequence if o.status != "PendingSubmit"]
        self._open = [o for o in self._open if o.status != "PendingSubmit"]
        for o in held:
            del self._orders[(o.req.client_id, o.req.order_id)]
        return [o.snapshot() for o in held]

    def cancel_all(self, now: float) -> list[Event]:
        """``reqGlobalCancel``: every active order of every client."""
        events: list[Event] = []
        for o in self._sequence:
            if o.status not in TERMINAL:
                events += self._cancel_tree(o, now, "")
        return events

    # -- matching ---------------------------------------------------------------------------------

    def advance(self, now: float) -> list[Event]:
        """Match working orders for every simulated second since the previous call."""
        second = int(now)
        last = self._last_second
        self._last_second = second
        if self.halted:
            return []  # the halted seconds pass without trading; none is matched later
        if not any(o.status != "PendingSubmit" for o in self._open_orders()):
            return []
        start = second if last is None else last + 1
        if second - start > 86_400:  # a clock jump of days: only the present matters
            start = second - 86_400
        events: list[Event] = []
        for s in range(start, second + 1):
            if self._market.in_session(s):
                events += self._match_second(s)
        return events

    def _match_second(self, s: int, only: list[_Order] | None = None) -> list[Event]:
        events: list[Event] = []
        if self.halted or not self._market.in_session(s):
            return events
        candidates = only if only is not None else list(self._open_orders())
        # One quote per symbol and second, not one per order: a market's second does not change while it is matched,
        # and computing a quote is most of the cost when many orders rest (ibsim's pump matches every tick).
        quotes: dict[str, Quote] = {}
        for o in candidates:
            if o.status == "PreSubmitted" and not self._waiting_for_parent(o):
                o.status, o.updated_at = "Submitted", float(s)
                events.append(OrderUpdated(o.snapshot()))
            # second s covers [s, s+1): an order eligible anywhere inside it may trade in it
            if o.status != "Submitted" or o.eligible_at >= s + 1:
                continue
            q = quotes.get(o.req.symbol)
            if q is None:
                q = quotes[o.req.symbol] = self._market.quote(o.req.symbol, s)
            price = self._fill_price(o, q)
            if price is None:
                if o.req.order_type in CLOSE_TYPES and self._closing_second(s):
                    events += self._cancel_tree(o, float(s), "")  # a LOC the close did not reach expires
                continue
            qty = o.remaining
            if self.partial_fill_max > 0:
                qty = min(qty, self.partial_fill_max)
            events += self._fill(o, qty, price, float(s))
        return events

    def _fill_price(self, o: _Order, q: Quote) -> float | None:
        buy = o.req.action == "BUY"
        kind = o.req.order_type
        if kind in CLOSE_TYPES:
            return self._close_price(o, q)
        if kind in STOP_TYPES and not o.triggered:
            o.triggered = self._stop_triggers(o, q.last)
            if not o.triggered:
                return None
        touch = q.ask if buy else q.bid
        if o.req.algo_strategy == ADAPTIVE:
            touch = adaptive_price(o.req.action, q.bid, q.ask, adaptive_priority(o.req.algo_params))
        if kind in {"MKT", "STP", "TRAIL"}:
            return touch
        lmt = _limit_of(o.req, o.trail_stop)
        if (buy and touch <= lmt + 1e-9) or (not buy and touch >= lmt - 1e-9):
            return touch
        return None

    def _closing_second(self, s: int) -> bool:
        """Whether ``s`` is the last second of its session (the closing auction)."""
        session = self._market.session_at(s)
        return session is not None and s == session.close - 1

    def _close_price(self, o: _Order, q: Quote) -> float | None:
        """A MOC's or LOC's fill price: the session's closing price (the last trade of its last second), for a LOC
        only within its limit; None before the close."""
        if not self._closing_second(q.time):
            return None
        if o.req.order_type == "LOC":
            lmt = o.req.lmt_price or 0.0
            if (q.last > lmt + 1e-9) if o.req.action == "BUY" else (q.last < lmt - 1e-9):
                return None
        return q.last

    def _past_close_cutoff(self, order_type: str, now: float) -> tuple[int, str] | None:
        """Why a MOC/LOC order may not be placed, modified or cancelled now: the session closes within the cut-off."""
        if order_type not in CLOSE_TYPES:
            return None
        session = self._market.session_at(now)
        if session is None or now < session.close - CLOSE_ORDER_CUTOFF_SECONDS:
            return None
        return 201, f"Order rejected - reason:{order_type} orders are not accepted after {_CLOSE_CUTOFF_TEXT}"

    @staticmethod
    def _stop_triggers(o: _Order, last: float) -> bool:
        """Whether a stop triggers at ``last``; a trailing stop starts, or ratchets after the check."""
        if o.req.order_type not in TRAIL_TYPES:
            return stop_reached(o.req.action, o.req.aux_price or 0.0, last)
        offset = trail_offset(last, o.req.aux_price, o.req.trailing_percent)
        if o.trail_stop is None:
            o.trail_stop = o.req.trail_stop_price
            if o.trail_stop is None:
                o.trail_stop = ratchet(o.req.action, None, last, offset)
        if stop_reached(o.req.action, o.trail_stop, last):
            return True
        o.trail_stop = ratchet(o.req.action, o.trail_stop, last, offset)
        return False

    def _fill(self, o: _Order, qty: float, price: float, now: float) -> list[Event]:
        comm_before = self._commissions.for_order(o.filled, o.filled * o.avg_fill_price)
        cum = o.filled + qty
        avg = (o.filled * o.avg_fill_price + qty * price) / cum
        comm_after = self._commissions.for_order(cum, cum * avg)
        commission = round(comm_after - comm_before, 6)
        o.filled, o.avg_fill_price, o.last_fill_price = cum, round(avg, 6), price
        o.updated_at = now
        if o.remaining <= 1e-9:
            o.status = "Filled"
        signed = qty if o.req.action == "BUY" else -qty
        realized = self.ledger.book(o.req.symbol, o.req.con_id, signed, price, commission)
        self._exec_seq += 1
        ex = Execution(
            exec_id=f"{o.perm_id:08x}.{self._exec_seq:08x}.01.01",
            order_id=o.req.order_id,
            client_id=o.req.client_id,
            perm_id=o.perm_id,
            symbol=o.req.symbol,
            con_id=o.req.con_id,
            side="BOT" if o.req.action == "BUY" else "SLD",
            shares=qty,
            price=price,
            time=now,
            cum_qty=cum,
            avg_price=o.avg_fill_price,
            order_ref=o.req.order_ref,
            account=o.req.account or self.account,
            commission=commission,
            realized_pnl=realized,
        )
        o.executions.append(ex)
        self._executions.append(ex)
        events: list[Event] = [OrderFilled(o.snapshot(), ex)]
        if o.req.oca_group:
            events += self._oca_after_fill(o, now)
        if o.status == "Filled":
            events += self._after_complete_fill(o, now)
        return events

    def _after_complete_fill(self, o: _Order, now: float) -> list[Event]:
        events: list[Event] = []
        # Bracket: children wake up once the parent is fully filled.
        for child in self._children(o):
            if child.status == "PreSubmitted" and self._market.in_session(now):
                child.status, child.updated_at = "Submitted", now
                events.append(OrderUpdated(child.snapshot()))
        # One-cancels-all: bracket siblings (explicit OCA groups were settled by the fill: _oca_after_fill).
        for other in self._oca_peers(o, oca=False):
            events += self._cancel_tree(other, now, "OCA")
        return events

    def _oca_after_fill(self, o: _Order, now: float) -> list[Event]:
        """A fill of an order of an explicit OCA group: the group's other orders are cancelled (ocaType 1, or unset),
        or reduced in proportion to the share of ``o`` filled so far (2, 3), and cancelled once nothing is left."""
        events: list[Event] = []
        for peer in self._oca_peers(o, bracket=False):
            if o.req.oca_type not in OCA_REDUCE_TYPES:
                events += self._cancel_tree(peer, now, "OCA")
                continue
            left = round(peer.original_quantity * (1.0 - o.filled / o.req.quantity))
            if left <= peer.filled + 1e-9:
                events += self._cancel_tree(peer, now, "OCA")
            elif left < peer.req.quantity:
                peer.req, peer.updated_at = replace(peer.req, quantity=float(left)), now
                events.append(OrderUpdated(peer.snapshot()))
        return events

    # -- ledger -----------------------------------------------------------------------------------

    def positions(self) -> list[Position]:
        """Every contract ever traded, including flat ones (IB keeps reporting them as 0)."""
        return self.ledger.positions()

    def account_values(self, marks: Callable[[str], float]) -> dict[str, float]:
        """Account values that follow fills; ``marks`` gives the current price of a symbol."""
        return self.ledger.account_values(marks)

    # -- views ------------------------------------------------------------------------------------

    def orders(self) -> list[OrderSnapshot]:
        """Every order ever placed, in placement order."""
        return [o.snapshot() for o in self._sequence]

    def order(self, client_id: int, order_id: int) -> OrderSnapshot | None:
        """One order by its IB key."""
        o = self._orders.get((client_id, order_id))
        return o.snapshot() if o else None

    def executions(self) -> list[Execution]:
        """Every execution, oldest first."""
        return list(self._executions)

    def max_order_id(self) -> int:
        """Highest order id ever used by any client (0 if none)."""
        return max((o.req.order_id for o in self._sequence), default=0)

    # -- helpers ----------------------------------------------------------------------------------

    def _reject(self, req: OrderRequest, now: float, code: int, message: str) -> OrderRejected:
        order = _Order(req, self._next_perm, "Inactive", now, now, now, reject_code=code)
        self._next_perm += 1
        self._orders[(req.client_id, req.order_id)] = order
        self._sequence.append(order)
        return OrderRejected(req.client_id, req.order_id, code, message, order.snapshot())

    def record_rejection(self, req: OrderRequest, now: float, code: int, message: str) -> OrderRejected:
        """Record an order refused before matching (fault injection) so the book stays complete."""
        return self._reject(req, now, code, message)

    def _modify(self, o: _Order, req: OrderRequest, now: float) -> list[Event]:
        o.req = replace(req, transmit=o.req.transmit or req.transmit)
        o.updated_at = now
        if o.req.quantity <= o.filled:
            o.status = "Filled"
        events: list[Event] = [OrderUpdated(o.snapshot())]
        if o.status == "Submitted":
            events += self._match_second(int(now), only=[o])
        return events

    def _working_status(self, o: _Order, now: float) -> str:
        if self._waiting_for_parent(o) or not self._market.in_session(now):
            return "PreSubmitted"
        return "Submitted"

    def _waiting_for_parent(self, o: _Order) -> bool:
        if not o.req.parent_id:
            return False
        parent = self._orders.get((o.req.client_id, o.req.parent_id))
        return parent is not None and parent.status != "Filled"

    def _open_orders(self) -> list[_Order]:
        """The orders still open (terminal ones are dropped here: a terminal order never reopens)."""
        self._open = [o for o in self._open if o.status not in TERMINAL]
        return self._open

    def _children(self, o: _Order) -> list[_Order]:
        return [c for c in self._sequence if c.req.client_id == o.req.client_id and c.req.parent_id == o.req.order_id]

    def _oca_peers(self, o: _Order, *, bracket: bool = True, oca: bool = True) -> list[_Order]:
        """The active orders one-cancels-all ties to ``o``: its bracket siblings, the rest of its OCA group."""
        peers: list[_Order] = []
        for other in self._open_orders():
            if other is o or other.status in TERMINAL or other.req.client_id != o.req.client_id:
                continue
            same_bracket = bracket and bool(o.req.parent_id) and other.req.parent_id == o.req.parent_id
            same_oca = oca and bool(o.req.oca_group) and other.req.oca_group == o.req.oca_group
            if same_bracket or same_oca:
                peers.append(other)
        return peers

    def _cancel_tree(self, o: _Order, now: float, reason: str) -> list[Event]:
        events: list[Event] = []
        if o.status not in TERMINAL:
            o.status, o.updated_at = "Cancelled", now
            events.append(OrderCancelled(o.snapshot(), reason))
        for child in self._children(o):
            if child.status not in TERMINAL:
                events += self._cancel_tree(child, now, reason)
        return events


_CLOSE_CUTOFF_TEXT = f"{CLOSE_ORDER_CUTOFF_SECONDS // 60} minutes before the close"
_CLOSE_CUTOFF_CANCEL = f"Cancel attempted when order is not in a cancellable state: MOC/LOC within {_CLOSE_CUTOFF_TEXT}"


def _modification_refused(o: _Order, req: OrderRequest, gateway_session: int = 0) -> tuple[int, str] | None:
    """Why IB refuses a placeOrder that re-uses a live id (a modification), or None: 104 for a filled order, 103 for
    one otherwise ended (the id is spent), 105 when it changes what the order is (contract, side, type), and the new
    terms' own problem (price off tick, no limit) as for a new order. An ended order of an earlier gateway session
    (before a restart) is no longer the gateway's to modify: its id re-used is a duplicate, 103 (LEAN-IB #242)."""
    if o.status in TERMINAL and o.gateway_session != gateway_session:
        return 103, "Duplicate order id"
    if o.status == "Filled":
        return 104, "Can't modify a filled order."
    if o.status in TERMINAL:
        return 103, "Duplicate order id"
    if (o.req.con_id, o.req.action, o.req.order_type) != (req.con_id, req.action, req.order_type):
        return 105, "Order being modified does not match original order."
    if req.quantity < o.filled:
        return 201, f"Order rejected - reason:The new quantity {req.quantity:g} is below the filled {o.filled:g}"
    return _invalid(req, parent_missing=False)


def _invalid(req: OrderRequest, parent_missing: bool) -> tuple[int, str] | None:
    """Why IB would refuse a new order at once (code, message), or None."""
    if req.order_type not in SUPPORTED_ORDER_TYPES:
        return 201, f"Order rejected - reason:Unsupported order type {req.order_type}"
    if req.quantity <= 0 or math.isnan(req.quantity):
        return 434, "The order size cannot be zero."
    if req.order_type in {"LMT", "STP LMT", "LOC"} and req.lmt_price is None:
        return 201, "Order rejected - reason:Missing limit price"
    if req.order_type in {"STP", "STP LMT"} and req.aux_price is None:
        return 201, "Order rejected - reason:Missing stop price"
    problem = _trail_or_algo_problem(req)
    if problem is not None:
        return 201, f"Order rejected - reason:{problem}"
    if any(price is not None and not on_tick(price) for price in (req.lmt_price, req.aux_price, req.trail_stop_price)):
        return 110, "The price does not conform to the minimum price variation for this contract."
    if parent_missing:
        return 201, "Order rejected - reason:Parent order is not found"
    return None


def _limit_of(req: OrderRequest, trail_stop: float | None) -> float:
    """An order's limit: a triggered TRAIL LIMIT's is its stop less (SELL) or plus (BUY) its limit offset, unless it
    gave its limit price itself; any other order's is its limit price."""
    if req.order_type == "TRAIL LIMIT" and req.lmt_price_offset is not None and trail_stop is not None:
        offset = req.lmt_price_offset if req.action == "BUY" else -req.lmt_price_offset
        return round(trail_stop + offset, 4)
    return req.lmt_price or 0.0


def _trail_or_algo_problem(req: OrderRequest) -> str | None:
    """Why IB refuses a trailing stop's trail or an order's algo, or None."""
    if req.order_type == "TRAIL LIMIT" and req.lmt_price is None and req.lmt_price_offset is None:
        return "A trailing stop limit needs a limit price offset (lmtPriceOffset) or a limit price"
    if req.order_type in TRAIL_TYPES and (req.aux_price is None) == (req.trailing_percent is None):
        return "A trailing stop needs a trailing amount or a trailing percent, not both"
    if req.trailing_percent is not None and not 0 < req.trailing_percent < 100:
        return f"Invalid trailing percent {req.trailing_percent:g}"
    if req.algo_strategy and req.algo_strategy != ADAPTIVE:
        return f"Unsupported algo {req.algo_strategy}"
    if req.algo_strategy:
        return adaptive_refusal(req.order_type, req.algo_params)
    return None
