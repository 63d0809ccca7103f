"""Risk decisions for a batch of intents: judge each with the pure checks (``ibstream.risk``), emit the decisions,
route the approved orders, remember what was decided. No Faust here: the agent (``streams.risk.agents``) hands in
the decoded intents, the table of decided order ids and how to write to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import SpanContext

from ibstream import risk
from ibstream.contracts import OrderIntent, RiskDecision, risk_decisions, routed_orders, utc_now
from ibstream.contracts.order_terms import terms_digest
from ibstream.telemetry import as_current, consume_span, current_span_context
from streams.context import AgentContext
from streams.observability import observe_decisions

log = logging.getLogger(__name__)


class DecidedTable(Protocol):
    """The Faust table of decided order ids (order_id → decision_id)."""

    def get(self, key: str) -> str | None: ...

    def __setitem__(self, key: str, value: str) -> None: ...


async def wait_until_ready(view: risk.RiskView, poll: float = 0.02) -> None:
    """Hold the first decision until the view caught up: before that a kill switch or an earlier decision of a
    redelivered intent could still be unread."""
    while not view.ready.is_set():
        await asyncio.sleep(poll)


@dataclass
class _Decided:
    index: int
    intent: OrderIntent
    decision: RiskDecision
    ack: Awaitable[Any]
    trace: SpanContext | None


async def decide_intents(
    ctx: AgentContext,
    intents: list[OrderIntent],
    view: risk.RiskView,
    limits: risk.RiskLimits,
    decided: DecidedTable,
    clock: Callable[[], Any],
    traces: list[Mapping[str, Any] | None],
    remember: Callable[[int, str, str], None],
    *,
    messaging: list[Mapping[str, str | int]] | None = None,
) -> list[bool | BaseException]:
    """Decide intents in arrival order, each judged with the decisions before it applied; per intent: whether a
    decision was emitted, or the error that kept it from being decided or recorded.

    Commit order: every decision of the batch is acknowledged by the broker before any routed order is sent (no order
    without a recorded decision); the table entries are written last, so a crash in between re-decides with the same
    ``decision_id`` rather than losing an intent. A decision whose record failed stays applied to the view: the view
    then errs on the strict side (one approval too many counted) and the intent goes to the DLQ.

    ``traces`` (each intent's record headers) and ``messaging`` (its record's ``consumed_attributes``) feed the
    ``risk.decide`` span of each intent.
    """
    results: list[bool | BaseException] = [False] * len(intents)
    if intents and view.equity_fallback_first_use():
        log.warning(
            "no account record (account.v1) yet: sizing on the static IBSTREAM_ACCOUNT_EQUITY until IB reports one",
            extra={"account_equity": limits.account_equity},
        )
    made = await _decide(ctx, intents, view, limits, decided, clock, traces, results, messaging)
    outcomes = await asyncio.gather(*(item.ack for item in made), return_exceptions=True)
    routed: list[tuple[RiskDecision, Any]] = []
    try:
        for item, outcome in zip(made, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("risk decision not recorded", extra={"order_id": item.intent.order_id, "error": str(outcome)})
                # Never routed, so never at IB: it must not hold position room as in flight.
                view.release_intent(item.intent.order_id)
                results[item.index] = outcome
                continue
            await _route(ctx, item, remember)
            results[item.index] = True
            routed.append((item.decision, item.intent.created_time))
    finally:
        # Metrics once per batch (``observe_decisions``): every decision recorded and routed above.
        observe_decisions(routed)
    return results


async def _decide(
    ctx: AgentContext,
    intents: list[OrderIntent],
    view: risk.RiskView,
    limits: risk.RiskLimits,
    decided: DecidedTable,
    clock: Callable[[], Any],
    traces: list[Mapping[str, Any] | None],
    results: list[bool | BaseException],
    messaging: list[Mapping[str, str | int]] | None = None,
) -> list[_Decided]:
    """Judge and emit (unacknowledged) each intent not decided before; an error lands in ``results``."""
    made: list[_Decided] = []
    for index, intent in enumerate(intents):
        extra = {"order_id": intent.order_id, "symbol": intent.symbol, "run_id": intent.run_id}
        previous = decided.get(intent.order_id) or view.decision_for(intent.order_id)
        if previous is not None:
            log.info("intent already decided, skipped", extra={**extra, "decision_id": previous})
            continue
        with consume_span(
            "risk.decide",
            traces[index],
            messaging=messaging[index] if messaging is not None else None,
            order_id=intent.order_id,
            symbol=intent.symbol,
        ):
            try:
                # Market time for every risk window, the order-rate throttle too; the wall clock stamps decided_time
                # (the intent→decision latency is a wall-clock fact).
                now = clock()
                decision = stamp_terms(risk.decide(intent, view, limits, now, wall=utc_now()), intent)
                # Applied at once: the next intent of the batch is judged with this one's approval counted, and its
                # quantity in flight (position, exposure, netting) until IB acknowledges or ends it.
                view.apply_decision(decision, market_time=now)
                if decision.approved:
                    view.apply_approved_intent(intent)
                ack = await ctx.emitter.emit_pending(risk_decisions.TOPIC, decision)
            except Exception as error:  # a bug in a check must not stop every other order's decisions
                log.exception("risk decision failed", extra=extra)
                view.release_intent(intent.order_id)  # not emitted, so never routed: it holds nothing in flight
                results[index] = error
                continue
            made.append(_Decided(index, intent, decision, ack, current_span_context()))
    return made


def stamp_terms(decision: RiskDecision, intent: OrderIntent) -> RiskDecision:
    """The decision with the digest of the terms it judged: execution places a routed order only when its terms
    have this digest (the routed order carries the intent's terms, ``risk.route``)."""
    return decision.model_copy(update={"terms_digest": terms_digest(intent)})


async def _route(ctx: AgentContext, item: _Decided, remember: Callable[[int, str, str], None]) -> None:
    """After its decision was acknowledged: the routed order (if approved), then the table entry."""
    intent, decision = item.intent, item.decision
    with as_current(item.trace):
        routed = risk.route(intent, decision)
        if routed is not None:
            await ctx.emitter.emit(routed_orders.TOPIC, routed)
    remember(item.index, intent.order_id, decision.decision_id)
    failed = [check.name for check in decision.checks if not check.passed]
    log.info(
        "risk decision",
        extra={
            "order_id": intent.order_id,
            "symbol": intent.symbol,
            "run_id": intent.run_id,
            "decision_id": decision.decision_id,
            "approved": decision.approved,
            "failed": failed,
        },
    )


async def sync_kill_switch_alerts(ctx: AgentContext, view: risk.RiskView) -> None:
    """Fire ``kill_switch`` for every target the view holds on and ``trading_state`` for every scope reducing or
    halted; resolve the ones released (risk agent, timer)."""
    await ctx.emit_alerts(ctx.alerts.sync_kill_switches(view.kill_switches_on()))
    await ctx.emit_alerts(ctx.alerts.sync_trading_states(view.trading_states_restricted()))
