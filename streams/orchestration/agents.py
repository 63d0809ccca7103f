"""The orchestration agents: ``orchestration-router`` re-keys every input of a run onto the internal command topic,
``orchestration`` runs each command through the ``Orchestrator`` (which owns the run tables), and the
``orchestration-sweep`` timer asks each due run's owner to expire or forget it. Registered by ``streams.app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from ibstream.contracts import TopicSpec, utc_now
from ibstream.telemetry import consume_span, kafka_trace_headers
from streams.context import AgentContext, events, messaging_of
from streams.orchestration import commands
from streams.orchestration.orchestrator import Orchestrator


class CommandBus(Protocol):
    """Where the router sends re-keyed inputs: the internal ``orchestration-commands`` topic (a list in tests)."""

    async def forward(self, key: str, value: bytes) -> None:
        """Send one internal command keyed by the run's partition key."""


class FaustCommandBus:
    """The internal command topic. No per-send wait: Faust flushes its producer before it commits the router's
    input offsets, so a command is durable before its input counts as processed."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def forward(self, key: str, value: bytes) -> None:
        await self._topic.send(key=key.encode(), value=value, headers=kafka_trace_headers() or None)


def orchestration_router(
    ctx: AgentContext, bus: CommandBus, sources: Mapping[str, TopicSpec[Any]]
) -> Callable[[Any], Any]:
    """The agent body over signals, control, risk decisions and order events: re-key each input that concerns a
    run onto the command topic (see ``commands.command_key``). Stateless, so it needs no co-partitioning."""

    async def agent(stream: Any) -> AsyncIterator[bool]:
        async for event in events(stream):
            spec = sources[str(event.message.topic)]
            record = ctx.decode(spec, event)
            key = None if record is None else commands.command_key(record)
            if record is not None and key is not None:
                # The command carries its input's trace context to the orchestration agent.
                with consume_span(
                    "orchestration.route",
                    event.message.headers,
                    messaging=messaging_of(event),
                    topic=spec.name,
                ):
                    await bus.forward(key, commands.encode_command(record))
            yield key is not None

    return agent


def orchestration_agent(orchestrator: Orchestrator) -> Callable[[Any], Any]:
    """The agent body over the internal command topic; one event at a time, so a run's inputs apply in order.

    Planning awaits Agent0 through the async client: the event loop keeps serving other agents, heartbeats and
    commits meanwhile, while this agent holds its next command (ordering per partition, hence per run). The
    client's timeout × attempts and its circuit breaker bound that wait.
    """

    async def agent(stream: Any) -> AsyncIterator[str]:
        async for event in events(stream):
            yield await orchestrator.on_event(event)

    return agent


def orchestration_sweeper(
    orchestrator: Orchestrator, bus: CommandBus, clock: Callable[[], datetime] = utc_now
) -> Callable[[], Awaitable[None]]:
    """The periodic sweep: ask each due run's owner (through the command topic, since tables may only change
    inside stream processing) to expire it or forget it, and each stale signal slot's owner to drop it."""

    async def sweep() -> None:
        for key, tick in orchestrator.due_ticks(clock()):
            await bus.forward(key, tick)
        # The breaker turns half-open by time alone; the sweep notices even when no run needs planning.
        await orchestrator.sync_circuit_alert()

    return sweep
