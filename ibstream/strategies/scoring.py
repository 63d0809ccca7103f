"""Every signal scored from the 5-second bars after it, traded or not: hit target, hit stop, or expired.

Pure: ``on_signal`` and ``on_bar`` fold a signal or a bar into a symbol's state (JSON-able, kept by the agent in a
Faust table, one entry per symbol) and return the outcomes they complete. ``fold_signal`` and ``fold_bar`` are the
same folds made in place, for a process that holds the state itself (the backtest: no copy of every open signal on
every bar); the pure ones copy the state and call them.

The hypothetical trade: filled at the signal's entry price when its bar ends (``active_from``: the signal's bar start
+ 5 s), sized as Agent0 sizes a plan (``ibstream.sizing``: the configured equity and risk per trade, within the
order-notional and position limits), and held until a bar touches its stop or its target, or until it expires.
Expiry is judged in bar time: the signal's ``expiry_time`` is its bar's end plus the expiry (``streams.signals``
stamps it so; ``created_time`` is the wall clock), so a replay of old bars expires its signals as live trading did.

Judging one bar (BUY; a SELL mirrors it):
* low ≤ stop → hit stop, at the stop (at the bar's open if it opened through the stop: a gap fills worse);
* high ≥ target → hit target, at the target (never better: a limit fills at its price);
* both in one bar → the order inside the bar is unknown: the stop (conservative), ``ambiguous`` set;
* a bar starting at or after the expiry → expired at the last close before it (the entry if no bar came).
Excursions (MFE, MAE ≥ 0, in price): each bar's high and low; on the stop bar only the loss up to the exit (what
happened after the stop is not the trade's), on the target bar the gain up to the target and the bar's adverse side.

Order and duplicates: bars are judged in start order per signal; a bar at or before the last one judged (a replay,
a redelivery, a backfill of a bar already passed) is skipped. The last ``RECENT_BARS`` bars are kept, so a signal
that arrives after bars it should have seen (signals and bars are different topics) is caught up on them. A signal
already open or scored (the last ``SCORED_KEEP``) is ignored.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from ibstream.config import Settings
from ibstream.contracts import Bar, Signal, SignalOutcome
from ibstream.contracts.enums import OutcomeKind, Side
from ibstream.sizing import SizingError, size_by_risk

BAR_SECONDS = 5
_BAR_US = BAR_SECONDS * 1_000_000
#: Bars kept per symbol to catch up a signal that arrives after them (10 minutes of 5-second bars).
RECENT_BARS = 120
#: Signal ids remembered per symbol after scoring, so a replayed signal is not scored twice.
SCORED_KEEP = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=1 << 12)
def _us(at: datetime) -> int:
    """Epoch µs, exact; cached (a datetime is immutable): every symbol's bar of one start asks for the same one."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class Sizing:
    """How a plan would size the signal: equity, risk per trade (% of equity), and the hard limits."""

    equity: float
    risk_pct: float
    max_notional: float | None = None
    max_position: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sizing:
        risk = settings.risk
        return cls(risk.account_equity, risk.per_trade_pct, risk.max_order_notional, risk.max_position)


def planned_quantity(entry: float, stop: float, sizing: Sizing) -> float:
    """Whole shares a plan would buy for this entry and stop (``ibstream.sizing``); 0 when no share fits."""
    try:
        quantity = size_by_risk(entry, stop, sizing.equity, sizing.risk_pct, max_notional=sizing.max_notional)
    except SizingError:
        return 0.0
    if sizing.max_position is not None:
        quantity = min(quantity, int(sizing.max_position))
    return float(quantity)


def r_multiple(entry: float, stop: float, exit_price: float, side: Side) -> float:
    """The result in units of the risk taken between entry and stop (0 when the stop equals the entry)."""
    risk = abs(entry - stop)
    if risk == 0 or not math.isfinite(risk):
        return 0.0
    return (exit_price - entry) * _direction(side) / risk


def _direction(side: Side | str) -> int:
    return 1 if Side(side) is Side.BUY else -1


def empty_state() -> dict[str, Any]:
    """A symbol's state: open signals by id, the recent bars ([start µs, open, high, low, close]), scored ids."""
    return {"open": {}, "recent": [], "scored": []}


#: The key of ``held_state``'s index of the scored ids.
_SCORED_INDEX = "scored_index"


