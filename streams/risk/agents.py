"""The risk agent over ``orders.intents.v1``, the modification agent over ``control.v1`` (``modify_order``
commands, judged by ``streams.risk.modifications``) (decisions by ``streams.risk.decisions``, remembered in the
``risk-decided`` table) and the ``risk-alerts`` timer that raises the kill-switch alert even while no intent
arrives. Registered on the app by ``streams.app``; the risk view they read is fed by ``streams.risk.feed``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from faust import streams as faust_streams

from ibstream import risk
from ibstream.contracts import ControlCommand, OrderIntent, TopicSpec, risk_decisions, utc_now
from ibstream.contracts.serde import DecodeError
from streams.context import AgentContext, events, messaging_of
from streams.risk.decisions import DecidedTable, decide_intents, sync_kill_switch_alerts, wait_until_ready
from streams.risk.modifications import judge_modification

log = logging.getLogger(__name__)

#: Intents decided together: their decisions are acknowledged by the broker in one round trip instead of one each
#: (waiting for every ack in turn held a worker to ~700 decisions/s).
RISK_BATCH_MAX = 256
#: How long a lone intent waits for company before it is decided: the latency a batch costs at low rates.
RISK_BATCH_WITHIN_SECONDS = 0.002


def risk_agent(
    ctx: AgentContext,
    view: risk.RiskView,
    limits: risk.RiskLimits,
    decided: DecidedTable,
    intents_spec: TopicSpec[OrderIntent],
    clock: Callable[[], Any] = utc_now,
) -> Callable[[Any], Any]:
    """The agent body over ``orders.intents.v1``; ``clock`` is market time (quote ages, the trading day, the
    order-rate throttle)."""

    async def agent(stream: Any) -> AsyncIterator[bool]:
        await wait_until_ready(view)
        async for batch in stream.take_events(RISK_BATCH_MAX, within=RISK_BATCH_WITHIN_SECONDS):
            events: list[Any] = []
            intents: list[OrderIntent] = []
            undecodable = 0
            for event in batch:
                intent = ctx.decode(intents_spec, event)
                if intent is None:
                    undecodable += 1
                    continue
                events.append(event)
                intents.append(intent)
            # A kill switch flipped since the last batch is alerted before its intents are judged by it.
            await sync_kill_switch_alerts(ctx, view)

            def remember(index: int, order_id: str, decision_id: str, events: list[Any] = events) -> None:
                with _current_event(events[index]):
                    decided[order_id] = decision_id

            results = await decide_intents(
                ctx,
                intents,
                view,
                limits,
                decided,
                clock,
                [event.message.headers for event in events],
                remember,
                messaging=[messaging_of(event) for event in events],
            )
            for event, result in zip(events, results, strict=True):
                if isinstance(result, BaseException):
                    ctx.dead_letter(intents_spec, event, result, "processing")
            # One result per event, even a dead-lettered one: Faust (and test_context) track progress by results.
            for _ in range(undecodable):
                yield False
            for result in results:
                yield result is True

    return agent


@contextmanager
def _current_event(event: Any) -> Iterator[None]:
    """Make ``event`` current for a Faust table write in this task only.

    A table write goes to the changelog partition of the current event, and after ``take_events`` none is current.
    Only the context variable is set, never ``Stream.current_event``: take_events' background task reads that
    attribute to buffer the next arriving message, and overwriting it swapped new intents for old ones (lost).
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def kill_switch_alerts(context: AgentContext, view: risk.RiskView) -> Callable[[], Awaitable[None]]:
    """The timer body that alerts a kill switch even while no intent arrives (the view changes on its own)."""

    async def sync() -> None:
        if view.ready.is_set():
            await sync_kill_switch_alerts(context, view)

    return sync


def modification_agent(
    ctx: AgentContext,
    view: risk.RiskView,
    limits: risk.RiskLimits,
    control_spec: TopicSpec[ControlCommand],
    clock: Callable[[], Any] = utc_now,
) -> Callable[[Any], Any]:
    """The agent body over ``control.v1``: a decision for every ``modify_order`` command
    (``streams.risk.modifications``), acknowledged before the next; other commands are the view feed's."""

    async def agent(stream: Any) -> AsyncIterator[bool]:
        await wait_until_ready(view)
        async for event in events(stream):
            message = event.message
            try:
                command = ctx.codec.decode(
                    str(message.topic), control_spec.record, message.value, int(message.partition), int(message.offset)
                )
            except DecodeError:
                yield False  # the view feed halts the scope an unreadable control record names
                continue
            now = clock()
            decision = judge_modification(command, view, limits, now, utc_now())
            if decision is None:
                yield False
                continue
            view.apply_decision(decision, market_time=now)
            await ctx.emitter.emit(risk_decisions.TOPIC, decision, wait=True)
            log.info(
                "risk decision on a modification",
                extra={
                    "order_id": decision.order_id,
                    "decision_id": decision.decision_id,
                    "approved": decision.approved,
                    "failed": [check.name for check in decision.checks if not check.passed],
                },
            )
            yield True

    return agent
