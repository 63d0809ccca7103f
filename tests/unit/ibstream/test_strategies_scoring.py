"""Scoring signals from the bars after them: target first, stop first, both in one bar, expiry, excursions, R, P&L,
duplicates and late-arriving signals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ibstream.config import load_settings
from ibstream.contracts import Bar, Signal, SignalOutcome
from ibstream.contracts.enums import MarketDataSource, OutcomeKind, Side
from ibstream.strategies.scoring import Sizing, on_bar, on_signal, planned_quantity, r_multiple

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
SIZING = Sizing(equity=100_000.0, risk_pct=0.5, max_notional=25_000.0, max_position=1_000.0)


def signal(
    side: Side = Side.BUY,
    entry: float = 100.0,
    stop: float = 99.0,
    take_profit: float = 102.0,
    signal_id: str = "s1",
    expiry_seconds: int = 300,
) -> Signal:
    return Signal(
        signal_id=signal_id,
        symbol="AAPL",
        strategy="donchian_breakout",
        side=side,
        confidence=0.7,
        entry=entry,
        stop=stop,
        take_profit=take_profit,
        bar_start=T0,
        created_time=T0 + timedelta(seconds=5),
        expiry_time=T0 + timedelta(seconds=5 + expiry_seconds),
        features={},
    )


def bar(i: int, low: float, high: float, close: float | None = None, bar_open: float | None = None) -> Bar:
    """The i-th 5-second bar after the signal's bar (i = 1 is the first one judged)."""
    at = T0 + timedelta(seconds=5 * i)
    mid = (low + high) / 2
    return Bar(
        symbol="AAPL",
        start=at,
        open=mid if bar_open is None else bar_open,
        high=high,
        low=low,
        close=mid if close is None else close,
        volume=100,
        wap=mid,
        count=5,
        event_time=at,
        ingest_time=at,
        source=MarketDataSource.LIVE,
    )


def run(
    first: Signal, bars: list[Bar], state: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[SignalOutcome]]:
    state, out = on_signal(state, first, SIZING, NOW)
    for one in bars:
        state, more = on_bar(state, one, NOW)
        out += more
    return state, out


def test_target_touched_first_is_a_win_with_its_excursions_r_and_pnl() -> None:
    _, (outcome,) = run(signal(), [bar(1, 99.5, 100.8), bar(2, 99.4, 101.0), bar(3, 100.5, 102.3), bar(4, 90, 91)])
    assert outcome.outcome is OutcomeKind.HIT_TARGET
    assert outcome.exit_price == 102.0
    assert outcome.bars_to_outcome == 3
    assert outcome.mfe == pytest.approx(2.0)  # capped at the target
    assert outcome.mae == pytest.approx(0.6)
    assert outcome.r_multiple == pytest.approx(2.0)
    assert outcome.quantity == 250.0  # 0.5 % of 100 000 = 500 at 1.00 a share, 25 000 notional cap → 250
    assert outcome.pnl == pytest.approx(500.0)
    assert outcome.outcome_time == T0 + timedelta(seconds=20)
    assert not outcome.ambiguous


def test_stop_touched_first_is_a_loss_of_one_r() -> None:
    _, (outcome,) = run(signal(), [bar(1, 99.5, 101.5), bar(2, 98.8, 99.6), bar(3, 101, 103)])
    assert (outcome.outcome, outcome.exit_price, outcome.bars_to_outcome) == (OutcomeKind.HIT_STOP, 99.0, 2)
    assert outcome.r_multiple == pytest.approx(-1.0)
    assert outcome.mae == pytest.approx(1.0)  # the loss up to the exit, not the bar's low
    assert outcome.mfe == pytest.approx(1.5)
    assert outcome.pnl == pytest.approx(-250.0)


def test_stop_and_target_in_one_bar_count_as_the_stop() -> None:
    _, (outcome,) = run(signal(), [bar(1, 98.5, 102.5)])
    assert outcome.outcome is OutcomeKind.HIT_STOP
    assert outcome.ambiguous
    assert outcome.r_multiple == pytest.approx(-1.0)
    assert outcome.mfe == 0.0


def test_a_bar_opening_through_the_stop_exits_at_its_open() -> None:
    _, (outcome,) = run(signal(), [bar(1, 97.5, 98.6, bar_open=98.5)])
    assert outcome.exit_price == 98.5
    assert outcome.r_multiple == pytest.approx(-1.5)


