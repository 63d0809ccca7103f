"""Static membership's twin guard (streams.membership): a fencing now and then is normal, one every heartbeat is a
second worker with our instance id, and the newcomer wins. Plain values and log records, no broker."""

from __future__ import annotations

import logging

from streams.membership import (
    COORDINATOR_LOGGER,
    FENCED_MESSAGE,
    NEWCOMER_LIMIT,
    TWIN_LIMIT,
    TwinDetector,
    TwinGuard,
    install_twin_guard,
)


def coordinator_record(at: float, message: str) -> logging.LogRecord:
    record = logging.LogRecord(COORDINATOR_LOGGER, logging.WARNING, __file__, 1, message, (), None)
    record.created = at
    return record


def fenced(at: float) -> logging.LogRecord:
    return coordinator_record(at, f"Heartbeat failed: {FENCED_MESSAGE}; resetting and re-joining group")


def joined(at: float) -> logging.LogRecord:
    return coordinator_record(at, "Joined group 'g' (generation 1) with member_id streams-0-abc")


def test_sparse_fencings_are_no_twin_but_a_burst_against_an_established_member_is() -> None:
    detector = TwinDetector(heartbeat=3.0, window=60.0)
    detector.joined(0.0)
    # A session that ran out now and then (minutes apart): never a twin.
    assert [detector.fenced(at) for at in (100.0, 170.0, 240.0)] == [False, False, False]
    detector.joined(240.5)
    # A member for a minute, then fenced at every heartbeat: the third fencing of the burst trips.
    burst = [300.0 + 3 * n for n in range(TWIN_LIMIT)]
    assert [detector.fenced(at) for at in burst] == [False] * (TWIN_LIMIT - 1) + [True]
    assert detector.established


def test_a_newcomer_fenced_right_after_joining_holds_on_longer() -> None:
    detector = TwinDetector(heartbeat=3.0, window=60.0)
    detector.joined(10.0)
    burst = [13.0 + 3 * n for n in range(NEWCOMER_LIMIT)]  # fenced one heartbeat after joining
    assert [detector.fenced(at) for at in burst] == [False] * (NEWCOMER_LIMIT - 1) + [True]
    assert not detector.established and NEWCOMER_LIMIT > TWIN_LIMIT


def test_the_guard_reads_joins_and_fencings_and_reacts_once() -> None:
    calls: list[str] = []
    guard = TwinGuard("streams-0", lambda: calls.append("stop"), TwinDetector(heartbeat=3.0, window=60.0))
    guard.handle(joined(0.0))
    guard.handle(coordinator_record(20.0, "Heartbeat failed for group g because it is rebalancing"))
    guard.handle(fenced(30.0))
    guard.handle(fenced(33.0))
    assert calls == [] and not guard.tripped and guard.detector.joined_at == 0.0
    guard.handle(fenced(36.0))
    guard.handle(fenced(39.0))  # already stopping: not again
    assert calls == ["stop"] and guard.tripped


def test_the_guard_is_installed_only_with_static_membership() -> None:
    assert install_twin_guard(None, 15.0, lambda: None) is None
    coordinator = logging.getLogger(COORDINATOR_LOGGER)
    guards = [install_twin_guard("streams-0", 15.0, lambda: None), install_twin_guard("streams-0", 60.0, lambda: None)]
    try:
        assert all(guard is not None and guard in coordinator.handlers for guard in guards)
        # Twins fence each other once per heartbeat (a fifth of the session): the window spans four sessions.
        assert [(g.detector.heartbeat, g.detector.window) for g in guards if g is not None] == [
            (3.0, 60.0),
            (12.0, 240.0),
        ]
        assert coordinator.getEffectiveLevel() <= logging.INFO  # the join lines reach the guard
    finally:
        for guard in guards:
            if guard is not None:
                coordinator.removeHandler(guard)
