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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ibstream import ids
from ibstream.contracts import Bar, Signal, SignalTransition
from ibstream.contracts.enums import SignalStatus
from ibstream.prices import bracket_on_ticks
from streams.signals.strategies import STRATEGIES, WINDOW, BarPoint, Strategy

BAR_SECONDS = 5
#: Statuses after which a signal is no longer active.
TERMINAL = frozenset({SignalStatus.REJECTED, SignalStatus.EXPIRED, SignalStatus.FILLED, SignalStatus.CLOSED})
#: Statuses from which a signal may still expire (nothing was ordered yet).
EXPIRABLE = frozenset({SignalStatus.NEW, SignalStatus.PLANNED, SignalStatus.APPROVED})

State = dict[str, Any]


def _micros(value: datetime) -> int:
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
) -> tuple[State, list[Signal], list[SignalTransition]]:
    """Fold one bar into a symbol's state; returns (new state, new signals, transitions)."""
    current: State = empty_state() if state is None else {"bars": list(state["bars"]), "active": dict(state["active"])}
    if not _add_bar(current, bar):
        return current, [], []
    transitions = _expire(current["active"], bar, now)
    signals, opened = _evaluate(current, bar, now, expiry_seconds, strategies)
    return current, signals, transitions + opened


def _add_bar(current: State, bar: Bar) -> bool:
    """Put the bar into the state's window; True only for a new newest bar, the one bar that is evaluated."""
    start = _micros(bar.start)
    bars: list[list[float]] = current["bars"]
    if any(int(row[0]) == start for row in bars):
        return False  # duplicate (live + backfill / replay)
    row = [float(start), bar.high, bar.low, bar.close]
    if bars and start < int(bars[-1][0]):
        bars.append(row)
        bars.sort(key=lambda r: r[0])
        current["bars"] = bars[-WINDOW:]
        return False  # gap fill: history, not a new signal
    bars.append(row)
    current["bars"] = bars[-WINDOW:]
    return True


def _expire(active: dict[str, dict[str, Any]], bar: Bar, now: datetime) -> list[SignalTransition]:
    """Free the slots of ended and expired signals (event time: the bar's start); the expiries to record."""
    start = _micros(bar.start)
    transitions: list[SignalTransition] = []
    for strategy, entry in list(active.items()):
        status = SignalStatus(entry["status"])
        if status in TERMINAL:
            del active[strategy]
        elif int(entry["expiry"]) <= start:
            del active[strategy]
            # A signal an orchestration run planned is expired by that run (on the wall clock, with the run's
            # id); emitting it here as well would record the same expiry twice.
            if status in EXPIRABLE and not entry.get("run_id"):
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
    current: State, bar: Bar, now: datetime, expiry_seconds: int, strategies: Mapping[str, Strategy]
) -> tuple[list[Signal], list[SignalTransition]]:
    """Run every strategy without an active signal over the window; its new signals and their "new" transitions."""
    active: dict[str, dict[str, Any]] = current["active"]
    window = [BarPoint(high=r[1], low=r[2], close=r[3]) for r in current["bars"]]
    signals: list[Signal] = []
    transitions: list[SignalTransition] = []
    expiry = bar.start + timedelta(seconds=BAR_SECONDS + expiry_seconds)
    for strategy, evaluate in strategies.items():
        if strategy in active:
            continue
        proposal = evaluate(window)
        if proposal is None:
            continue
        # on IB's tick grid before anyone judges or sizes them (a price between ticks is refused with 110)
        entry, stop, take_profit = bracket_on_ticks(proposal.side, proposal.entry, proposal.stop, proposal.take_profit)
        signal = Signal(
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
            features=proposal.features,
        )
        signals.append(signal)
        active[strategy] = {"signal_id": signal.signal_id, "expiry": _micros(expiry), "status": SignalStatus.NEW.value}
        transitions.append(
            transition(
                signal.signal_id,
                bar.symbol,
                strategy,
                None,
                SignalStatus.NEW,
                f"{strategy} {proposal.side.value} confidence {proposal.confidence:.2f}",
                now,
            )
        )
    return signals, transitions


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
    return {"bars": state["bars"], "active": active}
