"""Static membership's hazard: two live workers with one instance id.

With ``IBSTREAM_STREAMS_INSTANCE_ID`` set, a worker that joins the group takes over the membership (and the
partitions) of whichever member holds that id: that is how a restarted worker gets its partitions back at once. If
the holder is still alive — two workers started with the same id by mistake — the broker fences it; aiokafka only
sees "local member_id was not recognized" on its next heartbeat and rejoins, fencing the other, and so on every few
seconds: both recover and process the same partitions in turn, without end (measured: a rejoin every ~3 s).

The worker therefore watches aiokafka's log: one fencing (a session that ran out after a long pause, a broker
restart) is normal, a burst of them within four sessions means a twin, and one of the two stops with exit code 3
naming the setting (as execution does when another executor fenced it). Which one: as a restart does, the newcomer
wins. A worker that had been a member undisturbed for a while (``ESTABLISHED_HEARTBEATS``) when the burst began
yields after ``TWIN_LIMIT`` fencings; one that had just joined waits for ``NEWCOMER_LIMIT``, by when the other one
has stopped and the fencing has ended. (Two started together both count as newcomers and both stop.)
"""

from __future__ import annotations

import logging
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: aiokafka's heartbeat warning when the coordinator no longer knows this member (fenced or expired).
FENCED_MESSAGE = "local member_id was not recognized"
#: aiokafka's info line once this worker (re)joined the group.
JOINED_MESSAGE = "Joined group"
COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
TWIN_LIMIT = 3
NEWCOMER_LIMIT = 9
#: Heartbeats undisturbed in the group before a burst of fencings that make a worker the established one.
ESTABLISHED_HEARTBEATS = 3
TWIN_WINDOW_SECONDS = 60.0
#: The exit code of a worker that stopped because another one holds its instance id.
EXIT_FENCED = 3


@dataclass
class TwinDetector:
    """Counts fencings: True once a burst of them (within ``window`` seconds) reaches this worker's limit, the lower
    one if it had been a member undisturbed for ``ESTABLISHED_HEARTBEATS`` heartbeats when the burst began."""

    heartbeat: float = 3.0
    window: float = TWIN_WINDOW_SECONDS
    fenced_at: deque[float] = field(default_factory=deque)
    joined_at: float | None = None
    established: bool = False

    def joined(self, at: float) -> None:
        self.joined_at = at

    def fenced(self, at: float) -> bool:
        while self.fenced_at and self.fenced_at[0] < at - self.window:
            self.fenced_at.popleft()
        if not self.fenced_at:  # a new burst: how long had this worker been a member undisturbed?
            member_for = at - self.joined_at if self.joined_at is not None else 0.0
            self.established = member_for >= ESTABLISHED_HEARTBEATS * self.heartbeat
        self.fenced_at.append(at)
        return len(self.fenced_at) >= (TWIN_LIMIT if self.established else NEWCOMER_LIMIT)


class TwinGuard(logging.Handler):
    """Reads aiokafka's group coordinator log; on a twin, logs why and calls ``on_twin`` once."""

    def __init__(self, instance_id: str, on_twin: Callable[[], None], detector: TwinDetector | None = None) -> None:
        super().__init__(logging.INFO)
        self.instance_id = instance_id
        self.on_twin = on_twin
        self.detector = detector or TwinDetector()
        self.tripped = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(JOINED_MESSAGE):
            self.detector.joined(record.created)
        if self.tripped or FENCED_MESSAGE not in message:
            return
        if self.detector.fenced(record.created):
            self.tripped = True
            log.error(
                "another streams worker runs with this instance id: stopping (IBSTREAM_STREAMS_INSTANCE_ID must "
                "differ per worker)",
                extra={"instance_id": self.instance_id, "fenced": len(self.detector.fenced_at)},
            )
            self.on_twin()


def stop_this_process() -> None:
    """SIGTERM to ourselves: the Faust worker stops cleanly (commit, then close)."""
    os.kill(os.getpid(), signal.SIGTERM)


def install_twin_guard(
    instance_id: str | None, session_seconds: float, on_twin: Callable[[], None] = stop_this_process
) -> TwinGuard | None:
    """Watch for a twin when static membership is on (``instance_id`` set); None otherwise. Twins fence each other
    once per heartbeat (a fifth of the session), so the window is four sessions: ~10 fencings of a twin, while a
    session running out now and then stays below the limit."""
    if instance_id is None:
        return None
    detector = TwinDetector(heartbeat=session_seconds / 5, window=max(TWIN_WINDOW_SECONDS, 4 * session_seconds))
    guard = TwinGuard(instance_id, on_twin, detector)
    coordinator = logging.getLogger(COORDINATOR_LOGGER)
    # The guard reads the join lines (INFO): a few per rebalance, logged even when the worker's level is WARNING.
    if coordinator.getEffectiveLevel() > logging.INFO:
        coordinator.setLevel(logging.INFO)
    coordinator.addHandler(guard)
    return guard
