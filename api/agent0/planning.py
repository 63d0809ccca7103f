"""Agent0's planning: the core's rule (``ibstream.planning``, which the backtest runs too) answered as a
``/v1/plan`` response."""

from __future__ import annotations

from api.agent0.models import PlanResponseV1, SignalIn
from ibstream import ids
from ibstream.planning import ENTRY_TYPES, PlanLimits, plan_signal

__all__ = ["ENTRY_TYPES", "PlanLimits", "make_plan"]


def make_plan(
    signal: SignalIn, entry_type: str, equity: float, risk_pct: float, limits: PlanLimits | None = None
) -> PlanResponseV1:
    """The plan for a signal (``ibstream.planning.plan_signal``) with the ids of its run and signal."""
    plan = plan_signal(signal, entry_type, equity, risk_pct, limits)
    return PlanResponseV1(
        plan_id=plan.plan_id,
        run_id=ids.run_id(signal.signal_id),
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        plan=plan,
    )
