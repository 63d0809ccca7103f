"""The in-memory forms the backtest folds in place (``lifecycle.HeldState`` + ``fold_bar``, ``scoring.fold_bar`` /
``fold_signal`` on ``scoring.held_state``) give exactly what the JSON-state folds of the streams agents give, bar for
bar: the same signals, transitions, outcomes and window, duplicates and gap fills included; and the pure folds still
leave their input state untouched."""

from __future__ import annotations

import copy
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from ibstream.contracts.enums import Side
from ibstream.strategies import lifecycle, scoring
from ibstream.strategies.lifecycle import HeldState, fold_bar, on_bar
from ibstream.strategies.sdk import Proposal
from tests.unit.ibstream.test_strategies_scoring import NOW, SIZING
from tests.unit.ibstream.test_strategies_scoring import bar as scoring_bar
from tests.unit.ibstream.test_strategies_scoring import signal as scoring_signal
from tests.unit.streams.test_streams_signals import T0, bar


def _closes(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    price, made = 100.0, []
    for _ in range(count):
        price = round(price * (1 + rng.gauss(0, 0.004)), 2)
        made.append(price)
    return made


def _deliveries(count: int, seed: int) -> list[int]:
    """Bar indexes in delivery order: mostly in order, with redeliveries and late bars filling gaps."""
    rng = random.Random(seed)
    order = list(range(count))
    late = sorted(rng.sample(range(45, count), 6))
    for index in late:
        order.remove(index)
        order.insert(min(len(order), order.index(index - 1) + rng.randint(2, 30)), index)  # arrives late
    for at in sorted(rng.sample(range(1, len(order)), 8), reverse=True):
        order.insert(at, order[at - 1])  # a redelivery of the bar just before
    return order


def test_a_held_window_folds_to_the_same_signals_transitions_and_window_as_the_json_state() -> None:
    closes = _closes(260, seed=3)
    state, held = None, HeldState(window=40)
    made = 0
    for index in _deliveries(len(closes), seed=4):
        one = bar(index, closes[index])
        now = one.start + timedelta(seconds=5)
        state, signals, transitions = on_bar(state, one, now, 60)
        held_signals, held_transitions = fold_bar(held, one, now, 60)
        assert held_signals == signals and held_transitions == transitions, index
        assert held.active == state["active"]
        assert [point.close for point in held.points] == [row[3] for row in state["bars"]]
        assert held.starts == [int(row[0]) for row in state["bars"]]
        made += len(signals)
    assert made >= 5  # the walk makes signals, expiries and gap fills to compare


def test_a_gap_fill_just_before_the_newest_bar_of_a_full_window_is_history_not_a_signal() -> None:
    always: dict[str, lifecycle.Strategy] = {"always": lambda bars: Proposal(Side.BUY, 0.9, 100.0, 99.0, 102.0)}
    held = HeldState(window=3)
    for index in (0, 1, 2, 4):
        fold_bar(held, bar(index, 100.0), T0, 60, always)
    held.active.clear()  # the slot is free: a bar evaluated now would signal
    assert fold_bar(held, bar(3, 100.0), T0, 60, always) == ([], [])  # filled in, not evaluated
    assert held.starts == [int((T0 + timedelta(seconds=5 * i)).timestamp() * 1e6) for i in (2, 3, 4)]
    assert fold_bar(held, bar(3, 100.0), T0, 60, always) == ([], [])  # and now a duplicate


def test_scoring_in_place_gives_the_pure_folds_outcomes_and_the_pure_folds_leave_their_input_alone() -> None:
    closes = _closes(200, seed=8)
    state: dict[str, Any] | None = None
    held = scoring.empty_state()
    signal_state = None
    outcomes_seen = 0
    for index in _deliveries(len(closes), seed=9):
        one = bar(index, closes[index])
        now = one.start + timedelta(seconds=5)
        given, before = state, copy.deepcopy(state)
        state, outcomes = scoring.on_bar(given, one, NOW)
        assert given == before  # the pure fold copied what it changed
        assert scoring.fold_bar(held, one, NOW) == outcomes
        signal_state, signals, _ = on_bar(signal_state, one, now, 300)
        for signal in signals:
            given, before = state, copy.deepcopy(state)
            state, scored = scoring.on_signal(given, signal, SIZING, NOW)
            assert given == before
            assert scoring.fold_signal(held, signal, SIZING, NOW) == scored
            assert scoring.fold_signal(held, signal, SIZING, NOW) == []  # seen before: nothing
            outcomes_seen += len(scored)
        outcomes_seen += len(outcomes)
        assert held == state
    assert outcomes_seen >= 5


def test_a_held_window_folded_without_transitions_gives_the_same_signals_and_state() -> None:
    closes = _closes(260, seed=5)
    with_records, without = HeldState(window=40), HeldState(window=40)
    made = 0
    for index in _deliveries(len(closes), seed=6):
        one = bar(index, closes[index])
        now = one.start + timedelta(seconds=5)
        signals, _ = fold_bar(with_records, one, now, 60)
        assert fold_bar(without, one, now, 60, with_transitions=False) == (signals, [])
        assert without == with_records
        made += len(signals)
    assert made >= 5


def test_a_held_scoring_state_indexes_its_scored_ids_and_scores_as_the_plain_state_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Signals ended at once by the recent bars (each remembered as scored), the oldest forgotten past
    ``SCORED_KEEP``, and replays of remembered and forgotten ones: the indexed state and the plain one agree."""
    monkeypatch.setattr(scoring, "SCORED_KEEP", 4)
    plain, held = scoring.empty_state(), scoring.held_state()
    for i in range(1, 4):
        one = scoring_bar(i, 90.0, 110.0)  # touches every stop below: each signal ends on the recent bars
        assert scoring.fold_bar(plain, one, NOW) == scoring.fold_bar(held, one, NOW)
    ids = [f"s{n}" for n in range(10)]
    for signal_id in [*ids, "s9", "s0", "s7", "s3", *ids]:
        given = scoring_signal(signal_id=signal_id)
        assert scoring.fold_signal(held, given, SIZING, NOW) == scoring.fold_signal(plain, given, SIZING, NOW)
        assert held["scored"] == plain["scored"] and held["open"] == plain["open"]
        assert held["scored_index"] == Counter(held["scored"])
    assert len(held["scored"]) == 4
