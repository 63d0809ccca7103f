"""The pre-trade risk gate as pure functions: an intent and a view of the account in, a decision out.

No Kafka and no Faust here, and it lives in the core so the API's pre-check runs the very same checks: the streams
agent (``streams.agents``) feeds records into a ``RiskView`` and asks ``decide`` for a verdict; every check is a small
function returning one ``RiskCheck`` so each has its own table-driven test.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import (
    ControlCommand,
    Execution,
    OrderIntent,
    Position,
    Quote,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
)
from ibstream.contracts.enums import ControlCommandKind, OrderType, Side

#: Kill-switch targets that stop every symbol; any other target names one symbol.
GLOBAL_TARGETS = frozenset({"*", "all", "global", "account"})

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

    def apply_control(self, command: ControlCommand) -> None:
        target = command.target.strip().lower() if command.target.strip().lower() in GLOBAL_TARGETS else command.target
        with self._lock:
            if command.command is ControlCommandKind.KILL_SWITCH_ON:
                self.kill_switches[target] = command
            elif command.command is ControlCommandKind.KILL_SWITCH_OFF:
                self.kill_switches.pop(target, None)

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
            for target in GLOBAL_TARGETS:
                if target in self.kill_switches:
                    return self.kill_switches[target]
            return self.kill_switches.get(symbol)

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


def reference_price(quote: Quote | None, side: Side) -> float | None:
    """The price an order would trade at now: the far touch (ask to buy, bid to sell), else last, else mid."""
    if quote is None:
        return None
    touch = quote.ask if side is Side.BUY else quote.bid
    if touch is not None and touch > 0:
        return touch
    if quote.last is not None and quote.last > 0:
        return quote.last
    if quote.bid is not None and quote.ask is not None and quote.bid > 0 and quote.ask > 0:
        return (quote.bid + quote.ask) / 2
    return None


def mark_price(position: Position, quote: Quote | None) -> float:
    """What a position is worth per share now: last or mid of the quote, else IB's mark, else its cost."""
    if quote is not None:
        if quote.last is not None and quote.last > 0:
            return quote.last
        if quote.bid is not None and quote.ask is not None and quote.bid > 0 and quote.ask > 0:
            return (quote.bid + quote.ask) / 2
    if position.market_price is not None and position.market_price > 0:
        return position.market_price
    return position.avg_cost


def entry_price(intent: OrderIntent, reference: float | None) -> float | None:
    """The price the intent expects to pay: its limit (or stop) price, else the market's reference."""
    if intent.order_type in (OrderType.LMT, OrderType.STP_LMT) and intent.limit_price is not None:
        return intent.limit_price
    if intent.order_type is OrderType.STP and intent.stop_price is not None:
        return intent.stop_price
    return reference


def signed(intent: OrderIntent) -> float:
    return intent.quantity if intent.side is Side.BUY else -intent.quantity


# --- the checks: one function each, (intent, context) → RiskCheck ---


@dataclass(frozen=True)
class CheckContext:
    """Everything a check may read."""

    limits: RiskLimits
    snapshot: AccountSnapshot
    now: datetime  # market time
    entry: float | None
    reference: float | None
    recent_approvals: int
    kill_switch: ControlCommand | None


def _unpriced(name: str, limit: float | None = None) -> RiskCheck:
    return RiskCheck(name=name, value=None, limit=limit, passed=False, reason="no price: no quote and no limit price")


