"""The risk view: what the gate knows about the account and the market, folded from topics (quotes, positions,
executions, kill switches, decisions), and the limits it judges by."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    Execution,
    Position,
    Quote,
    RiskDecision,
)
from ibstream.trading_states import ACCOUNT, ACCOUNT_TARGETS, ScopeState, TradingStates

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
        )


@dataclass
class _ApprovalLog:
    """Approval times on one clock, by decision_id, for the order-rate throttle."""

    times: dict[str, datetime] = field(default_factory=dict)
    # Arrival order, close enough to time order to forget old approvals from the front.
    order: deque[tuple[datetime, str]] = field(default_factory=deque)

    def add(self, decision_id: str, at: datetime) -> None:
        self.times[decision_id] = at
        self.order.append((at, decision_id))

    def count(self, now: datetime) -> int:
        """Approvals in the throttle window up to ``now``.

        One stamped more than a window after ``now`` was stamped on another clock (the wall's, before the producer's
        first heartbeat, while a simulated market runs hours behind it) and is dropped: counted, it would throttle
        every order until the market caught up with it. A market clock steps back by far less than a window.
        """
        since, until = now - THROTTLE_WINDOW, now + THROTTLE_WINDOW
        while self.order and not since - THROTTLE_WINDOW <= self.order[0][0] <= until:
            _, old = self.order.popleft()
            self.times.pop(old, None)
        return sum(1 for at in self.times.values() if since <= at <= until)


@dataclass
class RiskView:
    """What the gate knows about the account and the market, folded from topics.

    Written by the view feed's thread and read by the agent's event loop, hence the lock; every method holds it
    only for dictionary work, never for I/O.
    """

    quotes: dict[str, Quote] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    # Realized P&L per UTC day, per exec_id (a redelivered execution must not count twice).
    realized: dict[str, dict[str, float]] = field(default_factory=dict)
    # Trading states and kill switches by scope (ibstream.trading_states), with the kill-switch commands in force.
    trading: TradingStates = field(default_factory=TradingStates)
    kill_switches: dict[str, ControlCommand] = field(default_factory=dict)
    # order_id → decision_id of every decision seen on risk.decisions.v1 or made here.
    decided: dict[str, str] = field(default_factory=dict)
    # The approvals the order-rate throttle counts. One this worker made is stamped with the market time it was
    # decided at, like every risk window; one read back from the decisions topic (another worker's, or this one's
    # before a restart) carries only its wall-clock decided_time, so it ages on the wall clock: the same as market
    # time against a real gateway, and on the strict side against a faster simulator (counted for longer).
    _market_approvals: _ApprovalLog = field(default_factory=_ApprovalLog)
    _wall_approvals: _ApprovalLog = field(default_factory=_ApprovalLog)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set once the feed has read every topic up to its end as of startup; deciding before that could miss a kill
    #: switch or re-decide an intent decided before a restart.
    ready: threading.Event = field(default_factory=threading.Event)

    def apply_quote(self, quote: Quote) -> None:
        with self._lock:
            current = self.quotes.get(quote.symbol)
            # Replays and backfills can deliver older quotes after newer ones: keep the newest.
            if current is None or quote.event_time >= current.event_time:
                self.quotes[quote.symbol] = quote

    def apply_position(self, position: Position) -> None:
        with self._lock:
            self.positions[position.symbol] = position

    def apply_execution(self, execution: Execution) -> None:
        if execution.realized_pnl is None:
            return
        day = execution.exec_time.date().isoformat()
        with self._lock:
            self.realized.setdefault(day, {})[execution.exec_id] = execution.realized_pnl

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

    def snapshot(self, symbol: str, day: str) -> AccountSnapshot:
        """A consistent copy of what one decision needs."""
        with self._lock:
            return AccountSnapshot(
                quote=self.quotes.get(symbol),
                positions=dict(self.positions),
                quotes=dict(self.quotes),
                realized_today=sum(self.realized.get(day, {}).values()),
            )


@dataclass(frozen=True)
class AccountSnapshot:
    """The part of the view one decision reads, copied under the lock."""

    quote: Quote | None
    positions: dict[str, Position]
    quotes: dict[str, Quote]
    realized_today: float
