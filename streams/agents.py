"""Thin Faust agents: decode, call the pure logic, emit, remember. Registered on the app by ``streams.app``.

Every agent reads raw bytes and decodes with our Avro codec itself, so an undecodable record goes to the topic's
DLQ (through ``DeadLetterRouter``) and the agent moves on instead of crashing. Processing is at-least-once: each
agent makes its effects idempotent with deterministic ids and a Faust table of what it already did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from ibstream.contracts import (
    Bar,
    OrderIntent,
    Record,
    TopicSpec,
    bars,
    risk_decisions,
    routed_orders,
    signal_transitions,
    utc_now,
)
from ibstream.contracts import signals as signals_topic
from ibstream.contracts.serde import Codec, DecodeError
from streams import risk, signals

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


class Emitter(Protocol):
    """Where agents write records (Faust topics in the app, a list in tests)."""

    async def emit(self, spec: TopicSpec[R], record: R, *, wait: bool = False) -> None:
        """Send ``record`` keyed by its topic's key; ``wait`` blocks until the broker acknowledged it."""


class DeadLetters(Protocol):
    """Where records that cannot be decoded or processed go."""

    def route(self, spec: TopicSpec[Any], message: Any, error: BaseException, error_kind: str = "") -> Any: ...

    def flush(self) -> None: ...


class MessageView:
    """A Faust message seen through the accessor methods ``DeadLetterRouter`` reads from a Kafka message."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def topic(self) -> str:
        return str(self._message.topic)

    def partition(self) -> int:
        return int(self._message.partition)

    def offset(self) -> int:
        return int(self._message.offset)

    def key(self) -> bytes | None:
        key: bytes | None = self._message.key
        return key

    def value(self) -> bytes | None:
        value: bytes | None = self._message.value
        return value

    def headers(self) -> list[tuple[str, bytes]]:
        headers = self._message.headers or []
        pairs = headers.items() if isinstance(headers, dict) else headers
        return [(str(name), bytes(value or b"")) for name, value in pairs]


class FaustEmitter:
    """Encodes with our codec and sends raw bytes through the Faust topics declared for each contract."""

    def __init__(self, codec: Codec, topics: dict[str, Any], prefix: str) -> None:
        self._codec = codec
        self._topics = topics
        self._prefix = prefix

    async def emit(self, spec: TopicSpec[R], record: R, *, wait: bool = False) -> None:
        name = self._prefix + spec.name
        topic = self._topics[spec.name]
        pending = await topic.send(key=spec.key_of(record).encode(), value=self._codec.encode(name, record))
        if wait:
            await pending


class AgentContext:
    """What every agent shares: the codec, the output emitter, the dead-letter router and the topic prefix."""

    def __init__(self, codec: Codec, emitter: Emitter, dead_letters: DeadLetters, prefix: str) -> None:
        self.codec = codec
        self.emitter = emitter
        self.dead_letters = dead_letters
        self.prefix = prefix

    def decode(self, spec: TopicSpec[R], event: Any) -> R | None:
        """The event's record, or None after routing it to the DLQ."""
        message = event.message
        try:
            return self.codec.decode(
                str(message.topic), spec.record, message.value, int(message.partition), int(message.offset)
            )
        except DecodeError as error:
            self.dead_letter(spec, event, error, "decode")
            return None

    def dead_letter(self, spec: TopicSpec[Any], event: Any, error: BaseException, kind: str) -> None:
        self.dead_letters.route(spec, MessageView(event.message), error, kind)
        # Rare path: wait for the DLQ write so the offset Faust commits next never skips an undelivered letter.
        self.dead_letters.flush()


async def _events(stream: Any) -> AsyncIterator[Any]:
    async for event in stream.events():
        yield event


# --- risk ---


class DecidedTable(Protocol):
    """The Faust table of decided order ids (order_id → decision_id)."""

    def get(self, key: str) -> str | None: ...

    def __setitem__(self, key: str, value: str) -> None: ...


async def wait_until_ready(view: risk.RiskView, poll: float = 0.02) -> None:
    """Hold the first decision until the view caught up: before that a kill switch or an earlier decision of a
    redelivered intent could still be unread."""
    while not view.ready.is_set():
        await asyncio.sleep(poll)


