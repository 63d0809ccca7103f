"""Agent0's planning: a signal sized by account risk and bracketed, within the hard risk limits."""

from __future__ import annotations

from dataclasses import dataclass

from api.agent0.models import PlanResponseV1, SignalIn
from ibstream import ids
from ibstream.config import Settings
from ibstream.contracts import Plan
from ibstream.contracts.enums import OrderType, Side
from ibstream.sizing import SizingError, size_by_risk


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


def make_plan(
    signal: SignalIn, entry_type: str, equity: float, risk_pct: float, limits: PlanLimits | None = None
) -> PlanResponseV1:
    """The plan for a signal: side from the signal, quantity sized by account risk, bracket from its stop/target.

    With ``limits``, a stop closer than the minimum stop distance is widened to it (keeping the signal's
    reward/risk ratio for the take-profit), and the size is capped by the order-notional and position limits.
    """
    buy = signal.side is Side.BUY
    if (signal.stop >= signal.entry) if buy else (signal.stop <= signal.entry):
        raise SizingError(f"stop {signal.stop} is on the wrong side of entry {signal.entry} for a {signal.side}")
    if (signal.take_profit <= signal.entry) if buy else (signal.take_profit >= signal.entry):
        raise SizingError(f"take profit {signal.take_profit} is on the wrong side of entry {signal.entry}")
    limits = limits or PlanLimits()
    stop, take_profit = signal.stop, signal.take_profit
    if limits.min_stop_pct is not None:
        floor_distance = signal.entry * limits.min_stop_pct / 100 * 1.05  # 5 % margin over the limit
        distance = abs(signal.entry - stop)
        if distance < floor_distance:
            ratio = abs(take_profit - signal.entry) / distance
            direction = 1 if buy else -1
            stop = round(signal.entry - direction * floor_distance, 2)
            take_profit = round(signal.entry + direction * floor_distance * ratio, 2)
    quantity = size_by_risk(signal.entry, stop, equity, risk_pct, max_notional=limits.max_order_notional)
    if limits.max_position is not None:
        quantity = min(quantity, int(limits.max_position))
    signal = signal.model_copy(update={"stop": stop, "take_profit": take_profit})
    plan_id = ids.plan_id(signal.signal_id, equity, risk_pct)
    order_type, limited = ENTRY_TYPES[entry_type]
    risk = quantity * abs(signal.entry - signal.stop)
    reward = quantity * abs(signal.take_profit - signal.entry)
    plan = Plan(
        plan_id=plan_id,
        side=signal.side,
        quantity=float(quantity),
        order_type=order_type,
        limit_price=signal.entry if limited else None,
        stop_loss=signal.stop,
        take_profit=signal.take_profit,
        rationale=(
            f"{signal.strategy} {signal.side.value} {signal.symbol} at confidence {signal.confidence:.2f}: "
            f"{quantity} shares risk {risk:.2f} ({risk_pct:g}% of {equity:,.0f}) for {reward:.2f} "
            f"(reward/risk {reward / risk:.2f})"
        ),
    )
    return PlanResponseV1(
        plan_id=plan_id,
        run_id=ids.run_id(signal.signal_id),
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        plan=plan,
    )
