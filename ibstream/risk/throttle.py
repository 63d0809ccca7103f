"""The order-rate throttle's count: approvals stamped within a window of a clock, in amortized constant time.

``ApprovalWindow.count(now)`` answers how many approvals are stamped in ``[now - window, now + window]`` — the
window behind ``now``, plus the clock slack ahead of it (a market clock steps back by far less than a window, so
an approval a little ahead of ``now`` still counts). Approvals arrive in about time order; each is forgotten
once, in arrival order, when it falls out of ``[now - 2 * window, now + window]`` at the front of the arrivals:
then it can never count again (one stamped more than a window ahead was stamped on another clock: the wall's,
before the producer's first heartbeat, while a simulated market runs hours behind; counted, it would throttle
every order until the market caught up with it).

Summing every remembered approval for each decision cost O(approvals in the window) per decision: risk fell to
~590 decisions/s at 20k intents in a window. Here the stamps are also kept sorted (appended when they come in
order, which is the rule), and the count is the distance between two cursors — the first stamp at or after the
window's start, the first after its end — that move only as far as the clock moved since the last count. Out of
order stamps still land in the right place (a binary search and a list insert), so the answers equal the plain sum's
for any sequence (``tests/unit/ibstream/test_risk_throttle.py`` checks it on random ones).
"""

from __future__ import annotations

import bisect
from collections import deque
from datetime import UTC, datetime, timedelta

#: Compact the sorted stamps once this many forgotten ones sit at their front (and they are half of the list).
_COMPACT_AFTER = 1024


def _micros(at: datetime) -> int:
    """A stamp as integer microseconds since the epoch: cheap to compare, and exact (timedelta division is)."""
    return (at - (_EPOCH if at.tzinfo is not None else _NAIVE_EPOCH)) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


class ApprovalWindow:
    """Approval stamps by decision id on one clock; ``count`` is the approvals within a window of ``now``."""

    def __init__(self, window: timedelta) -> None:
        self._window = window // _MICROSECOND
        # decision_id → its stamp (a decision id added again moves its stamp, as a dict would).
        self._times: dict[str, int] = {}
        # (stamp, decision_id) in arrival order: what is forgotten, and when.
        self._arrivals: deque[tuple[int, str]] = deque()
        # The stamps of ``_times``, sorted, from index ``_head`` on (the ones before it are forgotten).
        self._sorted: list[int] = []
        self._head = 0
        # Cursors into ``_sorted``: hints for the window's start and end, moved as the clock moves.
        self._lo = 0
        self._hi = 0

    def __len__(self) -> int:
        return len(self._times)

    def add(self, decision_id: str, at: datetime) -> None:
        stamp = _micros(at)
        previous = self._times.get(decision_id)
        if previous is not None:
            self._remove(previous)
        self._times[decision_id] = stamp
        self._arrivals.append((stamp, decision_id))
        stamps = self._sorted
        if len(stamps) == self._head or stamp >= stamps[-1]:
            stamps.append(stamp)
        else:
            index = bisect.bisect_right(stamps, stamp, self._head)
            stamps.insert(index, stamp)
            # A cursor past the insertion point now points one stamp early; ``count`` walks it right again.

    def count(self, now: datetime) -> int:
        """Approvals stamped in ``[now - window, now + window]`` (forgetting those that fell out for good)."""
        at = _micros(now)
        since, until = at - self._window, at + self._window
        arrivals, times = self._arrivals, self._times
        while arrivals and not since - self._window <= arrivals[0][0] <= until:
            _, old = arrivals.popleft()
            stamp = times.pop(old, None)
            if stamp is not None:
                self._remove(stamp)
        self._lo = self._seek_first_at_or_after(since, self._lo)
        self._hi = self._seek_first_after(until, max(self._hi, self._lo))
        return self._hi - self._lo

    def _seek_first_at_or_after(self, bound: int, hint: int) -> int:
        stamps, head = self._sorted, self._head
        i = min(max(hint, head), len(stamps))
        while i < len(stamps) and stamps[i] < bound:
            i += 1
        while i > head and stamps[i - 1] >= bound:
            i -= 1
        return i

    def _seek_first_after(self, bound: int, hint: int) -> int:
        stamps, head = self._sorted, self._head
        i = min(max(hint, head), len(stamps))
        while i < len(stamps) and stamps[i] <= bound:
            i += 1
        while i > head and stamps[i - 1] > bound:
            i -= 1
        return i

    def _remove(self, stamp: int) -> None:
        """Take one occurrence of ``stamp`` out of the sorted stamps (the front one in the usual, in-order case)."""
        stamps = self._sorted
        if stamps[self._head] == stamp:
            self._head += 1
        else:
            del stamps[bisect.bisect_left(stamps, stamp, self._head)]
            self._lo = min(self._lo, len(stamps))
            self._hi = min(self._hi, len(stamps))
        if self._head >= _COMPACT_AFTER and self._head * 2 >= len(stamps):
            del stamps[: self._head]
            self._lo = max(0, self._lo - self._head)
            self._hi = max(0, self._hi - self._head)
            self._head = 0
