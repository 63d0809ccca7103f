"""The order-rate throttle's window count: the same answers as the plain sum it replaced, on random sequences of
approvals and clock readings (in order, jittered, stepping back, stamped on another clock far ahead)."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from ibstream.risk import THROTTLE_WINDOW, RiskView
from ibstream.risk.throttle import ApprovalWindow

T0 = datetime(2026, 12, 4, 14, 30, tzinfo=UTC)


@dataclass
class SumOverWindow:
    """The reference: the throttle's count as it was (``view._ApprovalLog`` before the window structure)."""

    times: dict[str, datetime] = field(default_factory=dict)
    order: deque[tuple[datetime, str]] = field(default_factory=deque)

    def add(self, decision_id: str, at: datetime) -> None:
        self.times[decision_id] = at
        self.order.append((at, decision_id))

    def count(self, now: datetime) -> int:
        since, until = now - THROTTLE_WINDOW, now + THROTTLE_WINDOW
        while self.order and not since - THROTTLE_WINDOW <= self.order[0][0] <= until:
            _, old = self.order.popleft()
            self.times.pop(old, None)
        return sum(1 for at in self.times.values() if since <= at <= until)


def ms(value: float) -> timedelta:
    return timedelta(milliseconds=value)


def random_run(seed: int, steps: int) -> list[tuple[str, object]]:
    """A mixed sequence of ("add", (decision_id, stamp)) and ("count", now): a market clock that mostly moves on,
    sometimes jumps (a gap in the feed), sometimes steps back a little; stamps near the clock, some out of order,
    some on a far-away clock, some decision ids repeated."""
    rng = random.Random(seed)
    now = T0
    ids: list[str] = []
    run: list[tuple[str, object]] = []
    for n in range(steps):
        roll = rng.random()
        if roll < 0.02:
            now += timedelta(seconds=rng.uniform(30, 200))  # a gap: a window or more goes by
        elif roll < 0.05:
            now -= ms(rng.uniform(0, 5000))  # a clock stepping back (far less than a window)
        else:
            now += ms(rng.expovariate(1 / 40))
        kind = rng.random()
        if kind < 0.55:
            stamp = now - ms(rng.uniform(0, 3000)) if rng.random() < 0.2 else now
            if rng.random() < 0.02:
                stamp = now + timedelta(hours=rng.uniform(-3, 3))  # stamped on another clock
            if ids and rng.random() < 0.03:
                decision_id = rng.choice(ids)  # the same decision again
            else:
                decision_id = f"d{n}"
                ids.append(decision_id)
            run.append(("add", (decision_id, stamp)))
        else:
            jitter = ms(rng.uniform(-2000, 2000)) if rng.random() < 0.1 else timedelta(0)
            run.append(("count", now + jitter))
    return run


@pytest.mark.parametrize("seed", range(40))
def test_counts_equal_the_plain_sum_on_random_sequences(seed: int) -> None:
    reference, window = SumOverWindow(), ApprovalWindow(THROTTLE_WINDOW)
    counted = 0
    for op, value in random_run(seed, 3000):
        if op == "add":
            decision_id, stamp = value  # type: ignore[misc]
            reference.add(decision_id, stamp)
            window.add(decision_id, stamp)
        else:
            assert isinstance(value, datetime)
            expected = reference.count(value)
            assert window.count(value) == expected, (seed, value)
            counted += expected
    assert counted > 0  # the sequences do put approvals in the window


def test_a_steady_stream_keeps_a_window_of_approvals_and_forgets_the_rest() -> None:
    window = ApprovalWindow(THROTTLE_WINDOW)
    for n in range(20_000):  # 100 approvals per second for 200 s
        at = T0 + ms(10 * n)
        window.add(f"d{n}", at)
        assert window.count(at) == min(n + 1, 6001)
    assert len(window) <= 12_001  # two windows at most are remembered


def test_an_approval_stamped_far_ahead_on_another_clock_never_throttles() -> None:
    window = ApprovalWindow(THROTTLE_WINDOW)
    window.add("wall", T0 + timedelta(hours=5))
    window.add("market", T0)
    assert window.count(T0) == 1
    assert window.count(T0 + timedelta(hours=5)) == 0  # forgotten when it reached the front out of the window


def test_the_view_counts_its_own_approvals_and_those_read_back() -> None:
    view = RiskView()
    assert view.recent_approvals(T0) == 0
    view._market_approvals.add("mine", T0 - timedelta(seconds=10))
    view._wall_approvals.add("theirs", T0 - timedelta(seconds=70))
    assert view.recent_approvals(T0) == 1
    assert view.recent_approvals(T0, wall=T0 - timedelta(seconds=15)) == 2
