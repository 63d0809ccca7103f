"""The ``bars`` agent: folds each bar of ``md.bars.5s.v1`` into its symbol's state (``bar-aggregates`` table) and
emits the aggregates to ``md.bars.{1m,5m,15m,1h,1d}.v1``. Thin: the logic is ``streams.bars.aggregation``.

Crash points: aggregates are sent before the state is stored, so a bar redelivered after a crash emits the same
aggregate (same (symbol, start) and revision) again, which readers dedup, rather than one that never left.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from ibstream.contracts import Bar, bars, utc_now
from streams.bars.aggregation import AggregationConfig, on_bar
from streams.context import AgentContext, events
from streams.observability import BAR_AGGREGATES
from streams.signals.agents import StateTable

log = logging.getLogger(__name__)


async def process_bar(
    ctx: AgentContext,
    bar: Bar,
    table: StateTable,
    config: AggregationConfig,
    clock: Callable[[], datetime] = utc_now,
) -> int:
    """Fold one 5-second bar into its symbol's state and emit what it completes or corrects; returns how many."""
    state, emitted = on_bar(table.get(bar.symbol), bar, clock(), config)
    for item in emitted:
        await ctx.emitter.emit(bars.AGGREGATE_TOPICS[item.timeframe], item.bar)
        BAR_AGGREGATES.add(1, {"timeframe": item.timeframe, "kind": "revision" if item.bar.revision > 0 else "new"})
        if item.bar.revision > 0:
            log.info(
                "bar revised",
                extra={
                    "symbol": bar.symbol,
                    "timeframe": item.timeframe,
                    "start": item.bar.start.isoformat(),
                    "revision": item.bar.revision,
                },
            )
    table[bar.symbol] = state
    return len(emitted)


def bars_agent(ctx: AgentContext, table: StateTable, config: AggregationConfig) -> Callable[[Any], Any]:
    """The agent body over ``md.bars.5s.v1``."""

    async def agent(stream: Any) -> AsyncIterator[int]:
        async for event in events(stream):
            bar = ctx.decode(bars.TOPIC, event)
            if bar is None:
                yield 0
                continue
            try:
                count = await process_bar(ctx, bar, table, config)
            except Exception as error:
                log.exception("bar aggregation failed", extra={"symbol": bar.symbol})
                ctx.dead_letter(bars.TOPIC, event, error, "processing")
                count = 0
            yield count

    return agent
