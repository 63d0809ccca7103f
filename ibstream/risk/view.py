"""The risk view: what the gate knows about the account and the market, folded from topics (quotes, positions,
executions, kill switches, decisions, routed orders, order events, account states), and the limits it judges by.

Account-level exposure counts three things per symbol: the filled position (positions.v1), working entries at IB
(a parent leg with an order event that is not terminal: its remaining quantity) and approved entries IB has not
acknowledged yet (approved here or routed, no order event yet: the full quantity). Filled shares leave the entry
and stay pending until a position record of their symbol stamped after the fill includes them (``_ExposureBook._fill``),
so a fill counts once, never zero times, whichever record is read first. Protective legs (stop loss, take profit) are
not counted: they only ever reduce a position.

Everything a decision reads is kept as running aggregates, updated as records arrive (a quote moves the exposure of
its symbol only), so a decision costs the same with one symbol held or five hundred.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ibstream.config import Settings
from ibstream.contracts import (
    AccountState,
    ControlCommand,
    Execution,
    OrderEvent,
    OrderIntent,
    Position,
    Quote,
    RiskDecision,
    RoutedOrder,
)
from ibstream.contracts.enums import OrderLeg, OrderStatus, OrderType, Side
from ibstream.risk.throttle import ApprovalWindow
from ibstream.trading_states import ACCOUNT, ACCOUNT_TARGETS, ScopeState, TradingStates

log = logging.getLogger(__name__)

#: How much earlier than a fill's event a position record may be stamped and still include it: IB can report the
#: position a moment before the order status that carries the fill.
SETTLE_SLACK = timedelta(seconds=2)

#: Order statuses after which an order no longer works at IB.
TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR})

#: Kill-switch targets that stop every symbol; any other target names one symbol.
GLOBAL_TARGETS = ACCOUNT_TARGETS

#: The order-rate throttle's window: a minute of market time (see ``decide``).
THROTTLE_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class RiskLimits:
    """The gate's limits, taken from settings (validated there at startup)."""

    max_position: float
    max_gross_exposure: float
    max_order_notional: float
    min_stop_pct: float
    max_stop_pct: float
    account_equity: float
    risk_per_trade_pct: float
    max_orders_per_minute: int
    price_band_pct: float
    quote_max_age_seconds: float
    daily_loss_limit: float
    account_state_max_age_seconds: float = 120.0
    reduce_opposite: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        return cls(
            max_position=settings.risk.max_position,
            max_gross_exposure=settings.risk.max_gross_exposure,
            max_order_notional=settings.risk.max_order_notional,
            min_stop_pct=settings.risk.min_stop_pct,
            max_stop_pct=settings.risk.max_stop_pct,
            account_equity=settings.risk.account_equity,
            risk_per_trade_pct=settings.risk.per_trade_pct,
            max_orders_per_minute=settings.risk.max_orders_per_minute,
            price_band_pct=settings.risk.price_band_pct,
            quote_max_age_seconds=settings.risk.quote_max_age_seconds,
            daily_loss_limit=settings.risk.daily_loss_limit,
            account_state_max_age_seconds=settings.risk.account_state_max_age_seconds,
            reduce_opposite=settings.risk.reduce_opposite,
        )


def mark_price(position: Position, quote: Quote | None) -> float:
    """What a position is worth per share now: last or mid of the quote, else IB's mark, else its cost."""
    quoted = _quote_mark(quote)
    if quoted is not None:
        return quoted
    if position.market_price is not None and position.market_price > 0:
        return position.market_price
    return position.avg_cost


def order_price(order_type: OrderType, limit_price: float | None, stop_price: float | None) -> float | None:
    """The price an order names (its limit, else its stop), None for a market order (MKT, and MOC: priced by the
    quote as a market order is)."""
    if order_type in (OrderType.LMT, OrderType.STP_LMT, OrderType.LOC) and limit_price is not None:
        return limit_price
    if order_type is OrderType.STP and stop_price is not None:
        return stop_price
    return None


@dataclass
class _Entry:
    """An approved entry not yet ended: its outstanding quantity, and whether IB has acknowledged it."""

    symbol: str
    side: Side
    quantity: float
    price: float | None
    acknowledged: bool = False
    filled: float = 0.0


@dataclass(frozen=True)
class _Fill:
    """Shares an entry filled that no position record of its symbol includes yet."""

    time: datetime
    side: Side
    quantity: float


