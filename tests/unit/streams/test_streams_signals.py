"""Signals state machine: duplicates, one active signal per (symbol, strategy), expiry, transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ibstream import ids
from ibstream.contracts import Bar, SignalTransition
from ibstream.contracts.enums import MarketDataSource, SignalStatus
from streams import signals
from streams.signals.strategies import donchian_breakout

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ONLY_DONCHIAN = {"donchian_breakout": donchian_breakout}
CHANNEL = [99.0, 101.0] * 12


def bar(i: int, close: float, symbol: str = "AAPL", source: MarketDataSource = MarketDataSource.LIVE) -> Bar:
    start = T0 + timedelta(seconds=5 * i)
    return Bar(
        symbol=symbol,
        start=start,
        open=close,
        high=close + 0.5,
        low=close - 0.5,
        close=close,
        volume=100,
        wap=close,
        count=10,
        event_time=start,
        ingest_time=start,
        source=source,
    )


def feed(closes: list[float], state: signals.State | None = None, first: int = 0, expiry: int = 300):  # type: ignore[no-untyped-def]
    out_signals, out_transitions = [], []
    for i, close in enumerate(closes, start=first):
        state, new, moved = signals.on_bar(state, bar(i, close), T0, expiry, ONLY_DONCHIAN)
        out_signals += new
        out_transitions += moved
    return state, out_signals, out_transitions


def test_breakout_makes_one_signal_with_a_new_transition_and_deterministic_id() -> None:
    state, made, moved = feed([*CHANNEL, 103.0])
    assert len(made) == 1
    signal = made[0]
    assert signal.signal_id == ids.signal_id("AAPL", "donchian_breakout", bar(24, 103.0).start)
    assert signal.expiry_time == bar(24, 0).start + timedelta(seconds=5 + 300)
    assert [(t.from_status, t.to_status, t.signal_id) for t in moved] == [(None, SignalStatus.NEW, signal.signal_id)]
    assert state["active"]["donchian_breakout"]["status"] == "new"


def test_same_bar_twice_live_then_backfill_makes_no_second_signal() -> None:
    state, made, _ = feed([*CHANNEL, 103.0])
    replayed = bar(24, 103.0, source=MarketDataSource.BACKFILL)
    again, new, moved = signals.on_bar(state, replayed, T0, 300, ONLY_DONCHIAN)
    assert (new, moved) == ([], [])
    assert again == state
    # Even after the active signal is gone (rejected), the duplicate bar does not produce it again.
    freed = signals.on_transition(state, rejected(made[0].signal_id))
    assert freed is not None
    _, new, _ = signals.on_bar(freed, replayed, T0, 300, ONLY_DONCHIAN)
    assert new == []


def rejected(signal_id: str) -> SignalTransition:
    return signals.transition(
        signal_id, "AAPL", "donchian_breakout", SignalStatus.PLANNED, SignalStatus.REJECTED, "operator", T0
    )


def test_one_active_signal_per_symbol_and_strategy_until_expiry_then_expired_transition() -> None:
    state, made, _ = feed([*CHANNEL, 103.0], expiry=20)
    # Another breakout 5 s later: the slot is taken.
    state, more, moved = feed([104.0], state, first=25, expiry=20)
    assert (more, moved) == ([], [])
    # 25 s after the first signal's bar it has expired: an expired transition, and the slot is free again.
    state, more, moved = feed([101.0, 101.0, 101.0, 110.0], state, first=26, expiry=20)
    assert [(t.signal_id, t.from_status, t.to_status) for t in moved][:1] == [
        (made[0].signal_id, SignalStatus.NEW, SignalStatus.EXPIRED)
    ]
    assert len(more) == 1 and more[0].signal_id != made[0].signal_id


def test_rejection_frees_the_slot_and_ordered_signals_do_not_expire() -> None:
    state, made, _ = feed([*CHANNEL, 103.0], expiry=5)
    freed = signals.on_transition(state, rejected(made[0].signal_id))
    assert freed is not None and freed["active"]["donchian_breakout"]["status"] == "rejected"
    assert signals.on_transition(state, rejected("someone-else")) is None
    _, more, _ = feed([106.0], freed, first=25, expiry=5)
    assert len(more) == 1

    ordered = signals.on_transition(
        state,
        signals.transition(
            made[0].signal_id, "AAPL", "donchian_breakout", SignalStatus.APPROVED, SignalStatus.ORDERED, "order", T0
        ),
    )
    _, _, moved = feed([100.0, 100.0, 100.0], ordered, first=25, expiry=5)
    assert all(t.to_status is not SignalStatus.EXPIRED for t in moved)


def test_older_bar_fills_the_window_without_evaluating() -> None:
    state, _, _ = feed(CHANNEL[:10])
    state, _, _ = feed([130.0], state, first=30)  # breakout far beyond, but only 11 bars: not enough history
    gap_state, new, moved = signals.on_bar(
        state, bar(20, 140.0, source=MarketDataSource.BACKFILL), T0, 300, ONLY_DONCHIAN
    )
    assert (new, moved) == ([], [])
    assert [row[0] for row in gap_state["bars"]] == sorted(row[0] for row in gap_state["bars"])
    assert len(gap_state["bars"]) == 12
