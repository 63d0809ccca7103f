"""The producer's health as the health server sees it: a snapshot, never the live state.

The producer's loop thread owns all state; it replaces the snapshot (under a lock) once a second and when it
stops. The health server's threads and the metrics' gauge callbacks only read the snapshot, so they never race
the loop. Kafka's reachability is probed from the reader's side, at most every ``KAFKA_CHECK_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ibstream.ib.connection import ConnectionState
from ibstream.kafka.records import RecordProducer

KAFKA_CHECK_SECONDS = 5.0
KAFKA_PROBE_TIMEOUT_SECONDS = 2.0


class HealthSnapshot:
    """The latest snapshot of the producer's state, and /ready's verdict on it."""

    def __init__(self, sink: RecordProducer) -> None:
        self.sink = sink
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._kafka_ok = True
        self._kafka_checked = -1e9

    def update(self, snapshot: dict[str, Any]) -> None:
        with self._lock:
            self._snapshot = snapshot

    def get(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)

    def observe_staleness(self, _options: Any) -> list[Any]:
        """The staleness gauge: seconds since the last tick per symbol."""
        from opentelemetry.metrics import Observation

        ages = dict(self.get().get("tick_age_seconds", {}))
        return [Observation(age, {"symbol": symbol}) for symbol, age in ages.items() if age is not None]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /ready: IB connected, Kafka reachable, every subscription delivering (or the market closed)."""
        snapshot = self.get()
        wall = time.monotonic()
        if wall - self._kafka_checked > KAFKA_CHECK_SECONDS:
            self._kafka_ok = self.sink.reachable(KAFKA_PROBE_TIMEOUT_SECONDS)
            self._kafka_checked = wall
        snapshot["kafka_reachable"] = self._kafka_ok
        subscriptions_ok = bool(snapshot.get("subscriptions")) and (
            not snapshot.get("market_open") or not snapshot.get("stale_symbols")
        )
        ready = (
            snapshot.get("connection_state") == ConnectionState.CONNECTED.value and self._kafka_ok and subscriptions_ok
        )
        return ready, snapshot
