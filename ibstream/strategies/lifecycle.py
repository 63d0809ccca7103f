"""Signals as pure functions: a symbol's state and a bar in, the new state plus signals and transitions out.

The state (a JSON-able dict, stored in the Faust table ``signal-state`` keyed by symbol) holds the last bars and
the active signal per strategy. Rules:

* A bar whose ``start`` is already in the window is a duplicate (live + backfill, or a replay): ignored, so it
  can never produce a second signal. An older bar that fills a gap is inserted but not evaluated: signals come
  from the newest bar only.
* One active signal per (symbol, strategy): a strategy is not evaluated while its signal is active.
* Expiry runs on event time (bar start), so a replay expires signals exactly as the live run did.
* Every lifecycle change is a ``SignalTransition``; ids are deterministic (``ibstream.ids``).
* Once orchestration's run reports a signal (a transition carrying ``run_id``), the run emits its later
  transitions, expiry included; this module then only frees the strategy's slot.
* Timeframes: the 5-second window is ``bars``, other timeframes' windows are ``frames[timeframe]``; a bar of a
  timeframe evaluates the strategies given for it (the worker passes the instances whose first timeframe it is),
  all of them seeing every window of the symbol. Window rows are ``[start_micros, high, low, close, open, volume]``
  (rows kept from before open and volume were recorded have four cells).
* A strategy is evaluated with a ``Bars`` (the window, usable as a plain sequence of bars); a proposal's own
  ``expiry`` overrides the configured one, its ``rationale`` is recorded in the signal's first transition.
* Two forms of the same state: the JSON-able dict above (``on_bar``: what a Faust table stores, the bars re-read as
  ``BarPoint`` on every bar) and ``HeldState`` (``fold_bar``: one process holding a symbol's 5-second window as
  ``BarPoint`` in memory, updated in place: the backtest). Both place a bar by ``_slot`` and run ``_expire`` and
  ``_evaluate``, so they give the same signals and transitions for the same bars.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from ibstream import ids
from ibstream.contracts import Bar, Signal, SignalTransition
from ibstream.contracts.enums import SignalStatus
from ibstream.prices import bracket_on_ticks
from ibstream.strategies.builtin import donchian_breakout, ma_crossover, zscore_reversion
from ibstream.strategies.sdk import TIMEFRAME_SECONDS, BarPoint, Bars, Proposal

#: A strategy as the lifecycle runs it: a function of a symbol's bars (a plain function of the window fits too,
#: ``Bars`` being the sequence of its window).
Strategy = Callable[[Bars], Proposal | None]

#: The built-in strategies with their default params, by the name signals carry.
STRATEGIES: dict[str, Strategy] = {
    "ma_crossover": ma_crossover,
    "donchian_breakout": donchian_breakout,
    "zscore_reversion": zscore_reversion,
}

#: Bars of history kept per symbol at least (the built-ins' defaults need 36 at most); a configured instance with a
#: longer warm-up makes the window longer.
WINDOW = 40

BAR_SECONDS = 5
#: The timeframe whose window is the state's ``bars`` (the others are under ``frames``).
BASE_TIMEFRAME = "5s"
#: Statuses after which a signal is no longer active.
TERMINAL = frozenset({SignalStatus.REJECTED, SignalStatus.EXPIRED, SignalStatus.FILLED, SignalStatus.CLOSED})
#: Statuses from which a signal may still expire (nothing was ordered yet).
EXPIRABLE = frozenset({SignalStatus.NEW, SignalStatus.PLANNED, SignalStatus.APPROVED})

State = dict[str, Any]
#: The statuses by their value (a dict lookup per active signal and bar instead of the enum's constructor).
_STATUSES = {status.value: status for status in SignalStatus}


@lru_cache(maxsize=1 << 12)
def _micros(value: datetime) -> int:
    """Cached (a datetime is immutable): every symbol's bar of one start asks for the same one."""
    return int(value.timestamp() * 1_000_000)


