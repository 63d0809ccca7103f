"""A full drain of Faust's producer buffer waits for every table change (streams.changelog_flush)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from streams import changelog_flush
from streams.changelog_flush import ChangelogFlushError, drain


class SlowBuffer:
    """A buffer whose messages leave one per ``send_seconds`` (longer than Faust's 0.1 s wait)."""

    def __init__(self, messages: int, send_seconds: float, state: str = "running") -> None:
        self.queued = messages
        self.state = state
        self.message_sent = asyncio.Event()
        self.send_seconds = send_seconds

    @property
    def size(self) -> int:
        return self.queued

    async def run(self) -> None:
        while self.queued:
            await asyncio.sleep(self.send_seconds)
            self.queued -= 1
            self.message_sent.set()


@pytest.mark.asyncio
async def test_a_full_drain_waits_out_slow_sends_until_the_buffer_is_empty() -> None:
    buffer = SlowBuffer(3, send_seconds=0.25)
    sender = asyncio.create_task(buffer.run())
    sent = await drain(buffer, None, deadline_seconds=10)
    await sender
    assert buffer.size == 0
    assert sent == 3


@pytest.mark.asyncio
async def test_a_bounded_drain_keeps_faust_back_pressure_behaviour() -> None:
    buffer = SlowBuffer(3, send_seconds=0.25)
    sender = asyncio.create_task(buffer.run())
    sent = await drain(buffer, 2, deadline_seconds=10)
    assert sent == 0 and buffer.size == 3  # gave up after one 0.1 s wait, as Faust's flush_atmost(n) does
    sender.cancel()


@pytest.mark.asyncio
async def test_a_drain_past_its_deadline_fails_the_commit() -> None:
    buffer = SlowBuffer(5, send_seconds=10)
    with pytest.raises(ChangelogFlushError, match="5 table changes still unsent"):
        await drain(buffer, None, deadline_seconds=0.3)


@pytest.mark.asyncio
async def test_a_stopped_buffer_with_messages_refuses_to_flush() -> None:
    with pytest.raises(RuntimeError, match="not Running"):
        await drain(SlowBuffer(1, 0.1, state="stopping"), None, deadline_seconds=1)


class SlowChannel:
    """A topic whose publish takes 0.25 s (a first send waiting for metadata on a loaded machine)."""

    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish_message(self, fut: Any, wait: bool) -> None:
        await asyncio.sleep(0.25)
        self.published.append(fut.n)


@pytest.mark.asyncio
async def test_fausts_own_buffer_drains_fully_once_installed() -> None:
    """The real ``ProducerBuffer`` with sends slower than 0.1 s: before ``install()`` its flush returned with the
    messages still queued (the offsets were then committed ahead of the table changes)."""
    changelog_flush.install()
    changelog_flush.install()  # idempotent
    channel = SlowChannel()
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buffer.start()
    try:
        for n in range(3):
            buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=channel)))  # type: ignore[arg-type]
        await buffer.flush()
        assert channel.published == [0, 1, 2]  # the last one too, not only the queue emptied
    finally:
        await buffer.stop()
