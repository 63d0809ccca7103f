"""A commit waits for the table changelog records queued before it (streams.delivery): the buffer's flush returns
only once every queued record is acknowledged, however long a send takes, and fails when a send failed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.exceptions import ProducerSendError
from faust.types.tuples import FutureMessage

from ibstream.config import load_settings
from streams.app import faust_app
from streams.delivery import DeliveredProducerBuffer


class HeldChannel:
    """A changelog topic whose sends wait until ``release`` (as a first send waits for topic metadata), then are
    acknowledged, or fail with ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.error = error
        self.handed_over: list[FutureMessage] = []

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        await self.release.wait()
        self.handed_over.append(fut)
        settle: Any = fut.set_exception if self.error is not None else fut.set_result
        asyncio.get_running_loop().call_soon(settle, self.error or "acknowledged")


def a_record(channel: HeldChannel) -> FutureMessage:
    return FutureMessage(SimpleNamespace(channel=channel))  # type: ignore[arg-type]  # the buffer reads .channel


async def started_buffer() -> DeliveredProducerBuffer:
    buffer = DeliveredProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buffer.start()
    return buffer


@pytest.mark.asyncio
async def test_a_flush_returns_only_after_every_queued_changelog_record_is_acknowledged() -> None:
    channel = HeldChannel()
    buffer = await started_buffer()
    try:
        records = [a_record(channel), a_record(channel)]
        for record in records:
            buffer.put(record)
        flush = asyncio.ensure_future(buffer.flush())
        # Longer than Faust's own flush waits (0.1 s) before it gives up and lets the commit go ahead.
        await asyncio.sleep(0.5)
        assert not flush.done() and not any(record.done() for record in records)
        channel.release.set()
        await asyncio.wait_for(flush, 10)
        assert all(record.result() == "acknowledged" for record in records)
        assert channel.handed_over == records and not buffer.undelivered
    finally:
        await buffer.stop()


@pytest.mark.asyncio
async def test_a_failed_changelog_send_fails_the_flush_so_the_offsets_are_not_committed() -> None:
    channel = HeldChannel(error=RuntimeError("NotLeaderForPartition"))
    channel.release.set()
    buffer = await started_buffer()
    try:
        buffer.put(a_record(channel))
        with pytest.raises(ProducerSendError, match="NotLeaderForPartition"):
            await asyncio.wait_for(buffer.flush(), 10)
        await asyncio.wait_for(buffer.flush(), 10)  # reported once: the next commit's flush has nothing pending
    finally:
        await buffer.stop()


@pytest.mark.asyncio
async def test_a_flush_after_the_buffer_stopped_sending_fails_instead_of_reporting_the_records_sent() -> None:
    channel = HeldChannel()  # never released: the records stay queued
    buffer = await started_buffer()
    buffer.put(a_record(channel))
    await buffer.stop()
    with pytest.raises(ProducerSendError, match="not sent"):
        await asyncio.wait_for(buffer.flush(), 10)


def test_the_streams_app_buffers_its_changelog_writes_in_the_delivered_buffer(tmp_path: Path) -> None:
    app = faust_app(load_settings(kafka_topic_prefix="unit."), tmp_path)
    assert isinstance(app.producer.buffer, DeliveredProducerBuffer)
    assert app.producer.buffer.app is app


def test_the_streams_app_fetches_only_a_little_ahead_of_its_agents(tmp_path: Path) -> None:
    """A signal or an intent must not wait behind thousands of prefetched bars (StreamsSettings)."""
    default = faust_app(load_settings(kafka_topic_prefix="unit."), tmp_path)
    assert default.conf.stream_buffer_maxsize == 256 < 4096
    assert default.conf.consumer_max_fetch_size == 64 * 1024 < 1024**2
    tuned = faust_app(
        load_settings(
            kafka_topic_prefix="unit.", streams_stream_buffer_maxsize=1000, streams_fetch_partition_bytes=4096
        ),
        tmp_path,
    )
    assert (tuned.conf.stream_buffer_maxsize, tuned.conf.consumer_max_fetch_size) == (1000, 4096)


@pytest.mark.asyncio
async def test_a_flush_waits_for_the_records_queued_before_it_not_for_those_the_agents_keep_writing() -> None:
    earlier, later = HeldChannel(), HeldChannel()
    buffer = await started_buffer()
    try:
        before = a_record(earlier)
        buffer.put(before)
        flush = asyncio.ensure_future(buffer.flush())
        await asyncio.sleep(0)
        buffer.put(a_record(later))  # written while the commit waits: it belongs to the next commit
        earlier.release.set()
        await asyncio.wait_for(flush, 10)
        assert before.done() and len(buffer.undelivered) == 1
        later.release.set()
        await asyncio.wait_for(buffer.flush(), 10)
        assert not buffer.undelivered
    finally:
        await buffer.stop()