def _time(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def empty_state() -> State:
    return {"bars": [], "active": {}}


def transition(
    signal_id: str,
    symbol: str,
    strategy: str,
    from_status: SignalStatus | None,
    to_status: SignalStatus,
    reason: str,
    time: datetime,
    run_id: str | None = None,
    order_id: str | None = None,
) -> SignalTransition:
    """A lifecycle record with a deterministic id."""
    return SignalTransition(
        transition_id=ids.transition_id(signal_id, to_status.value, from_status.value if from_status else ""),
        signal_id=signal_id,
        symbol=symbol,
        strategy=strategy,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        run_id=run_id,
        order_id=order_id,
        time=time,
    )


def on_bar(
    state: Mapping[str, Any] | None,
    bar: Bar,
    now: datetime,
    expiry_seconds: int,
    strategies: Mapping[str, Strategy] = STRATEGIES,
    *,
    timeframe: str = BASE_TIMEFRAME,
    window: int = WINDOW,
) -> tuple[State, list[Signal], list[SignalTransition]]:
    """Fold one bar of ``timeframe`` into a symbol's state (keeping ``window`` bars of it); returns (new state, new
    signals, transitions)."""
    current: State = (
        empty_state() if state is None else {**state, "bars": list(state["bars"]), "active": dict(state["active"])}
    )
    if "frames" in current:
        current["frames"] = dict(current["frames"])
    if not _add_bar(current, bar, timeframe, window):
        return current, [], []
    transitions = _expire(current["active"], bar, now)
    seen = bars_of(current, bar.symbol, timeframe)
    signals, opened = _evaluate(current["active"], seen, bar, now, expiry_seconds, strategies, timeframe)
    return current, signals, transitions + opened


@dataclass
class HeldState:
    """A symbol's signal state held in memory by one process (the backtest): its 5-second window as the bars
    strategies see (``starts``: their starts in µs, in order) and the active signals as the JSON state keeps them
    (``on_transition`` reads ``{"active": held.active}``). Updated in place by ``fold_bar``."""

    window: int = WINDOW
    starts: list[int] = field(default_factory=list)
    points: list[BarPoint] = field(default_factory=list)
    active: dict[str, dict[str, Any]] = field(default_factory=dict)


def fold_bar(
    held: HeldState,
    bar: Bar,
    now: datetime,
    expiry_seconds: int,
    strategies: Mapping[str, Strategy] = STRATEGIES,
    *,
    with_transitions: bool = True,
) -> tuple[list[Signal], list[SignalTransition]]:
    """``on_bar`` for a 5-second bar on a ``HeldState``, in place: the same signals and transitions.
    ``with_transitions=False``: the same state and signals, the transitions not built (an empty list: a caller that
    drops them, the backtest, skips a record and an id per signal and expiry)."""
    start = _micros(bar.start)
    starts = held.starts
    slot = len(starts) if not starts or start > starts[-1] else _slot(starts, start)
    if slot is None:
        return [], []
    newest = slot == len(starts)
    point = BarPoint(bar.high, bar.low, bar.close, bar.start, bar.open, bar.volume)
    if newest:
        starts.append(start)
        held.points.append(point)
    else:
        starts.insert(slot, start)
        held.points.insert(slot, point)
    if len(starts) > held.window:
        del starts[: -held.window], held.points[: -held.window]
    if not newest:
        return [], []  # gap fill: history, not a new signal
    active = held.active
    transitions = _expire(active, bar, now, start, with_transitions) if active else []
    if len(active) >= len(strategies) and all(strategy in active for strategy in strategies):
        return [], transitions  # every strategy holds an active signal: none is evaluated
    points = list(held.points)  # a strategy's own copy: the held window changes with the next bar
    seen = Bars(symbol=bar.symbol, timeframe=BASE_TIMEFRAME, window=points, frames={BASE_TIMEFRAME: points})
    signals, opened = _evaluate(active, seen, bar, now, expiry_seconds, strategies, with_transitions=with_transitions)
    return signals, transitions + opened if opened else transitions


def _slot(starts: Sequence[int], start: int) -> int | None:
    """Where a bar starting at ``start`` goes among a window's starts (in order): after the newest for a new bar,
    before the first later one for a gap fill, None for a duplicate (live + backfill / replay)."""
    if not starts or start > starts[-1]:
        return len(starts)
    slot = bisect_left(starts, start)
    return None if starts[slot] == start else slot


def _rows(current: State, timeframe: str) -> list[list[float]]:
    if timeframe == BASE_TIMEFRAME:
        return list(current["bars"])
    return list(current.get("frames", {}).get(timeframe, []))


def _store_rows(current: State, timeframe: str, rows: list[list[float]]) -> None:
    if timeframe == BASE_TIMEFRAME:
        current["bars"] = rows
    else:
        current["frames"] = {**current.get("frames", {}), timeframe: rows}


def _add_bar(current: State, bar: Bar, timeframe: str = BASE_TIMEFRAME, window: int = WINDOW) -> bool:
    """Put the bar into its timeframe's window; True only for a new newest bar, the one bar that is evaluated."""
    start = _micros(bar.start)
    bars = _rows(current, timeframe)
    # Rows are in start order: only a bar not after the newest needs their starts (skips the scan for a new bar).
    slot = len(bars) if not bars or start > int(bars[-1][0]) else _slot([int(row[0]) for row in bars], start)
    if slot is None:
        return False  # duplicate (live + backfill / replay)
    bars.insert(slot, [float(start), bar.high, bar.low, bar.close, bar.open, bar.volume])
    _store_rows(current, timeframe, bars[-window:])
    return slot == len(bars) - 1  # a gap fill is history, not a new signal


@lru_cache(maxsize=1 << 16)
def _point(start: float, high: float, low: float, close: float, *rest: float) -> BarPoint:
    """A stored row as a bar; cached because every bar re-reads its whole window (a ``BarPoint`` is immutable),
    which kept the per-bar cost near what it was before bars carried their start, open and volume."""
    opened, volume = (rest[0], rest[1]) if len(rest) >= 2 else (None, None)
    return BarPoint(high=high, low=low, close=close, start=_time(int(start)), open=opened, volume=volume)


def bars_of(current: Mapping[str, Any], symbol: str, timeframe: str = BASE_TIMEFRAME) -> Bars:
    """What strategies see of a symbol's state: the ``timeframe`` window and every window kept."""
    frames = {BASE_TIMEFRAME: [_point(*r) for r in current["bars"]]}
    frames |= {tf: [_point(*r) for r in rows] for tf, rows in current.get("frames", {}).items()}
    return Bars(symbol=symbol, timeframe=timeframe, window=frames.get(timeframe, []), frames=frames)


def _expire(
    active: dict[str, dict[str, Any]],
    bar: Bar,
    now: datetime,
    start: int | None = None,
    with_transitions: bool = True,
) -> list[SignalTransition]:
    """Free the slots of ended and expired signals (event time: the bar's start, ``start`` in µs when the caller has
    it); the expiries to record (none built without ``with_transitions``)."""
    start = _micros(bar.start) if start is None else start
    transitions: list[SignalTransition] = []
    for strategy, entry in list(active.items()):
        status = _STATUSES.get(entry["status"]) or SignalStatus(entry["status"])  # (an unknown status still raises)
        if status in TERMINAL:
            del active[strategy]
        elif int(entry["expiry"]) <= start:
            del active[strategy]
            # A signal an orchestration run planned is expired by that run (on the wall clock, with the run's
            # id); emitting it here as well would record the same expiry twice.
            if with_transitions and status in EXPIRABLE and not entry.get("run_id"):
                transitions.append(
                    transition(
                        entry["signal_id"],
                        bar.symbol,
                        strategy,
                        status,
                        SignalStatus.EXPIRED,
                        "expired before it was ordered",
                        now,
                    )
                )
    return transitions


def _evaluate(
    active: dict[str, dict[str, Any]],
    seen: Bars,
    bar: Bar,
    now: datetime,
    expiry_seconds: int,
    strategies: Mapping[str, Strategy],
    timeframe: str = BASE_TIMEFRAME,
    *,
    with_transitions: bool = True,
) -> tuple[list[Signal], list[SignalTransition]]:
    """Run every strategy without an active signal over ``seen``; its new signals and their "new" transitions (none
    built without ``with_transitions``)."""
    signals: list[Signal] = []
    transitions: list[SignalTransition] = []
    for strategy, evaluate in strategies.items():
        if strategy in active:
            continue
        proposal = evaluate(seen)
        if proposal is None:
            continue
        bar_end = bar.start + timedelta(seconds=TIMEFRAME_SECONDS.get(timeframe, BAR_SECONDS))
        expiry = bar_end + (proposal.expiry if proposal.expiry is not None else timedelta(seconds=expiry_seconds))
        signal = _signal(bar, strategy, proposal, now, expiry)
        signals.append(signal)
        active[strategy] = {"signal_id": signal.signal_id, "expiry": _micros(expiry), "status": SignalStatus.NEW.value}
        if not with_transitions:
            continue
        reason = f"{strategy} {proposal.side.value} confidence {proposal.confidence:.2f}"
        transitions.append(
            transition(
                signal.signal_id,
                bar.symbol,
                strategy,
                None,
                SignalStatus.NEW,
                f"{reason}: {proposal.rationale}" if proposal.rationale else reason,
                now,
            )
        )
    return signals, transitions


def _signal(bar: Bar, strategy: str, proposal: Proposal, now: datetime, expiry: datetime) -> Signal:
    # on IB's tick grid before anyone judges or sizes them (a price between ticks is refused with 110)
    entry, stop, take_profit = bracket_on_ticks(proposal.side, proposal.entry, proposal.stop, proposal.take_profit)
    return Signal(
        signal_id=ids.signal_id(bar.symbol, strategy, bar.start),
        symbol=bar.symbol,
        strategy=strategy,
        side=proposal.side,
        confidence=proposal.confidence,
        entry=entry,
        stop=stop,
        take_profit=take_profit,
        bar_start=bar.start,
        created_time=now,
        expiry_time=expiry,
        features=dict(proposal.features),
    )


def on_transition(state: Mapping[str, Any] | None, record: SignalTransition) -> State | None:
    """Track the status of the active signal a transition belongs to; None if the state does not change."""
    if state is None:
        return None
    entry = state["active"].get(record.strategy)
    if entry is None or entry["signal_id"] != record.signal_id or entry["status"] == record.to_status.value:
        return None
    active = dict(state["active"])
    active[record.strategy] = {**entry, "status": record.to_status.value}
    if record.run_id is not None:
        active[record.strategy]["run_id"] = record.run_id  # the run now owns this signal's expiry
    return {**state, "active": active}