def held_state() -> dict[str, Any]:
    """``empty_state`` for a process that holds the state itself and folds it in place (``fold_signal``,
    ``fold_bar``; never stored as JSON): the scored ids are also counted in an index, so a new signal is not compared
    with each of the ``SCORED_KEEP`` ids remembered. The pure folds' copy drops the index (and reads the list)."""
    return {**empty_state(), _SCORED_INDEX: Counter[str]()}


def _is_scored(state: dict[str, Any], signal_id: str) -> bool:
    index: Counter[str] | None = state.get(_SCORED_INDEX)
    return signal_id in state["scored"] if index is None else signal_id in index


def track(signal: Signal, sizing: Sizing, bar_seconds: int = BAR_SECONDS) -> dict[str, Any]:
    """A signal's tracking entry: what its outcome needs and its progress so far (nothing judged yet).

    ``bar_seconds``: the length of the bar that produced it (5 s today; a strategy on longer bars passes its own).
    """
    active_from = _us(signal.bar_start) + bar_seconds * 1_000_000
    return {
        "signal_id": signal.signal_id,
        "strategy": signal.strategy,
        "side": signal.side.value,
        "confidence": signal.confidence,
        "entry": signal.entry,
        "stop": signal.stop,
        "take_profit": signal.take_profit,
        "signal_time": _us(signal.created_time),
        "bar_start": _us(signal.bar_start),
        "active_from": active_from,
        "expires_at": _us(signal.expiry_time),
        "quantity": planned_quantity(signal.entry, signal.stop, sizing),
        "mfe": 0.0,
        "mae": 0.0,
        "bars": 0,
        "last_bar": None,
        "last_close": None,
    }


@dataclass(frozen=True)
class _Ending:
    kind: OutcomeKind
    exit_price: float
    at: int
    ambiguous: bool = False


def _start(row: list[Any]) -> Any:
    return row[0]


def _judge(tracked: dict[str, Any], bar: list[Any]) -> _Ending | None:
    """Advance ``tracked`` (in place) by one bar [start, open, high, low, close]; the ending if this bar ends it."""
    start, bar_open, high, low, close = bar
    if start < tracked["active_from"] or (tracked["last_bar"] is not None and start <= tracked["last_bar"]):
        return None
    if start >= tracked["expires_at"]:
        last = tracked["last_close"]
        return _Ending(OutcomeKind.EXPIRED, tracked["entry"] if last is None else last, tracked["expires_at"])
    buy = tracked["side"] == Side.BUY.value
    entry, stop, target = tracked["entry"], tracked["stop"], tracked["take_profit"]
    favourable, adverse = (high - entry, entry - low) if buy else (entry - low, high - entry)
    stop_hit = low <= stop if buy else high >= stop
    target_hit = high >= target if buy else low <= target
    tracked["bars"] += 1
    tracked["last_bar"], tracked["last_close"] = start, close
    end = start + _BAR_US
    if stop_hit:
        gapped = bar_open <= stop if buy else bar_open >= stop
        exit_price = bar_open if gapped else stop
        tracked["mae"] = max(tracked["mae"], (entry - exit_price) * (1 if buy else -1), 0.0)
        return _Ending(OutcomeKind.HIT_STOP, exit_price, end, ambiguous=target_hit)
    tracked["mae"] = max(tracked["mae"], adverse, 0.0)
    if target_hit:
        tracked["mfe"] = max(tracked["mfe"], (target - entry) * (1 if buy else -1), 0.0)
        return _Ending(OutcomeKind.HIT_TARGET, target, end)
    tracked["mfe"] = max(tracked["mfe"], favourable, 0.0)
    return None


