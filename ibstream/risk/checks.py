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
    Quote,
    RiskCheck,
    RiskDecision,
    RoutedOrder,
)
from ibstream.contracts.enums import OrderType, Side, TradingState
from ibstream.risk.view import AccountSnapshot, RiskLimits, RiskView, order_price
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


def entry_price(intent: OrderIntent, reference: float | None) -> float | None:
    """The price the intent expects to pay: its limit (or stop) price, else the market's reference."""
    named = order_price(intent.order_type, intent.limit_price, intent.stop_price)
    return named if named is not None else reference


def signed(intent: OrderIntent) -> float:
    return intent.quantity if intent.side is Side.BUY else -intent.quantity


@dataclass(frozen=True)
class CheckContext:
    """Everything a check may read."""

    limits: RiskLimits
    snapshot: AccountSnapshot
    now: datetime  # market time
    wall: datetime  # the wall clock (the account record's age: execution stamps it on the wall clock)
    entry: float | None
    reference: float | None
    recent_approvals: int
    kill_switch: ControlCommand | None
    trading_state: ScopeState | None = None  # the state the intent's symbol trades under; None: active


def _unpriced(name: str, limit: float | None = None) -> RiskCheck:
    return RiskCheck(name=name, value=None, limit=limit, passed=False, reason="no price: no quote and no limit price")


