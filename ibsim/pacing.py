"""IB historical-data pacing rules (pure; the caller supplies timestamps).

IB documents three limits for historical requests of bars of 30 seconds or less
(tws-api/historical_limitations.html): no identical request within 15 seconds, no six or more
requests for the same contract, exchange and tick type within two seconds, and no more than 60
requests in any ten-minute window. BID_ASK requests count twice.

ibsim measures them on the **wall clock**, not the simulated clock: pacing is a server-side rate
limit in real time, and the client-side governor a producer needs is a wall-clock governor. With
an accelerated sim clock, sim-time pacing would punish a client that is perfectly well-behaved.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PACING_TEXT = "Historical Market Data Service error message:Historical data request pacing violation"

IDENTICAL_WINDOW = 15.0
SAME_CONTRACT_WINDOW = 2.0
SAME_CONTRACT_LIMIT = 6
GLOBAL_WINDOW = 600.0
GLOBAL_LIMIT = 60
#: IB applies the limits to small bars only; larger bars are "soft-limited" and ibsim lets them pass.
MAX_PACED_BAR_SECONDS = 30


@dataclass(frozen=True, slots=True)
class HistKey:
    """What makes two historical requests "identical" or "for the same contract"."""

    con_id: int
    exchange: str
    what_to_show: str
    end: str
    bar_size: str
    duration: str
    use_rth: bool


class HistoricalPacer:
    """Decides whether a historical request violates IB pacing."""

    def __init__(self) -> None:
        self._identical: dict[HistKey, float] = {}
        self._by_contract: dict[tuple[int, str, str], deque[float]] = {}
        self._all: deque[float] = deque()

    def check(self, key: HistKey, bar_seconds: int, now: float) -> str | None:
        """Record the request at wall time ``now``; return the violated rule or ``None``.

        Violating requests are not counted (IB rejects them before they reach the farm).
        """
        if bar_seconds > MAX_PACED_BAR_SECONDS:
            return None
        weight = 2 if key.what_to_show.upper() == "BID_ASK" else 1
        while self._all and now - self._all[0] >= GLOBAL_WINDOW:
            self._all.popleft()
        ckey = (key.con_id, key.exchange, key.what_to_show.upper())
        recent = self._by_contract.setdefault(ckey, deque())
        while recent and now - recent[0] >= SAME_CONTRACT_WINDOW:
            recent.popleft()
        last = self._identical.get(key)
        # An empty endDateTime means "now": the same text is a different request 15 s later, but
        # within 15 s IB still treats it as identical.
        if last is not None and now - last < IDENTICAL_WINDOW:
            return "identical request within 15 seconds"
        if len(recent) + weight >= SAME_CONTRACT_LIMIT:
            return "6 or more requests for the same contract within 2 seconds"
        if len(self._all) + weight > GLOBAL_LIMIT:
            return "more than 60 requests within 10 minutes"
        self._identical[key] = now
        for _ in range(weight):
            recent.append(now)
            self._all.append(now)
        return None

    def reset(self) -> None:
        """Forget all history (a gateway restart clears IB's counters too)."""
        self._identical.clear()
        self._by_contract.clear()
        self._all.clear()
