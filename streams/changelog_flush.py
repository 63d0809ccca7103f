"""Table changes reach their changelog before the offsets that made them are committed.

faust-streaming (0.15.3) commits a worker's offsets after ``Producer.flush()``, which first drains the
``ProducerBuffer`` that table changes wait in (``Table.send_changelog`` → ``send_soon``). But the buffer's drain gives
up as soon as one message takes longer than 0.1 s to be handed to the Kafka client (``ProducerBuffer.flush_atmost``
returns on that timeout with messages still queued) — and a loaded machine, or a first send that waits for a topic's
metadata, takes that long. The offsets are then committed while the table changes they made are still in the buffer;
a worker stopped or killed at that point restarts with the offsets past those records and a changelog without their
changes: its table recovers without them (seen in CI: a restarted worker's signal window, and an open signal's score,
recovered empty).

Faust's buffer counts only queued messages, not the one its sender took from the queue and is still handing to the
client; ``install()`` also counts that one (``in_flight``), so a drain does not end while the last change is in hand.

``install()`` makes a full drain (``flush()``, ``max_messages=None``: what runs before every commit and at shutdown)
wait until the buffer is empty, for as long as ``deadline_seconds``; past that it raises, so the commit fails instead
of committing offsets whose changes were not sent (at least once: the records are processed again). The bounded
drain Faust uses for back-pressure (``wait_until_ebb`` → ``flush_atmost(n)``) keeps its original behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from faust.transport.producer import ProducerBuffer

log = logging.getLogger(__name__)

#: How long a full drain waits for the buffer to empty before it fails the commit.
DEFAULT_DEADLINE_SECONDS = 60.0
#: How long one wait for the next sent message lasts (Faust's own figure); the drain goes on after it.
_WAIT_SECONDS = 0.1


class ChangelogFlushError(RuntimeError):
    """The buffer of table changes did not empty in time: the offsets after them must not be committed."""


class Buffer(Protocol):
    """What the drain reads of a ``ProducerBuffer``."""

    state: str
    message_sent: asyncio.Event

    @property
    def size(self) -> int: ...


def unsent(buffer: Buffer) -> int:
    """Messages queued plus the one being handed to the Kafka client."""
    in_flight: int = getattr(buffer, _IN_FLIGHT, 0)
    return buffer.size + in_flight


_IN_FLIGHT = "_ibstream_in_flight"


async def drain(buffer: Buffer, max_messages: int | None, deadline_seconds: float) -> int:
    """Faust's ``flush_atmost`` with a full drain that waits until the buffer is empty (module docstring); returns
    how many messages were sent while it waited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    flushed = 0
    while unsent(buffer) and (max_messages is None or flushed < max_messages):
        if buffer.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        buffer.message_sent.clear()
        try:
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=_WAIT_SECONDS)
            flushed += 1
        except TimeoutError:
            if max_messages is not None:
                return flushed  # back-pressure only: Faust's behaviour
            if loop.time() > deadline:
                raise ChangelogFlushError(
                    f"{unsent(buffer)} table changes still unsent after {deadline_seconds:.0f} s; not committing"
                ) from None
    return flushed


def install(deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """Replace ``ProducerBuffer.flush_atmost`` with ``drain`` and count the message in hand (idempotent)."""
    current: Callable[..., Awaitable[int]] = ProducerBuffer.flush_atmost
    if getattr(current, "_ibstream_drain", False):
        return
    send_pending: Callable[[Any, Any], Awaitable[None]] = ProducerBuffer._send_pending

    async def flush_atmost(self: Any, max_messages: int | None) -> int:
        return await drain(self, max_messages, deadline_seconds)

    async def counted_send_pending(self: Any, fut: Any) -> None:
        setattr(self, _IN_FLIGHT, getattr(self, _IN_FLIGHT, 0) + 1)
        try:
            await send_pending(self, fut)
        finally:
            setattr(self, _IN_FLIGHT, getattr(self, _IN_FLIGHT) - 1)

    flush_atmost._ibstream_drain = True  # type: ignore[attr-defined]
    ProducerBuffer.flush_atmost = flush_atmost  # type: ignore[method-assign]
    ProducerBuffer._send_pending = counted_send_pending  # type: ignore[method-assign]
    log.debug("faust ProducerBuffer.flush_atmost drains fully before commits")
