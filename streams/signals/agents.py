"""The signals agents: ``signals`` folds each bar of the bar topics the strategy instances declare
(``md.bars.{timeframe}.v1``; the built-ins read ``md.bars.5s.v1``) into its symbol's state (``signal-state`` table)
and emits signals, transitions and the alerts of instances that failed (``ibstream.strategies.runtime``);
``transitions`` keeps that state's active signals current from ``signals.transitions.v1``. Thin: the logic is
``ibstream.strategies.lifecycle``; registered by ``streams.app``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from ibstream.contracts import Bar, Signal, SignalTransition, bars, signal_transitions, utc_now
from ibstream.contracts import signals as signals_topic
from ibstream.strategies import lifecycle
from ibstream.strategies.runtime import StrategyRuntime
from ibstream.strategies.sdk import TIMEFRAMES, bar_topic_name
from ibstream.telemetry import consume_span
from streams.context import AgentContext, events, messaging_of
from streams.observability import SIGNALS

log = logging.getLogger(__name__)


class StateTable(Protocol):
    """A Faust table of JSON-able state (``signal-state``: symbol → state; ``runs``: run_id → run)."""

    def get(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...


async def process_bar(
    ctx: AgentContext,
    bar: Bar,
    table: StateTable,
    expiry_seconds: int,
    clock: Callable[[], Any] = utc_now,
    headers: Any = None,
    messaging: Mapping[str, str | int] | None = None,
    runtime: StrategyRuntime | None = None,
    timeframe: str = lifecycle.BASE_TIMEFRAME,
) -> int:
    """Fold one bar into its symbol's state; emit signals, then transitions, then the alerts of instances that
    failed on it; returns how many signals. Without a ``runtime``, the built-ins with their default params.

    Signals and transitions are sent before the state is stored: after a crash the bar is redelivered and
    produces the same ids again (deterministic), which consumers dedup, instead of a signal that never left.
    """
    if runtime is None:
        state, new_signals, new_transitions = lifecycle.on_bar(table.get(bar.symbol), bar, clock(), expiry_seconds)
    else:
        state, new_signals, new_transitions = lifecycle.on_bar(
            table.get(bar.symbol),
            bar,
            clock(),
            expiry_seconds,
            runtime.evaluators(bar.symbol, timeframe),
            timeframe=timeframe,
            window=runtime.window(timeframe),
        )
    if new_signals:
        # Only a bar that yields a signal gets a span (continuing the producer's span of the bar): at replay or
        # demo speeds a span for every bar cost the event loop that orchestration shares.
        with consume_span("signals.bar", headers, messaging=messaging, symbol=bar.symbol, signals=len(new_signals)):
            await _emit_bar_results(ctx, new_signals, new_transitions)
    else:
        await _emit_bar_results(ctx, new_signals, new_transitions)
    if runtime is not None:
        await ctx.emit_alerts(runtime.drain_alerts())
    table[bar.symbol] = state
    return len(new_signals)


async def _emit_bar_results(
    ctx: AgentContext, new_signals: list[Signal], new_transitions: list[SignalTransition]
) -> None:
    for signal in new_signals:
        await ctx.emitter.emit(signals_topic.TOPIC, signal)
        SIGNALS.add(1, {"strategy": signal.strategy, "symbol": signal.symbol, "side": signal.side.value})
        log.info(
            "signal",
            extra={
                "symbol": signal.symbol,
                "signal_id": signal.signal_id,
                "strategy": signal.strategy,
                "side": signal.side.value,
                "confidence": signal.confidence,
            },
        )
    for record in new_transitions:
        await ctx.emitter.emit(signal_transitions.TOPIC, record)


def timeframe_of(topic: str, prefix: str = "") -> str:
    """The timeframe a bar topic carries (``md.bars.1m.v1`` → ``1m``); the 5-second one for anything else."""
    name = topic.removeprefix(prefix)
    for timeframe in TIMEFRAMES:
        if name == bar_topic_name(timeframe):
            return timeframe
    return lifecycle.BASE_TIMEFRAME


async def _ready(runtime: StrategyRuntime | None) -> None:
    """Hold bars until the strategy switches are read (fail closed: a switched-off instance must not run)."""
    while runtime is not None and not runtime.ready.is_set():
        await asyncio.sleep(0.05)


def signals_agent(
    ctx: AgentContext, table: StateTable, expiry_seconds: int, runtime: StrategyRuntime | None = None
) -> Callable[[Any], Any]:
    """The agent body over the bar topics."""

    async def agent(stream: Any) -> AsyncIterator[int]:
        async for event in events(stream):
            await _ready(runtime)
            bar = ctx.decode(bars.TOPIC, event)
            if bar is None:
                yield 0
                continue
            try:
                count = await process_bar(
                    ctx,
                    bar,
                    table,
                    expiry_seconds,
                    headers=event.message.headers,
                    messaging=messaging_of(event),
                    runtime=runtime,
                    timeframe=timeframe_of(str(event.message.topic), ctx.prefix),
                )
            except Exception as error:
                log.exception("bar processing failed", extra={"symbol": bar.symbol})
                ctx.dead_letter(bars.TOPIC, event, error, "processing")
                count = 0
            yield count

    return agent


def transitions_agent(ctx: AgentContext, table: StateTable) -> Callable[[Any], Any]:
    """The agent body over ``signals.transitions.v1``: keeps the active signal's status current, so a rejected
    or filled signal frees its (symbol, strategy) slot. Co-partitioned with bars (both keyed by symbol)."""

    async def agent(stream: Any) -> AsyncIterator[bool]:
        async for event in events(stream):
            record = ctx.decode(signal_transitions.TOPIC, event)
            changed = None if record is None else lifecycle.on_transition(table.get(record.symbol), record)
            if record is not None and changed is not None:
                table[record.symbol] = changed
            yield changed is not None

    return agent
