"""Reading a test's topics back, for assertions."""

from __future__ import annotations

import contextlib
import time
import uuid

from confluent_kafka import Consumer, Message

from ibstream.config import Settings
from ibstream.kafka.clients import consumer_config


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 30.0) -> list[Message]:
    """Read ``topic`` from the beginning until ``expected`` messages arrived (or the timeout passed)."""
    consumer = Consumer(
        consumer_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False})
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise AssertionError(f"consumer error on {topic}: {message.error()}")
            messages.append(message)
    finally:
        consumer.close()
    return messages


#: Consumers the long-lived test readers opened and have not closed. A consumer left to the garbage collector is
#: destroyed by whichever thread runs the collection; when that is one of librdkafka's own callback threads,
#: rd_kafka_destroy joins the thread it runs on and the test process hangs for good (seen once in a full run).
_OPEN: list[Consumer] = []


def tracked(consumer: Consumer) -> Consumer:
    """Register ``consumer`` to be closed at the end of the test if the test does not close it."""
    _OPEN.append(consumer)
    return consumer


def untrack(consumer: Consumer) -> None:
    """Close ``consumer`` now and forget it."""
    with contextlib.suppress(ValueError):
        _OPEN.remove(consumer)
    with contextlib.suppress(RuntimeError):  # already closed
        consumer.close()


def close_leftover_consumers() -> int:
    """Close every tracked consumer still open; returns how many there were."""
    leftovers = list(_OPEN)
    for consumer in leftovers:
        untrack(consumer)
    return len(leftovers)