def check_max_position(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    position = ctx.snapshot.positions.get(intent.symbol)
    after = abs((position.quantity if position else 0.0) + signed(intent))
    passed = after <= ctx.limits.max_position
    return RiskCheck(
        name="max_position",
        value=after,
        limit=ctx.limits.max_position,
        passed=passed,
        reason=f"position after fill {after:g} {'≤' if passed else '>'} {ctx.limits.max_position:g} shares",
    )


def check_gross_exposure(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    if ctx.entry is None:
        return _unpriced("max_gross_exposure", ctx.limits.max_gross_exposure)
    current = sum(
        abs(p.quantity) * mark_price(p, ctx.snapshot.quotes.get(symbol)) for symbol, p in ctx.snapshot.positions.items()
    )
    # Conservative: an order adds its notional even when it reduces a position.
    after = current + intent.quantity * ctx.entry
    passed = after <= ctx.limits.max_gross_exposure
    return RiskCheck(
        name="max_gross_exposure",
        value=after,
        limit=ctx.limits.max_gross_exposure,
        passed=passed,
        reason=f"gross exposure after order {after:,.2f} {'≤' if passed else '>'} {ctx.limits.max_gross_exposure:,.2f}",
    )


def check_order_notional(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    if ctx.entry is None:
        return _unpriced("max_order_notional", ctx.limits.max_order_notional)
    notional = intent.quantity * ctx.entry
    passed = notional <= ctx.limits.max_order_notional
    return RiskCheck(
        name="max_order_notional",
        value=notional,
        limit=ctx.limits.max_order_notional,
        passed=passed,
        reason=f"order notional {notional:,.2f} {'≤' if passed else '>'} {ctx.limits.max_order_notional:,.2f}",
    )


def check_stop_distance(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    band = f"[{ctx.limits.min_stop_pct:g}%, {ctx.limits.max_stop_pct:g}%]"
    if intent.stop_loss is None:
        return RiskCheck(
            name="stop_distance",
            value=None,
            limit=ctx.limits.max_stop_pct,
            passed=False,
            reason="no stop loss: every order needs a protective stop",
        )
    if ctx.entry is None or ctx.entry <= 0:
        return _unpriced("stop_distance", ctx.limits.max_stop_pct)
    wrong_side = intent.stop_loss >= ctx.entry if intent.side is Side.BUY else intent.stop_loss <= ctx.entry
    pct = abs(ctx.entry - intent.stop_loss) / ctx.entry * 100
    if wrong_side:
        return RiskCheck(
            name="stop_distance",
            value=pct,
            limit=ctx.limits.max_stop_pct,
            passed=False,
            reason=f"stop {intent.stop_loss:g} is on the wrong side of entry {ctx.entry:g}",
        )
    if pct < ctx.limits.min_stop_pct:
        return RiskCheck(
            name="stop_distance",
            value=pct,
            limit=ctx.limits.min_stop_pct,
            passed=False,
            reason=f"stop {pct:.3f}% from entry is inside {band}: too tight",
        )
    passed = pct <= ctx.limits.max_stop_pct
    return RiskCheck(
        name="stop_distance",
        value=pct,
        limit=ctx.limits.max_stop_pct,
        passed=passed,
        reason=f"stop {pct:.3f}% from entry {'within' if passed else 'outside'} {band}",
    )


def check_risk_per_trade(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    budget = ctx.limits.account_equity * ctx.limits.risk_per_trade_pct / 100
    if intent.stop_loss is None:
        return RiskCheck(
            name="risk_per_trade",
            value=None,
            limit=budget,
            passed=False,
            reason="no stop loss: the loss at stop is unbounded",
        )
    if ctx.entry is None:
        return _unpriced("risk_per_trade", budget)
    at_risk = intent.quantity * abs(ctx.entry - intent.stop_loss)
    passed = at_risk <= budget
    return RiskCheck(
        name="risk_per_trade",
        value=at_risk,
        limit=budget,
        passed=passed,
        reason=f"loss at stop {at_risk:,.2f} {'≤' if passed else '>'} {ctx.limits.risk_per_trade_pct:g}% of equity "
        f"({budget:,.2f})",
    )


def check_order_rate(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    count = ctx.recent_approvals + 1
    passed = count <= ctx.limits.max_orders_per_minute
    return RiskCheck(
        name="order_rate",
        value=float(count),
        limit=float(ctx.limits.max_orders_per_minute),
        passed=passed,
        reason=f"{count} orders in the last minute {'≤' if passed else '>'} {ctx.limits.max_orders_per_minute}",
    )


def check_price_band(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    limit = ctx.limits.price_band_pct
    if ctx.reference is None:
        return RiskCheck(
            name="price_band", value=None, limit=limit, passed=False, reason="no quote to compare the order price with"
        )
    if intent.order_type is OrderType.MKT:
        return RiskCheck(
            name="price_band", value=0.0, limit=limit, passed=True, reason="market order trades at the quote"
        )
    price = ctx.entry if ctx.entry is not None else ctx.reference
    pct = abs(price - ctx.reference) / ctx.reference * 100
    passed = pct <= limit
    return RiskCheck(
        name="price_band",
        value=pct,
        limit=limit,
        passed=passed,
        reason=f"order price {price:g} is {pct:.2f}% from quote {ctx.reference:g} "
        f"({'≤' if passed else '>'} {limit:g}%)",
    )


def check_quote_age(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    limit = ctx.limits.quote_max_age_seconds
    quote = ctx.snapshot.quote
    if quote is None:
        return RiskCheck(
            name="stale_quote", value=None, limit=limit, passed=False, reason=f"no quote for {intent.symbol}"
        )
    age = (ctx.now - quote.event_time).total_seconds()
    passed = age <= limit
    return RiskCheck(
        name="stale_quote",
        value=age,
        limit=limit,
        passed=passed,
        reason=f"last quote {age:.2f}s old ({'≤' if passed else '>'} {limit:g}s)",
    )


def check_daily_loss(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    unrealized = sum(p.unrealized_pnl or 0.0 for p in ctx.snapshot.positions.values())
    loss = -(ctx.snapshot.realized_today + unrealized)
    passed = loss < ctx.limits.daily_loss_limit
    return RiskCheck(
        name="daily_loss",
        value=loss,
        limit=ctx.limits.daily_loss_limit,
        passed=passed,
        reason=f"today's loss {loss:,.2f} {'<' if passed else '≥'} limit {ctx.limits.daily_loss_limit:,.2f}",
    )


def check_kill_switch(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    command = ctx.kill_switch
    if command is None:
        return RiskCheck(name="kill_switch", value=0.0, limit=0.0, passed=True, reason="kill switch off")
    return RiskCheck(
        name="kill_switch",
        value=1.0,
        limit=0.0,
        passed=False,
        reason=f"kill switch on for {command.target} by {command.actor}: {command.reason}",
    )


#: Every check, in the order they appear in a decision.
CHECKS: tuple[Callable[[OrderIntent, CheckContext], RiskCheck], ...] = (
    check_kill_switch,
    check_quote_age,
    check_price_band,
    check_max_position,
    check_gross_exposure,
    check_order_notional,
    check_stop_distance,
    check_risk_per_trade,
    check_order_rate,
    check_daily_loss,
)


def context_for(
    intent: OrderIntent, view: RiskView, limits: RiskLimits, now: datetime, wall: datetime | None = None
) -> CheckContext:
    """``now`` is market time (every risk window); ``wall`` the wall clock, default ``now`` (see ``decide``)."""
    snapshot = view.snapshot(intent.symbol, now.date().isoformat())
    reference = reference_price(snapshot.quote, intent.side)
    return CheckContext(
        limits=limits,
        snapshot=snapshot,
        now=now,
        entry=entry_price(intent, reference),
        reference=reference,
        recent_approvals=view.recent_approvals(now, wall),
        kill_switch=view.kill_switch_for(intent.symbol),
    )


def decide(
    intent: OrderIntent, view: RiskView, limits: RiskLimits, now: datetime, wall: datetime | None = None
) -> RiskDecision:
    """Run every check; the intent is approved only if all pass. Does not change the view: the caller applies the
    decision (``RiskView.apply_decision`` with ``now``) so the next intent is judged with it counted.

    Every risk window follows market time (``now``): quote ages, the trading day of the daily loss, and the
    order-rate throttle, a limit on how many orders a strategy sends per minute of trading, so against a simulated
    market running 120x the wall a minute is a market minute, as it is for the rest of the pipeline (IB's message
    pacing is a wall-clock limit, kept by the pacing governor on the IB side, not here). ``wall`` is the wall clock
    (default ``now``, as against a real gateway): it stamps ``decided_time``, whose latency from the intent's
    ``created_time`` is a wall-clock fact, and ages the approvals read back from the topic, which carry only that.
    """
    ctx = context_for(intent, view, limits, now, wall)
    checks = [check(intent, ctx) for check in CHECKS]
    return RiskDecision(
        decision_id=ids.decision_id(intent.order_id),
        order_id=intent.order_id,
        run_id=intent.run_id,
        symbol=intent.symbol,
        approved=all(check.passed for check in checks),
        checks=checks,
        intent_time=intent.created_time,
        decided_time=wall or now,
    )


def route(intent: OrderIntent, decision: RiskDecision) -> RoutedOrder | None:
    """The order for execution if the decision approved it, else None."""
    if not decision.approved:
        return None
    # The intent's terms, all of them (ibstream.contracts.order_terms): a new term is routed without an edit here.
    return RoutedOrder(
        order_id=intent.order_id,
        **intent.terms(),
        decision_id=decision.decision_id,
        routed_time=decision.decided_time,
    )