@dataclass(frozen=True)
class SymbolExposure:
    """One symbol's filled position and the entries that could still add to it (working or in flight), by side."""

    position: float = 0.0
    pending_buy: float = 0.0
    pending_sell: float = 0.0


@dataclass
class _ExposureBook:
    """Entries in flight or working, and the account's gross value, kept as running aggregates per symbol.

    ``value[symbol]`` is (|position| + pending shares of both sides) × the symbol's mark; ``gross`` their sum, moved
    by the difference whenever one symbol's quantity or mark changes (never recomputed by a scan).
    """

    entries: dict[str, _Entry] = field(default_factory=dict)
    # order_id of entries ended (terminal event): a routed order read after its end must not count again.
    ended: set[str] = field(default_factory=set)
    # A parent event read before the routed order that says its side (the topics are read interleaved).
    early_events: dict[str, OrderEvent] = field(default_factory=dict)
    pending: dict[str, tuple[float, float]] = field(default_factory=dict)  # symbol → (buy, sell) shares
    position_value: dict[str, float] = field(default_factory=dict)
    pending_value: dict[str, float] = field(default_factory=dict)
    position_gross: float = 0.0
    pending_gross: float = 0.0
    last_order_price: dict[str, float] = field(default_factory=dict)
    # symbol → fills no position record includes yet: they stay pending until one does (see ``settle``).
    unsettled: dict[str, list[_Fill]] = field(default_factory=dict)

    def hold(
        self,
        order_id: str,
        symbol: str,
        side: Side,
        quantity: float,
        price: float | None,
        position_time: datetime | None = None,
    ) -> bool:
        """Count an approved entry in flight; False if it is known already or has ended."""
        if order_id in self.entries or order_id in self.ended:
            return False
        self.entries[order_id] = _Entry(symbol, side, quantity, price)
        if price is not None and price > 0:
            self.last_order_price[symbol] = price
        self._add_pending(symbol, side, quantity)
        early = self.early_events.pop(order_id, None)
        if early is not None:
            self.on_event(early, position_time)
        return True

    def release(self, order_id: str) -> str | None:
        """Drop an entry still in flight (never acknowledged); its symbol, if one was dropped."""
        entry = self.entries.get(order_id)
        if entry is None or entry.acknowledged:
            return None
        del self.entries[order_id]
        self._add_pending(entry.symbol, entry.side, -entry.quantity)
        return entry.symbol

    def on_event(self, event: OrderEvent, position_time: datetime | None = None) -> str | None:
        """Apply a parent leg's event (``position_time``: when the symbol's position record was stamped, if any);
        the symbol whose pending quantity changed, if any."""
        order_id = event.order_id
        if order_id in self.ended:
            return None
        entry = self.entries.get(order_id)
        if entry is None:
            if event.status in TERMINAL_STATUSES:
                self.ended.add(order_id)
                self.early_events.pop(order_id, None)
            else:
                self.early_events[order_id] = event
            return None
        self._fill(entry, event, position_time)
        if event.status in TERMINAL_STATUSES:
            self.ended.add(order_id)
            del self.entries[order_id]
            self._add_pending(entry.symbol, entry.side, -entry.quantity)
            return entry.symbol
        # Working: what is left to fill (execution reports ordered - filled).
        outstanding = max(event.remaining_quantity, 0.0)
        self._add_pending(entry.symbol, entry.side, outstanding - entry.quantity)
        entry.quantity, entry.acknowledged = outstanding, True
        return entry.symbol

    def _fill(self, entry: _Entry, event: OrderEvent, position_time: datetime | None) -> None:
        """Move newly filled shares from the entry to the unsettled fills, unless the position already has them.

        Fill and position are separate records on separate topics, read in either order: a position record stamped
        after the fill (less ``SETTLE_SLACK``, for IB reporting the position a moment before the order status)
        includes it. Without this the shares would count in neither between the two records.
        """
        added = event.filled_quantity - entry.filled
        if added <= 0:
            return
        entry.filled = event.filled_quantity
        if position_time is not None and position_time >= event.event_time - SETTLE_SLACK:
            return
        self.unsettled.setdefault(entry.symbol, []).append(_Fill(event.event_time, entry.side, added))
        self._add_pending(entry.symbol, entry.side, added)

    def settle(self, symbol: str, position_time: datetime) -> None:
        """A position record stamped at ``position_time`` includes the symbol's fills up to then."""
        fills = self.unsettled.get(symbol)
        if not fills:
            return
        kept = [f for f in fills if position_time < f.time - SETTLE_SLACK]
        for fill in fills:
            if position_time >= fill.time - SETTLE_SLACK:
                self._add_pending(symbol, fill.side, -fill.quantity)
        if kept:
            self.unsettled[symbol] = kept
        else:
            del self.unsettled[symbol]

    def _add_pending(self, symbol: str, side: Side, shares: float) -> None:
        buy, sell = self.pending.get(symbol, (0.0, 0.0))
        if side is Side.BUY:
            buy = max(buy + shares, 0.0)
        else:
            sell = max(sell + shares, 0.0)
        if buy <= 0 and sell <= 0:
            self.pending.pop(symbol, None)
        else:
            self.pending[symbol] = (buy, sell)

    def revalue(self, symbol: str, position: Position | None, quote: Quote | None) -> None:
        """Move the gross totals by the change of one symbol's values (after its position, pending or mark moved)."""
        buy, sell = self.pending.get(symbol, (0.0, 0.0))
        if position is not None:
            mark = mark_price(position, quote)
        else:
            mark = _quote_mark(quote) or self.last_order_price.get(symbol, 0.0)
        held = abs(position.quantity) * mark if position is not None else 0.0
        self.position_gross += held - self.position_value.pop(symbol, 0.0)
        self.pending_gross += (buy + sell) * mark - self.pending_value.pop(symbol, 0.0)
        if held:
            self.position_value[symbol] = held
        if buy + sell:
            self.pending_value[symbol] = (buy + sell) * mark
        # No drift left behind once nothing is held or pending.
        if not self.position_value:
            self.position_gross = 0.0
        if not self.pending_value:
            self.pending_gross = 0.0

    def exposure(self, symbol: str, position: Position | None) -> SymbolExposure:
        buy, sell = self.pending.get(symbol, (0.0, 0.0))
        return SymbolExposure(position.quantity if position is not None else 0.0, buy, sell)


