"""The account equity orchestration sizes plans by: NetLiquidation from the newest ``account.v1`` record.

``NewestAccount`` is the pure part: it folds account records (newest by IB's ``time`` per account) and answers the
NetLiquidation of the account orders go to (``IBSTREAM_EXECUTION_ACCOUNT``), or of the newest record when no
account is configured. ``AccountFeed`` reads ``account.v1`` into it from a background thread with a private group
(no commits), as the risk view feed does, so every worker knows the equity although the topic's one partition
belongs to one consumer. It starts ``RECENT_RECORDS`` before the end rather than at the beginning: the topic keeps a
year of every change IB reported, and only the newest record per account counts.

Agent0 stays stateless: orchestration passes the equity in each plan request; until the first record arrives it
passes none, and Agent0 sizes by ``IBSTREAM_ACCOUNT_EQUITY`` with a warning.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from ibstream.config import Settings
from ibstream.contracts import AccountState, account_states
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.kafka.clients import create_consumer, tail_offset

log = logging.getLogger(__name__)

#: How far before the end of ``account.v1`` the feed starts reading (records, over its one partition).
RECENT_RECORDS = 1000


class NewestAccount:
    """The newest account state per account; thread-safe (the feed writes, planning reads)."""

    def __init__(self, account: str | None = None) -> None:
        self._account = account
        self._states: dict[str, AccountState] = {}
        self._lock = threading.Lock()

    def apply(self, state: AccountState) -> None:
        with self._lock:
            known = self._states.get(state.account)
            if known is None or state.time >= known.time:  # a redelivered older record does not win
                self._states[state.account] = state

    def net_liquidation(self) -> float | None:
        """NetLiquidation of the configured account (or of the newest record); None before any record."""
        with self._lock:
            if self._account is not None:
                state = self._states.get(self._account)
            else:
                state = max(self._states.values(), key=lambda known: known.time, default=None)
        if state is None or state.net_liquidation <= 0:
            return None  # a non-positive NetLiquidation cannot size a trade; Agent0 falls back and says so
        return state.net_liquidation


class AccountFeed:
    """Reads ``account.v1`` into a ``NewestAccount`` from a daemon thread."""

    def __init__(self, settings: Settings, codec: Codec, account: NewestAccount, poll_seconds: float = 0.2) -> None:
        self._settings = settings
        self._codec = codec
        self.account = account
        self._poll = poll_seconds
        self._topic = settings.kafka.topic_prefix + account_states.TOPIC.name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for partition in partitions:
            partition.offset = tail_offset(consumer, partition, RECENT_RECORDS)
        consumer.assign(partitions)

    def start(self) -> None:
        group = f"{self._settings.kafka.topic_prefix}{self._settings.streams.app_id}-account-{uuid.uuid4().hex[:12]}"
        consumer = create_consumer(
            self._settings, group, **{"enable.auto.commit": False, "partition.assignment.strategy": "range"}
        )
        consumer.subscribe([self._topic], on_assign=self._on_assign)
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="account-feed", daemon=True)
        self._thread.start()

    def _run(self, consumer: Any) -> None:
        try:
            while not self._stop.is_set():
                message = consumer.poll(self._poll)
                if message is None:
                    continue
                if message.error() is not None:
                    log.warning("account feed error", extra={"error": str(message.error())})
                    continue
                self._apply(message)
        finally:
            consumer.close()

    def _apply(self, message: Any) -> None:
        try:
            state = self._codec.decode(
                message.topic(), AccountState, message.value(), message.partition(), message.offset()
            )
        except DecodeError as error:
            log.warning("account feed skipped an undecodable record", extra={"error": str(error)})
            return
        self.account.apply(state)
        self.applied += 1

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
