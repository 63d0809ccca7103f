"""IB historical pacing rules (wall-clock timestamps supplied by the test)."""

from __future__ import annotations

from ibsim.pacing import HistKey, HistoricalPacer


def key(con_id: int = 1, dur: str = "60 S", what: str = "TRADES") -> HistKey:
    return HistKey(con_id, "SMART", what, "", "5 secs", dur, True)


def test_identical_within_15_seconds() -> None:
    p = HistoricalPacer()
    assert p.check(key(), 5, 0.0) is None
    assert p.check(key(), 5, 14.9) == "identical request within 15 seconds"
    assert p.check(key(), 5, 15.0) is None


def test_six_same_contract_within_two_seconds() -> None:
    p = HistoricalPacer()
    for i in range(5):
        assert p.check(key(dur=f"{60 + i} S"), 5, i * 0.1) is None
    assert p.check(key(dur="99 S"), 5, 0.6) is not None
    assert p.check(key(con_id=2), 5, 0.6) is None  # other contract
    assert p.check(key(dur="98 S"), 5, 2.05) is None  # the window slid


def test_sixty_in_ten_minutes_and_bid_ask_counts_double() -> None:
    p = HistoricalPacer()
    for i in range(60):
        assert p.check(key(con_id=i, dur=f"{i + 1} S"), 5, i * 3.0) is None
    assert p.check(key(con_id=999), 5, 181.0) == "more than 60 requests within 10 minutes"
    assert p.check(key(con_id=999), 5, 601.0) is None
    q = HistoricalPacer()
    for i in range(30):
        assert q.check(key(con_id=i, what="BID_ASK"), 5, i * 3.0) is None
    assert q.check(key(con_id=100), 5, 100.0) is not None


def test_large_bars_are_not_paced() -> None:
    p = HistoricalPacer()
    assert p.check(key(), 60, 0.0) is None and p.check(key(), 60, 1.0) is None