def check_max_position(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    """The position if every entry working or in flight on one side fills and none on the other does, this one
    included: the worst case either way."""
    held = ctx.snapshot.exposure
    buy = held.pending_buy + (intent.quantity if intent.side is Side.BUY else 0.0)
    sell = held.pending_sell + (intent.quantity if intent.side is Side.SELL else 0.0)
    after = max(abs(held.position + buy), abs(held.position - sell))
    passed = after <= ctx.limits.max_position
    return RiskCheck(
        name="max_position",
        value=after,
        limit=ctx.limits.max_position,
        passed=passed,
        reason=f"position after fills {after:g} {'≤' if passed else '>'} {ctx.limits.max_position:g} shares "
        f"(held {held.position:g}, working or in flight +{held.pending_buy:g}/-{held.pending_sell:g})",
    )


def check_gross_exposure(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    if ctx.entry is None:
        return _unpriced("max_gross_exposure", ctx.limits.max_gross_exposure)
    current = ctx.snapshot.position_gross + ctx.snapshot.pending_gross
    # Conservative: an order (and every working or in-flight entry) adds its notional even when it reduces a position.
    after = current + intent.quantity * ctx.entry
    passed = after <= ctx.limits.max_gross_exposure
    return RiskCheck(
        name="max_gross_exposure",
        value=after,
        limit=ctx.limits.max_gross_exposure,
        passed=passed,
        reason=f"gross exposure after order {after:,.2f} {'≤' if passed else '>'} {ctx.limits.max_gross_exposure:,.2f}"
        f" (positions {ctx.snapshot.position_gross:,.2f}, working or in flight {ctx.snapshot.pending_gross:,.2f})",
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
    trailing = _trailing_stop_check(intent, ctx.entry, band, ctx.limits.min_stop_pct, ctx.limits.max_stop_pct)
    if trailing is not None:
        return trailing
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


def _trailing_stop_check(
    intent: OrderIntent, entry: float, band: str, min_pct: float, max_pct: float
) -> RiskCheck | None:
    """A trailing stop-loss starts at ``stop_loss`` (checked as any stop, and the loss at stop is counted from it:
    the stop only moves in the position's favour) and then follows the market by its trail, so the trail must not be
    tighter than the band's minimum either: a stop that would sit 0.05% behind the price is noise, wherever it
    starts. Refused outright when the trail is malformed (both forms, not positive, a percent of 100 or more), as
    execution could not place it. None for a fixed stop or a trail that passes."""
    amount, percent = intent.stop_loss_trail_amount, intent.stop_loss_trail_percent
    if amount is None and percent is None:
        return None
    malformed = (amount is not None and percent is not None) or (amount or percent or 0.0) <= 0
    if malformed or (percent is not None and percent >= 100):
        return RiskCheck(
            name="stop_distance",
            value=None,
            limit=max_pct,
            passed=False,
            reason=f"trailing stop malformed: trail amount {amount}, trail percent {percent} (one, positive)",
        )
    trail_pct = percent if percent is not None else (amount or 0.0) / entry * 100
    if trail_pct < min_pct:
        return RiskCheck(
            name="stop_distance",
            value=trail_pct,
            limit=min_pct,
            passed=False,
            reason=f"trailing stop trails {trail_pct:.3f}% behind the price, inside {band}: too tight",
        )
    return None


def equity(ctx: CheckContext) -> tuple[float, str]:
    """The account's equity and where it came from: IB's NetLiquidation from the newest account record, else the
    static IBSTREAM_ACCOUNT_EQUITY until the first record arrives."""
    account = ctx.snapshot.account
    if account is not None:
        return account.net_liquidation, "NetLiquidation"
    return ctx.limits.account_equity, "IBSTREAM_ACCOUNT_EQUITY, no account record yet"


def check_risk_per_trade(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    equity_value, source = equity(ctx)
    budget = equity_value * ctx.limits.risk_per_trade_pct / 100
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
        f"{equity_value:,.2f} ({budget:,.2f}; {source})",
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
    if intent.order_type in (OrderType.MKT, OrderType.MOC):
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


def todays_pnl(ctx: CheckContext) -> tuple[float, str]:
    """Today's P&L, realized and unrealized, and where it came from: IB's daily P&L from the newest account record,
    else its realized + unrealized, else (before any record) the executions' realized P&L of the market day plus the
    positions' unrealized."""
    account = ctx.snapshot.account
    if account is not None and account.daily_pnl is not None:
        return account.daily_pnl, "IB daily P&L"
    if account is not None and (account.realized_pnl is not None or account.unrealized_pnl is not None):
        return (account.realized_pnl or 0.0) + (account.unrealized_pnl or 0.0), "IB realized + unrealized"
    return ctx.snapshot.realized_today + ctx.snapshot.unrealized, "executions + positions, no account P&L yet"


def check_daily_loss(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    pnl, source = todays_pnl(ctx)
    loss = -pnl
    passed = loss < ctx.limits.daily_loss_limit
    return RiskCheck(
        name="daily_loss",
        value=loss,
        limit=ctx.limits.daily_loss_limit,
        passed=passed,
        reason=f"today's loss {loss:,.2f} {'<' if passed else '≥'} limit {ctx.limits.daily_loss_limit:,.2f} ({source})",
    )


def check_account_state(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    """Fails closed when IB's account values stopped arriving: sizing, buying power and the daily loss read them.

    Before the first record it passes and says so (the static equity is the fallback, as while execution has not
    yet reported the account after a fresh start); once records have been seen, a silence longer than the limit
    fails. Aged on the wall clock, as execution stamps the record.
    """
    limit = ctx.limits.account_state_max_age_seconds
    account = ctx.snapshot.account
    if account is None:
        return RiskCheck(
            name="account_state",
            value=None,
            limit=limit,
            passed=True,
            reason="no account record yet: equity from IBSTREAM_ACCOUNT_EQUITY, no buying power check",
        )
    age = (ctx.wall - account.time).total_seconds()
    passed = age <= limit
    return RiskCheck(
        name="account_state",
        value=age,
        limit=limit,
        passed=passed,
        reason=f"account {account.account} record {age:.1f}s old ({'≤' if passed else '>'} {limit:g}s)",
    )


def _reduces_position(intent: OrderIntent, ctx: CheckContext) -> bool:
    """Whether the intent only brings the filled position towards flat (with the same side's pending entries)."""
    held = ctx.snapshot.exposure
    if intent.side is Side.BUY:
        return held.position < 0 and held.pending_buy + intent.quantity <= -held.position
    return held.position > 0 and held.pending_sell + intent.quantity <= held.position


def check_buying_power(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    """The order's notional within IB's buying power less the entries working or in flight (which IB's figure
    may not include yet); an order that only reduces the position needs none."""
    account = ctx.snapshot.account
    if account is None:
        return RiskCheck(
            name="buying_power", value=None, limit=None, passed=True, reason="no account record yet: not checked"
        )
    available = account.buying_power - ctx.snapshot.pending_gross
    if ctx.entry is None:
        return _unpriced("buying_power", available)
    notional = intent.quantity * ctx.entry
    if _reduces_position(intent, ctx):
        return RiskCheck(
            name="buying_power",
            value=notional,
            limit=available,
            passed=True,
            reason="reduces the position: needs no buying power",
        )
    passed = notional <= available
    return RiskCheck(
        name="buying_power",
        value=notional,
        limit=available,
        passed=passed,
        reason=f"order notional {notional:,.2f} {'≤' if passed else '>'} buying power {account.buying_power:,.2f} "
        f"less {ctx.snapshot.pending_gross:,.2f} working or in flight",
    )


def check_conflicting_position(intent: OrderIntent, ctx: CheckContext) -> RiskCheck:
    """One net position per symbol: an intent opposite to the held position or to a working entry is refused, since
    its own bracket would fight the other's (intents and IB positions carry no strategy, so any holder counts).
    ``reduce_opposite`` lets one through that only reduces the filled position, never against a working entry.
    """
    held = ctx.snapshot.exposure
    buying = intent.side is Side.BUY
    opposite_position = held.position < 0 if buying else held.position > 0
    opposite_working = held.pending_sell if buying else held.pending_buy
    value = abs(held.position) if opposite_position else 0.0
    if not opposite_position and opposite_working <= 0:
        return RiskCheck(
            name="conflicting_position",
            value=value,
            limit=0.0,
            passed=True,
            reason=f"no opposite position or working entry in {intent.symbol}",
        )
    if ctx.limits.reduce_opposite and opposite_working <= 0 and _reduces_position(intent, ctx):
        return RiskCheck(
            name="conflicting_position",
            value=value,
            limit=0.0,
            passed=True,
            reason=f"reduces the {held.position:g} held in {intent.symbol} (reduce_opposite)",
        )
    return RiskCheck(
        name="conflicting_position",
        value=value + opposite_working,
        limit=0.0,
        passed=False,
        reason=f"{intent.side} {intent.quantity:g} {intent.symbol} against {held.position:g} held and "
        f"{opposite_working:g} working on the other side: one net position per symbol",
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
        position = ctx.snapshot.position
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
    check_account_state,
    check_quote_age,
    check_price_band,
    check_conflicting_position,
    check_max_position,
    check_gross_exposure,
    check_order_notional,
    check_buying_power,
    check_stop_distance,
    check_risk_per_trade,
    check_order_rate,
    check_daily_loss,
)


#: Why these checks do not apply to a flatten (an intent carrying ``flatten_id``): it passes them and the reason says
#: so. Every other check (kill_switch, trading_state, conflicting_position, max_position, and any check added later:
#: fail closed) is a gate a flatten passes only if it closes the position and no further, halted or not.
FLATTEN_EXEMPT: dict[str, str] = {
    "account_state": "a flatten closes the position whatever IB's account values say",
    "stale_quote": "a market flatten closes at whatever the quote is",
    "price_band": "a market flatten trades at the quote",
    "max_gross_exposure": "a flatten only takes exposure off",
    "max_order_notional": "a flatten closes the position whatever its size",
    "buying_power": "a flatten only takes exposure off",
    "stop_distance": "a flatten needs no stop: it leaves no position to protect",
    "risk_per_trade": "a flatten needs no stop: it leaves no position to protect",
    "order_rate": "a flatten is never throttled",
    "daily_loss": "a flatten stops losses, a loss never blocks it",
}


def flatten_verdict(intent: OrderIntent, ctx: CheckContext) -> tuple[bool, str]:
    """Whether a flatten intent closes the filled position and no further (counting the entries working or in flight
    on its side, e.g. an earlier flatten not yet filled), and why."""
    held = ctx.snapshot.exposure
    pending = held.pending_sell if intent.side is Side.SELL else held.pending_buy
    what = f"flatten {intent.flatten_id}: {intent.side} {intent.quantity:g} {intent.symbol}"
    if _reduces_position(intent, ctx):
        return True, f"{what} closes the {held.position:g} held ({pending:g} more working on that side)"
    return False, (
        f"{what} does not close the {held.position:g} held ({pending:g} working on that side): a flatten may only "
        "bring the position to flat"
    )


def judge_flatten(intent: OrderIntent, ctx: CheckContext, checks: list[RiskCheck]) -> list[RiskCheck]:
    """A flatten's checks: the gates pass only if it closes the position; the rest pass and say why they do not apply
    (their value and limit kept for the record)."""
    closes, why = flatten_verdict(intent, ctx)
    judged = []
    for check in checks:
        if check.name in FLATTEN_EXEMPT:
            reason = f"not applied to a flatten ({FLATTEN_EXEMPT[check.name]}): {check.reason}"
            judged.append(check.model_copy(update={"passed": True, "reason": reason}))
        else:
            judged.append(check.model_copy(update={"passed": closes, "reason": why}))
    return judged


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
        wall=wall or now,
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
    if intent.flatten_id is not None:
        checks = judge_flatten(intent, ctx, checks)
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
