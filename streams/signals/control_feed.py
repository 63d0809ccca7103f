"""The strategy switches feed: every signals worker reads control.v1 in full into its ``StrategyRuntime``.

control.v1 has one partition, which a Faust agent would give to one worker only; every worker needs every switch
(any worker may hold any symbol's bars), so each reads the topic from a daemon thread with a private consumer (no
group offsets, always from the beginning: the compacted topic holds the newest switch per instance, which is how
a switch survives restarts). ``runtime.ready`` is set once the topic was read to its end; the signals agent holds
bars until then, so a restarted worker never runs an instance that was switched off. A record that does not decode
and whose key names an instance disables it (fail closed); other unreadable records are risk's and execution's to
judge and are skipped here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from ibstream.config import Settings
from ibstream.contracts import ControlCommand, control
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.kafka.clients import create_consumer
from ibstream.strategies.runtime import StrategyRuntime

log = logging.getLogger(__name__)


class StrategyControlFeed:
    """Folds control.v1 into a ``StrategyRuntime`` from a daemon thread."""

    def __init__(self, settings: Settings, codec: Codec, runtime: StrategyRuntime, poll_seconds: float = 0.1) -> None:
        self._settings = settings
        self._codec = codec
        self.runtime = runtime
        self._poll = poll_seconds
        self._topic = settings.kafka.topic_prefix + control.TOPIC.name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0

    def start(self) -> None:
        group = f"{self._settings.kafka.topic_prefix}{self._settings.streams.app_id}-strategies-{uuid.uuid4().hex[:12]}"
        consumer = create_consumer(self._settings, group, **{"enable.auto.commit": False, "enable.partition.eof": True})
        consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in range(control.TOPIC.partitions)])
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="strategy-control-feed", daemon=True)
        self._thread.start()

    def _run(self, consumer: Any) -> None:
        pending = set(range(control.TOPIC.partitions))
        try:
            while not self._stop.is_set():
                message = consumer.poll(self._poll)
                if message is None:
                    continue
                error = message.error()
                if error is None:
                    self._apply(message)
                elif error.name() == "_PARTITION_EOF":
                    pending.discard(message.partition())
                    if not pending and not self.runtime.ready.is_set():
                        log.info("strategy switches caught up", extra={"applied": self.applied})
                        self.runtime.ready.set()
                else:
                    log.warning("strategy control feed error", extra={"error": str(error)})
        finally:
            consumer.close()

    def _apply(self, message: Any) -> None:
        if message.value() is None:
            return  # a compaction tombstone
        try:
            command = self._codec.decode(
                message.topic(), ControlCommand, message.value(), message.partition(), message.offset()
            )
        except DecodeError as error:
            switch = self.runtime.apply_undecodable(message.key(), str(error))
            if switch is not None:
                log.error("unreadable control record disables a strategy", extra={"instance": switch.instance})
            return
        self.runtime.apply(command)
        self.applied += 1

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