def test_a_sell_mirrors_the_buy() -> None:
    short = signal(Side.SELL, entry=100.0, stop=101.0, take_profit=98.0)
    _, (outcome,) = run(short, [bar(1, 99.5, 100.4), bar(2, 97.9, 99.0)])
    assert (outcome.outcome, outcome.exit_price, outcome.r_multiple) == (OutcomeKind.HIT_TARGET, 98.0, 2.0)
    assert outcome.mae == pytest.approx(0.4)
    assert outcome.pnl == pytest.approx(500.0)


def test_a_signal_with_neither_touched_expires_at_the_last_close_before_its_expiry() -> None:
    sixty = [bar(i, 99.8, 100.6, close=100.0 + i / 100) for i in range(1, 61)]
    _, out = run(signal(expiry_seconds=300), sixty)
    assert out == []
    _, (outcome,) = run(signal(expiry_seconds=300), [*sixty, bar(61, 99.9, 100.1)])
    assert outcome.outcome is OutcomeKind.EXPIRED
    assert outcome.bars_to_outcome == 60
    assert outcome.exit_price == pytest.approx(100.6)
    assert outcome.r_multiple == pytest.approx(0.6)
    assert outcome.outcome_time == T0 + timedelta(seconds=305)
    assert (outcome.mfe, outcome.mae) == (pytest.approx(0.6), pytest.approx(0.2))


def test_the_signals_own_bar_and_a_replayed_bar_are_not_judged() -> None:
    state, out = run(signal(), [bar(0, 90, 110), bar(1, 99.5, 100.5), bar(1, 90, 110)])
    assert out == []
    assert state["open"]["s1"]["bars"] == 1


def test_a_signal_arriving_after_its_bars_is_caught_up_on_them() -> None:
    state: dict[str, Any] | None = None
    for one in [bar(1, 99.5, 100.5), bar(2, 101, 102.2)]:
        state, _ = on_bar(state, one, NOW)
    state, (outcome,) = on_signal(state, signal(), SIZING, NOW)
    assert (outcome.outcome, outcome.bars_to_outcome) == (OutcomeKind.HIT_TARGET, 2)
    assert on_signal(state, signal(), SIZING, NOW) == (state, [])  # scored already: not again


def test_every_open_signal_of_the_symbol_is_judged_and_the_state_is_json() -> None:
    state, _ = on_signal(None, signal(signal_id="a"), SIZING, NOW)
    state, _ = on_signal(state, signal(Side.SELL, stop=101.0, take_profit=98.0, signal_id="b"), SIZING, NOW)
    state = json.loads(json.dumps(state))
    state, out = on_bar(state, bar(1, 98.9, 100.2), NOW)
    assert [(o.signal_id, o.outcome) for o in out] == [("a", OutcomeKind.HIT_STOP)]
    assert list(state["open"]) == ["b"]


def test_planned_size_follows_the_sizing_rule_and_is_zero_when_no_share_fits() -> None:
    assert planned_quantity(100.0, 99.0, Sizing(100_000.0, 0.5)) == 500.0
    assert planned_quantity(100.0, 99.0, Sizing(100_000.0, 0.5, max_position=120)) == 120.0
    assert planned_quantity(100.0, 100.0, SIZING) == 0.0
    assert planned_quantity(100.0, 50.0, Sizing(1_000.0, 0.5)) == 0.0
    settings = load_settings(risk_per_trade_pct=1.0)
    assert Sizing.from_settings(settings).risk_pct == 1.0
    assert r_multiple(100.0, 100.0, 101.0, Side.BUY) == 0.0


def test_expiry_is_judged_in_bar_time_when_the_signal_was_made_later_on_the_wall_clock() -> None:
    replayed = signal(expiry_seconds=10).model_copy(update={"created_time": NOW + timedelta(days=30)})
    _, (outcome,) = run(replayed, [bar(1, 99.8, 100.2), bar(2, 99.8, 100.4), bar(3, 99.9, 100.1)])
    assert (outcome.outcome, outcome.bars_to_outcome) == (OutcomeKind.EXPIRED, 2)
    assert outcome.outcome_time == replayed.expiry_time
