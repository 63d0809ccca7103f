"""The ``outcomes`` agent: one stream over ``signals.v1`` and ``md.bars.5s.v1`` (both keyed by symbol, six
partitions: a symbol's signals and bars reach the same worker and the same partition of the ``signal-scoring``
table), folding each record into its symbol's state and emitting outcomes to ``signals.outcomes.v1``. Thin: the logic
is ``ibstream.strategies.scoring`` (in the core: the backtest scores signals with it too).

Crash points: outcomes are sent before the state is stored; a record redelivered after a crash scores the same
signal again with the same values (``signal_id`` identifies an outcome; the warehouse keeps one per signal).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any

from ibstream.contracts import TopicSpec, bars, signal_outcomes, signals, utc_now
from ibstream.strategies import scoring
from streams.context import AgentContext, events
from streams.observability import SIGNAL_OUTCOMES
from streams.signals.agents import StateTable

log = logging.getLogger(__name__)


async def process(
    ctx: AgentContext,
    spec: TopicSpec[Any],
    event: Any,
    table: StateTable,
    sizing: scoring.Sizing,
    clock: Callable[[], datetime] = utc_now,
) -> int:
    """Fold one signal or bar into its symbol's state and emit the outcomes it completes; returns how many."""
    record = ctx.decode(spec, event)
    if record is None:
        return 0
    if spec is signals.TOPIC:
        state, outcomes = scoring.on_signal(table.get(record.symbol), record, sizing, clock())
    else:
        state, outcomes = scoring.on_bar(table.get(record.symbol), record, clock())
    for outcome in outcomes:
        await ctx.emitter.emit(signal_outcomes.TOPIC, outcome)
        SIGNAL_OUTCOMES.add(1, {"strategy": outcome.strategy, "outcome": outcome.outcome.value})
        log.info(
            "signal scored",
            extra={
                "symbol": outcome.symbol,
                "signal_id": outcome.signal_id,
                "strategy": outcome.strategy,
                "outcome": outcome.outcome.value,
                "r_multiple": round(outcome.r_multiple, 4),
            },
        )
    table[record.symbol] = state
    return len(outcomes)


def outcomes_agent(
    ctx: AgentContext, table: StateTable, sizing: scoring.Sizing, sources: Mapping[str, TopicSpec[Any]]
) -> Callable[[Any], Any]:
    """The agent body over signals and bars; ``sources`` maps each prefixed topic name to its contract."""

    async def agent(stream: Any) -> AsyncIterator[int]:
        async for event in events(stream):
            spec = sources.get(str(event.message.topic), bars.TOPIC)
            try:
                count = await process(ctx, spec, event, table, sizing)
            except Exception as error:
                log.exception("outcome scoring failed", extra={"topic": spec.name})
                ctx.dead_letter(spec, event, error, "processing")
                count = 0
            yield count

    return agent
