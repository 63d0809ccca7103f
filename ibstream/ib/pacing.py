"""One pacing governor for all outbound IB traffic.

IB disconnects a client that sends more than 50 messages/s (error 100) and answers historical requests that
break its limits with error 162 "pacing violation". Rather than react to those errors, every request asks the
governor first and waits as long as it says. Limits (IB's historical_limitations page, bars ≤ 30 s):
no identical request within 15 s; fewer than 6 requests for the same contract within 2 s; at most 60 requests
in any 10 minutes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class PacingLimits:
    """The limits enforced; defaults leave headroom under IB's published figures."""

    messages_per_second: float = 45.0
    historical_identical_seconds: float = 15.0
    historical_same_contract: int = 5
    historical_same_contract_seconds: float = 2.0
    historical_per_window: int = 60
    historical_window_seconds: float = 600.0
    #: Added to every historical window: our clock and the gateway's see a request at slightly different times,
    #: and a request sent exactly at a window's edge can land inside it there.
    safety_margin_seconds: float = 0.25


class PacingGovernor:
    """Thread-safe: the reader thread and the main loop may both send."""

    def __init__(self, limits: PacingLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or PacingLimits()
        self._clock = clock
        self._lock = threading.Lock()
        self._messages: deque[float] = deque()
        self._historical: deque[float] = deque()
        self._by_contract: dict[Hashable, deque[float]] = {}
        self._identical: dict[Hashable, float] = {}
        self.waited_seconds = 0.0

    def _message_wait(self, now: float) -> float:
        # Slots are booked at their future send times: a new message must come at least one second after the
        # message `limit` places before it, and not before the last booked one.
        window = 1.0
        while self._messages and now - self._messages[0] >= window:
            self._messages.popleft()
        limit = int(self.limits.messages_per_second)
        earliest = now
        if self._messages:
            earliest = max(earliest, self._messages[-1])
        if len(self._messages) >= limit:
            earliest = max(earliest, self._messages[len(self._messages) - limit] + window)
        return earliest - now

    def _historical_wait(self, now: float, contract: Hashable, identity: Hashable) -> float:
        limits = self.limits
        margin = limits.safety_margin_seconds
        waits = [0.0]
        last_identical = self._identical.get(identity)
        if last_identical is not None:
            waits.append(limits.historical_identical_seconds + margin - (now - last_identical))
        same_window = limits.historical_same_contract_seconds + margin
        recent = self._by_contract.setdefault(contract, deque())
        while recent and now - recent[0] >= same_window:
            recent.popleft()
        if len(recent) >= limits.historical_same_contract:
            # Wait until enough of the window has expired for this request to fit.
            waits.append(same_window - (now - recent[len(recent) - limits.historical_same_contract]))
        window = limits.historical_window_seconds + margin
        while self._historical and now - self._historical[0] >= window:
            self._historical.popleft()
        if len(self._historical) >= limits.historical_per_window:
            waits.append(window - (now - self._historical[len(self._historical) - limits.historical_per_window]))
        return max(waits)

    def historical_delay(self, contract: Hashable, identity: Hashable) -> float:
        """How long a historical request would wait now, without booking it: callers that must not block (the
        producer's loop also carries live data) hold the request back until this is zero."""
        with self._lock:
            now = self._clock()
            return max(0.0, self._historical_wait(now, contract, identity))

    def reserve(self, historical: tuple[Hashable, Hashable] | None = None) -> float:
        """Book one message (and, for a historical request, its (contract, identity)); return how long the
        caller must wait before sending it. The slot is booked at the time the wait ends."""
        with self._lock:
            now = self._clock()
            wait = self._message_wait(now)
            if historical is not None:
                wait = max(wait, self._historical_wait(now, *historical))
            at = now + max(0.0, wait)
            self._messages.append(at)
            if historical is not None:
                contract, identity = historical
                self._historical.append(at)
                self._by_contract.setdefault(contract, deque()).append(at)
                self._identical[identity] = at
            return max(0.0, wait)

    def acquire(self, historical: tuple[Hashable, Hashable] | None = None) -> None:
        """Block until the message may be sent."""
        wait = self.reserve(historical)
        if wait > 0:
            self.waited_seconds += wait
            time.sleep(wait)
