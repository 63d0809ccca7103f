"""Agent0's planning rule as a pure function: a signal sized by account risk and bracketed, within the hard risk
limits. Agent0 (``api.agent0``) serves it over HTTP; ``ibstream backtest`` calls it in-process, so both size a
signal the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import Plan
from ibstream.contracts.enums import OrderType, Side
from ibstream.sizing import SizingError, size_by_risk


class PlannedSignal(Protocol):
    """The fields of a signal a plan needs (``signals.v1`` records and Agent0's request body both have them)."""

    @property
    def signal_id(self) -> str: ...

    @property
    def symbol(self) -> str: ...

    @property
    def strategy(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def confidence(self) -> float: ...

    @property
    def entry(self) -> float: ...

    @property
    def stop(self) -> float: ...

    @property
    def take_profit(self) -> float: ...


@dataclass(frozen=True)
class PlanLimits:
    """Hard risk limits the plan is made to respect, so a sound signal is not planned into a certain rejection."""

    min_stop_pct: float | None = None
    max_order_notional: float | None = None
    max_position: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanLimits:
        return cls(settings.risk.min_stop_pct, settings.risk.max_order_notional, settings.risk.max_position)


#: Agent0's entry types → the order type, and whether the signal's entry is the order's limit.
ENTRY_TYPES: dict[str, tuple[OrderType, bool]] = {
    "LMT": (OrderType.LMT, True),
    "MKT": (OrderType.MKT, False),
    "MOC": (OrderType.MOC, False),
    "LOC": (OrderType.LOC, True),
}


def _bracket(signal: PlannedSignal, limits: PlanLimits) -> tuple[float, float]:
    """The stop and take-profit: the signal's, or widened to the minimum stop distance (same reward/risk)."""
    buy = signal.side is Side.BUY
    if (signal.stop >= signal.entry) if buy else (signal.stop <= signal.entry):
        raise SizingError(f"stop {signal.stop} is on the wrong side of entry {signal.entry} for a {signal.side}")
    if (signal.take_profit <= signal.entry) if buy else (signal.take_profit >= signal.entry):
        raise SizingError(f"take profit {signal.take_profit} is on the wrong side of entry {signal.entry}")
    stop, take_profit = signal.stop, signal.take_profit
    if limits.min_stop_pct is not None:
        floor_distance = signal.entry * limits.min_stop_pct / 100 * 1.05  # 5 % margin over the limit
        distance = abs(signal.entry - stop)
        if distance < floor_distance:
            ratio = abs(take_profit - signal.entry) / distance
            direction = 1 if buy else -1
            stop = round(signal.entry - direction * floor_distance, 2)
            take_profit = round(signal.entry + direction * floor_distance * ratio, 2)
    return stop, take_profit


def plan_signal(
    signal: PlannedSignal, entry_type: str, equity: float, risk_pct: float, limits: PlanLimits | None = None
) -> Plan:
    """The plan for a signal: side from the signal, quantity sized by account risk, bracket from its stop/target.

    With ``limits``, a stop closer than the minimum stop distance is widened to it (keeping the signal's
    reward/risk ratio for the take-profit), and the size is capped by the order-notional and position limits.
    """
    limits = limits or PlanLimits()
    stop, take_profit = _bracket(signal, limits)
    quantity = size_by_risk(signal.entry, stop, equity, risk_pct, max_notional=limits.max_order_notional)
    if limits.max_position is not None:
        quantity = min(quantity, int(limits.max_position))
    order_type, limited = ENTRY_TYPES[entry_type]
    risk = quantity * abs(signal.entry - stop)
    reward = quantity * abs(take_profit - signal.entry)
    return Plan(
        plan_id=ids.plan_id(signal.signal_id, equity, risk_pct),
        side=signal.side,
        quantity=float(quantity),
        order_type=order_type,
        limit_price=signal.entry if limited else None,
        stop_loss=stop,
        take_profit=take_profit,
        rationale=(
            f"{signal.strategy} {signal.side.value} {signal.symbol} at confidence {signal.confidence:.2f}: "
            f"{quantity} shares risk {risk:.2f} ({risk_pct:g}% of {equity:,.0f}) for {reward:.2f} "
            f"(reward/risk {reward / risk:.2f})"
        ),
    )