async def decide_intent(
    ctx: AgentContext,
    intent: OrderIntent,
    view: risk.RiskView,
    limits: risk.RiskLimits,
    decided: DecidedTable,
    clock: Callable[[], Any] = utc_now,
) -> bool:
    """Decide one intent unless it was decided before; returns whether a decision was emitted.

    Commit order: the decision is acknowledged by the broker before the routed order is sent (no order without a
    recorded decision); the table entry is written last, so a crash in between re-decides with the same
    ``decision_id`` rather than losing the intent.
    """
    extra = {"order_id": intent.order_id, "symbol": intent.symbol, "run_id": intent.run_id}
    previous = decided.get(intent.order_id) or view.decision_for(intent.order_id)
    if previous is not None:
        log.info("intent already decided, skipped", extra={**extra, "decision_id": previous})
        return False
    decision = risk.decide(intent, view, limits, clock())
    await ctx.emitter.emit(risk_decisions.TOPIC, decision, wait=True)
    routed = risk.route(intent, decision)
    if routed is not None:
        await ctx.emitter.emit(routed_orders.TOPIC, routed)
    decided[intent.order_id] = decision.decision_id
    view.apply_decision(decision)
    failed = [check.name for check in decision.checks if not check.passed]
    log.info(
        "risk decision",
        extra={**extra, "decision_id": decision.decision_id, "approved": decision.approved, "failed": failed},
    )
    return True


def risk_agent(
    ctx: AgentContext,
    view: risk.RiskView,
    limits: risk.RiskLimits,
    decided: DecidedTable,
    intents_spec: TopicSpec[OrderIntent],
) -> Callable[[Any], Any]:
    """The agent body over ``orders.intents.v1``."""

    async def agent(stream: Any) -> AsyncIterator[bool]:
        await wait_until_ready(view)
        # One result per event, even a dead-lettered one: Faust (and test_context) track progress by results.
        async for event in _events(stream):
            intent = ctx.decode(intents_spec, event)
            if intent is None:
                yield False
                continue
            try:
                done = await decide_intent(ctx, intent, view, limits, decided)
            except Exception as error:  # a bug in a check must not stop every other order's decisions
                log.exception("risk decision failed", extra={"order_id": intent.order_id, "symbol": intent.symbol})
                ctx.dead_letter(intents_spec, event, error, "processing")
                done = False
            yield done

    return agent


# --- signals ---


class StateTable(Protocol):
    """A Faust table of JSON-able state (``signal-state``: symbol → state; ``runs``: run_id → run)."""

    def get(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...


async def process_bar(
    ctx: AgentContext, bar: Bar, table: StateTable, expiry_seconds: int, clock: Callable[[], Any] = utc_now
) -> int:
    """Fold one bar into its symbol's state; emit signals, then transitions; returns how many signals.

    Signals and transitions are sent before the state is stored: after a crash the bar is redelivered and
    produces the same ids again (deterministic), which consumers dedup, instead of a signal that never left.
    """
    state, new_signals, new_transitions = signals.on_bar(table.get(bar.symbol), bar, clock(), expiry_seconds)
    for signal in new_signals:
        await ctx.emitter.emit(signals_topic.TOPIC, signal)
        log.info(
            "signal",
            extra={"symbol": signal.symbol, "signal_id": signal.signal_id, "strategy": signal.strategy,
                   "side": signal.side.value, "confidence": signal.confidence},
        )  # fmt: skip
    for record in new_transitions:
        await ctx.emitter.emit(signal_transitions.TOPIC, record)
    table[bar.symbol] = state
    return len(new_signals)


def signals_agent(ctx: AgentContext, table: StateTable, expiry_seconds: int) -> Callable[[Any], Any]:
    """The agent body over ``md.bars.5s.v1``."""

    async def agent(stream: Any) -> AsyncIterator[int]:
        async for event in _events(stream):
            bar = ctx.decode(bars.TOPIC, event)
            if bar is None:
                yield 0
                continue
            try:
                count = await process_bar(ctx, bar, table, expiry_seconds)
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
        async for event in _events(stream):
            record = ctx.decode(signal_transitions.TOPIC, event)
            changed = None if record is None else signals.on_transition(table.get(record.symbol), record)
            if record is not None and changed is not None:
                table[record.symbol] = changed
            yield changed is not None

    return agent
