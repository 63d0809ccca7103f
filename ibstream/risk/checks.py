"""The pure pre-trade checks: one function each, (intent, context) → ``RiskCheck``; ``decide`` runs them all against a
``RiskView`` and ``route`` turns an approved intent into the order for execution."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ibstream import ids
from ibstream.contracts import (
    ControlCommand,
    OrderIntent,
    Position,
    Quote,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
)
from ibstream.contracts.enums import OrderType, Side, TradingState
from ibstream.risk.view import AccountSnapshot, RiskLimits, RiskView
from ibstream.trading_states import ScopeState, reduces_position


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
    trading_state: ScopeState | None = None  # the state the intent's symbol trades under; None: active


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


def check_trading_state(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    """Halted passes nothing; reducing passes only an intent that reduces the symbol's position (never flips it)."""
    state = ctx.trading_state
    if state is None or state.state is TradingState.ACTIVE:
        return RiskCheck(name="trading_state", value=0.0, limit=0.0, passed=True, reason="trading state active")
    if state.kill_switch:
        # A kill switch's halt is the kill_switch check's to report; one reason per rejection.
        return RiskCheck(name="trading_state", value=0.0, limit=0.0, passed=True, reason="halted by the kill switch")
    if state.state is TradingState.REDUCING:
        position = ctx.snapshot.positions.get(intent.symbol)
        held = position.quantity if position is not None else 0.0
        if reduces_position(signed(intent), held):
            return RiskCheck(
                name="trading_state", value=1.0, limit=1.0, passed=True, reason=f"reduces {held:g}: {state.describe()}"
            )
        return RiskCheck(
            name="trading_state",
            value=1.0,
            limit=0.0,
            passed=False,
            reason=f"does not reduce the position ({held:g}): {state.describe()}",
        )
    return RiskCheck(name="trading_state", value=2.0, limit=0.0, passed=False, reason=state.describe())


#: Every check, in the order they appear in a decision.
CHECKS: tuple[Callable[[OrderIntent, CheckContext], RiskCheck], ...] = (
    check_kill_switch,
    check_trading_state,
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
        trading_state=view.trading_state_for(intent.symbol),
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
