"""Reading a test's topics back, for assertions."""

from __future__ import annotations

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