def _outcome(symbol: str, tracked: dict[str, Any], ending: _Ending, now: datetime) -> SignalOutcome:
    side = Side(tracked["side"])
    quantity = float(tracked["quantity"])
    return SignalOutcome(
        signal_id=tracked["signal_id"],
        symbol=symbol,
        strategy=tracked["strategy"],
        side=side,
        confidence=tracked["confidence"],
        outcome=ending.kind,
        entry=tracked["entry"],
        stop=tracked["stop"],
        take_profit=tracked["take_profit"],
        exit_price=ending.exit_price,
        mfe=tracked["mfe"],
        mae=tracked["mae"],
        r_multiple=r_multiple(tracked["entry"], tracked["stop"], ending.exit_price, side),
        quantity=quantity,
        pnl=(ending.exit_price - tracked["entry"]) * _direction(side) * quantity,
        bars_to_outcome=tracked["bars"],
        ambiguous=ending.ambiguous,
        signal_time=_at(tracked["signal_time"]),
        bar_start=_at(tracked["bar_start"]),
        outcome_time=_at(ending.at),
        scored_time=now,
    )


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    """A state the in-place folds may change without touching ``state`` (each open signal's progress copied)."""
    return {
        "open": {signal_id: dict(tracked) for signal_id, tracked in state["open"].items()},
        "recent": list(state["recent"]),
        "scored": list(state["scored"]),
    }


def _remember_scored(state: dict[str, Any], signal_ids: list[str]) -> None:
    scored = state["scored"]
    scored += signal_ids
    index: Counter[str] | None = state.get(_SCORED_INDEX)
    if index is not None:
        index.update(signal_ids)
    if len(scored) > SCORED_KEEP:
        if index is not None:
            for forgotten in scored[:-SCORED_KEEP]:
                index[forgotten] -= 1
                if index[forgotten] <= 0:
                    del index[forgotten]
        del scored[:-SCORED_KEEP]


def on_signal(
    state: dict[str, Any] | None, signal: Signal, sizing: Sizing, now: datetime, bar_seconds: int = BAR_SECONDS
) -> tuple[dict[str, Any], list[SignalOutcome]]:
    """Start tracking a signal, judged at once on the recent bars after it; a signal seen before changes nothing."""
    state = state if state is not None else empty_state()
    if signal.signal_id in state["open"] or signal.signal_id in state["scored"]:
        return state, []
    state = _copy(state)
    return state, fold_signal(state, signal, sizing, now, bar_seconds)


def fold_signal(
    state: dict[str, Any], signal: Signal, sizing: Sizing, now: datetime, bar_seconds: int = BAR_SECONDS
) -> list[SignalOutcome]:
    """``on_signal`` in place, for a state one process holds (the backtest): the outcome if the recent bars end it."""
    if signal.signal_id in state["open"] or _is_scored(state, signal.signal_id):
        return []
    tracked = track(signal, sizing, bar_seconds)
    recent: list[list[Any]] = state["recent"]
    # Bars before the signal's entry cannot judge it (nearly all the recent bars of a live signal): skip to the
    # first one at or after it (recent bars are in start order).
    for bar in recent[bisect_left(recent, tracked["active_from"], key=_start) :]:
        ending = _judge(tracked, bar)
        if ending is not None:
            _remember_scored(state, [signal.signal_id])
            return [_outcome(signal.symbol, tracked, ending, now)]
    state["open"][signal.signal_id] = tracked
    return []


def on_bar(state: dict[str, Any] | None, bar: Bar, now: datetime) -> tuple[dict[str, Any], list[SignalOutcome]]:
    """Judge every open signal of the bar's symbol on it; the outcomes it ends, in signal order."""
    state = empty_state() if state is None else _copy(state)
    return state, fold_bar(state, bar, now)


def fold_bar(state: dict[str, Any], bar: Bar, now: datetime) -> list[SignalOutcome]:
    """``on_bar`` in place, for a state one process holds (the backtest): the outcomes the bar ends."""
    row = [_us(bar.start), bar.open, bar.high, bar.low, bar.close]
    recent: list[list[Any]] = state["recent"]
    if not recent or row[0] > recent[-1][0]:
        recent.append(row)  # the usual case: the next bar in time
    elif not any(held[0] == row[0] for held in recent):
        recent.append(row)
        recent.sort(key=lambda held: held[0])
    if len(recent) > RECENT_BARS:
        del recent[:-RECENT_BARS]
    outcomes: list[SignalOutcome] = []
    opened: dict[str, Any] = state["open"]
    if not opened:
        return outcomes
    for signal_id, tracked in list(opened.items()):
        ending = _judge(tracked, row)
        if ending is not None:
            del opened[signal_id]
            outcomes.append(_outcome(bar.symbol, tracked, ending, now))
    if outcomes:
        _remember_scored(state, [outcome.signal_id for outcome in outcomes])
    return outcomes