def _quote_mark(quote: Quote | None) -> float | None:
    """Last, else mid; None without a usable quote."""
    if quote is None:
        return None
    if quote.last is not None and quote.last > 0:
        return quote.last
    if quote.bid is not None and quote.ask is not None and quote.bid > 0 and quote.ask > 0:
        return (quote.bid + quote.ask) / 2
    return None


@dataclass
class RiskView:
    """What the gate knows about the account and the market, folded from topics.

    Written by the view feed's thread and read by the agent's event loop, hence the lock; every method holds it
    only for dictionary work, never for I/O.
    """

    quotes: dict[str, Quote] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    # Realized P&L per UTC day, per exec_id (a redelivered execution must not count twice), and each day's sum.
    realized: dict[str, dict[str, float]] = field(default_factory=dict)
    # Trading states and kill switches by scope (ibstream.trading_states), with the kill-switch commands in force.
    trading: TradingStates = field(default_factory=TradingStates)
    _realized_total: dict[str, float] = field(default_factory=dict)
    _unrealized_total: float = 0.0
    # The newest account.v1 record (one account per pipeline: execution trades one).
    account: AccountState | None = None
    _exposure: _ExposureBook = field(default_factory=_ExposureBook)
    _equity_fallback_noted: bool = False
    kill_switches: dict[str, ControlCommand] = field(default_factory=dict)
    # order_id → decision_id of every decision seen on risk.decisions.v1 or made here.
    decided: dict[str, str] = field(default_factory=dict)
    # The approvals the order-rate throttle counts. One this worker made is stamped with the market time it was
    # decided at, like every risk window; one read back from the decisions topic (another worker's, or this one's
    # before a restart) carries only its wall-clock decided_time, so it ages on the wall clock: the same as market
    # time against a real gateway, and on the strict side against a faster simulator (counted for longer).
    # Each counts in amortized constant time (``throttle``): the sum over every approval in the window cost a
    # decision O(window) and held risk to ~590 decisions/s at 20k intents.
    _market_approvals: ApprovalWindow = field(default_factory=lambda: ApprovalWindow(THROTTLE_WINDOW))
    _wall_approvals: ApprovalWindow = field(default_factory=lambda: ApprovalWindow(THROTTLE_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set once the feed has read every topic up to its end as of startup; deciding before that could miss a kill
    #: switch or re-decide an intent decided before a restart.
    ready: threading.Event = field(default_factory=threading.Event)

    def apply_quote(self, quote: Quote) -> None:
        symbol = quote.symbol
        with self._lock:
            current = self.quotes.get(symbol)
            # Replays and backfills can deliver older quotes after newer ones: keep the newest.
            if current is None or quote.event_time >= current.event_time:
                self.quotes[symbol] = quote
                if symbol in self.positions or symbol in self._exposure.pending:
                    self._exposure.revalue(symbol, self.positions.get(symbol), quote)

    def apply_position(self, position: Position) -> None:
        symbol = position.symbol
        with self._lock:
            previous = self.positions.get(symbol)
            self._unrealized_total += (position.unrealized_pnl or 0.0) - (
                (previous.unrealized_pnl or 0.0) if previous is not None else 0.0
            )
            self.positions[symbol] = position
            self._exposure.settle(symbol, position.time)
            self._exposure.revalue(symbol, position, self.quotes.get(symbol))

    def apply_execution(self, execution: Execution) -> None:
        if execution.realized_pnl is None:
            return
        day = execution.exec_time.date().isoformat()
        with self._lock:
            by_exec = self.realized.setdefault(day, {})
            previous = by_exec.get(execution.exec_id, 0.0)
            by_exec[execution.exec_id] = execution.realized_pnl
            self._realized_total[day] = self._realized_total.get(day, 0.0) + execution.realized_pnl - previous

    def apply_account_state(self, state: AccountState) -> None:
        with self._lock:
            # The newest wins: a replayed or reconciled older record must not roll the account back.
            if self.account is None or state.time >= self.account.time:
                self.account = state

    def apply_approved_intent(self, intent: OrderIntent) -> None:
        """An intent this worker approved: it counts in flight until IB acknowledges or ends it."""
        self._hold(intent.order_id, intent.symbol, intent.side, intent.quantity, _terms_price(intent))

    def apply_routed(self, order: RoutedOrder) -> None:
        """An approved order read from orders.routed.v1 (another worker's, or this one's before a restart)."""
        self._hold(order.order_id, order.symbol, order.side, order.quantity, _terms_price(order))

    def release_intent(self, order_id: str) -> None:
        """Forget an approved intent that was never routed (its decision was not recorded), unless IB has it."""
        with self._lock:
            symbol = self._exposure.release(order_id)
            if symbol is not None:
                self._exposure.revalue(symbol, self.positions.get(symbol), self.quotes.get(symbol))

    def _hold(self, order_id: str, symbol: str, side: Side, quantity: float, price: float | None) -> None:
        with self._lock:
            position = self.positions.get(symbol)
            if self._exposure.hold(order_id, symbol, side, quantity, price, _time_of(position)):
                self._exposure.revalue(symbol, position, self.quotes.get(symbol))

    def apply_order_event(self, event: OrderEvent) -> None:
        """A parent leg's step at IB moves its entry from in flight to working (remaining quantity) or ends it."""
        if event.leg is not OrderLeg.PARENT:
            return
        with self._lock:
            symbol = self._exposure.on_event(event, _time_of(self.positions.get(event.symbol)))
            if symbol is not None:
                self._exposure.revalue(symbol, self.positions.get(symbol), self.quotes.get(symbol))

    def equity_fallback_first_use(self) -> bool:
        """True the first time this is asked while no account record has been seen (so the fallback is logged
        once), False ever after."""
        with self._lock:
            if self.account is not None or self._equity_fallback_noted:
                return False
            self._equity_fallback_noted = True
            return True

    def apply_control(self, command: ControlCommand) -> ScopeState | None:
        """Fold in a control command; the scope's new state, None when it changed nothing (stale, a repeat)."""
        with self._lock:
            changed = self.trading.apply(command)
            if changed is not None:
                if changed.kill_switch:
                    self.kill_switches[changed.scope] = command
                else:
                    self.kill_switches.pop(changed.scope, None)
            return changed

    def apply_undecodable_control(self, key: bytes | None, error: str, at: datetime) -> ScopeState:
        """A control record that did not decode halts its scope (fail closed)."""
        with self._lock:
            halt = self.trading.apply_undecodable(key, error, at)
            self.kill_switches.pop(halt.scope, None)
            return halt

    def apply_decision(self, decision: RiskDecision, market_time: datetime | None = None) -> None:
        """Fold in a decision: ``market_time`` is when this worker made it (market clock); None for one read from
        the topic."""
        with self._lock:
            # An approval counts once: this worker's own decisions come back from the topic after it applied them,
            # maybe after their market-time stamp was forgotten (two market minutes are one wall second at 120x).
            first = decision.order_id not in self.decided
            self.decided[decision.order_id] = decision.decision_id
            if decision.approved and first:
                if market_time is not None:
                    self._market_approvals.add(decision.decision_id, market_time)
                else:
                    self._wall_approvals.add(decision.decision_id, decision.decided_time)

    def has_decision(self, order_id: str) -> bool:
        """A decision for ``order_id`` was applied already: another one read back changes nothing that counts (the
        throttle counts an order's first approval only, and a decision id is the order id's, ``ids.decision_id``)."""
        with self._lock:
            return order_id in self.decided

    def holds_order(self, order_id: str) -> bool:
        """The entry ``order_id`` is counted (in flight or working) or has ended: its routed order adds nothing."""
        with self._lock:
            return order_id in self._exposure.entries or order_id in self._exposure.ended

    def decision_for(self, order_id: str) -> str | None:
        with self._lock:
            return self.decided.get(order_id)

    def recent_approvals(self, now: datetime, wall: datetime | None = None) -> int:
        """Approvals in the throttle window: this worker's up to market time ``now``, those read from the topic up
        to wall time ``wall`` (default ``now``: one clock, as against a real gateway)."""
        with self._lock:
            return self._market_approvals.count(now) + self._wall_approvals.count(wall or now)

    def kill_switches_on(self) -> dict[str, str]:
        """target → "actor: reason" of every kill switch on: a copy the event loop hands to the alert book."""
        with self._lock:
            return {target: f"{command.actor}: {command.reason}" for target, command in self.kill_switches.items()}

    def kill_switch_for(self, symbol: str) -> ControlCommand | None:
        with self._lock:
            for scope in (ACCOUNT, symbol):
                if scope in self.kill_switches:
                    return self.kill_switches[scope]
            return None

    def trading_state_for(self, symbol: str) -> ScopeState | None:
        """The state ``symbol`` trades under (the stricter of the account's and its own); None: active."""
        with self._lock:
            return self.trading.for_symbol(symbol)

    def trading_states_restricted(self) -> dict[str, str]:
        """scope → "state for scope by actor: reason" of every scope reducing or halted other than by the kill switch
        (which has its own alert): a copy for the alert book."""
        with self._lock:
            restricted = self.trading.restricted().items()
            return {scope: state.describe() for scope, state in restricted if not state.kill_switch}

    def held_positions(self) -> dict[str, float] | None:
        """symbol → signed quantity of every position IB reported (a flatten's scope); None until the feed has read
        every topic up to its end as of startup (a position not yet read must not be left open)."""
        if not self.ready.is_set():
            return None
        with self._lock:
            return {symbol: position.quantity for symbol, position in self.positions.items()}

    def snapshot(self, symbol: str, day: str) -> AccountSnapshot:
        """A consistent copy of what one decision needs: the running aggregates, no scan."""
        with self._lock:
            position = self.positions.get(symbol)
            return AccountSnapshot(
                quote=self.quotes.get(symbol),
                position=position,
                exposure=self._exposure.exposure(symbol, position),
                position_gross=self._exposure.position_gross,
                pending_gross=self._exposure.pending_gross,
                realized_today=self._realized_total.get(day, 0.0),
                unrealized=self._unrealized_total,
                account=self.account,
            )


def _time_of(position: Position | None) -> datetime | None:
    return position.time if position is not None else None


def _terms_price(order: OrderIntent | RoutedOrder) -> float | None:
    return order_price(order.order_type, order.limit_price, order.stop_price)


@dataclass(frozen=True)
class AccountSnapshot:
    """The part of the view one decision reads, copied under the lock.

    ``position_gross`` is the filled positions' value at their marks, ``pending_gross`` the entries working or in
    flight at the same marks; ``unrealized`` the positions' unrealized P&L (when positions.v1 carries it);
    ``account`` the newest account.v1 record, None before the first.
    """

    quote: Quote | None
    position: Position | None
    exposure: SymbolExposure
    position_gross: float
    pending_gross: float
    realized_today: float
    unrealized: float
    account: AccountState | None
