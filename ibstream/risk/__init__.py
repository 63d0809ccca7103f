"""The pre-trade risk gate as pure functions: an intent and a view of the account in, a decision out.

No Kafka and no Faust here, and it lives in the core so the API's pre-check runs the very same checks: the streams
agent (``streams.agents``) feeds records into a ``RiskView`` and asks ``decide`` for a verdict; every check is a small
function returning one ``RiskCheck`` so each has its own table-driven test.
"""

from ibstream.risk.checks import (
    CHECKS,
    CheckContext,
    check_daily_loss,
    check_gross_exposure,
    check_kill_switch,
    check_max_position,
    check_order_notional,
    check_order_rate,
    check_price_band,
    check_quote_age,
    check_risk_per_trade,
    check_stop_distance,
    check_trading_state,
    context_for,
    decide,
    entry_price,
    mark_price,
    reference_price,
    route,
    signed,
)
from ibstream.risk.view import GLOBAL_TARGETS, THROTTLE_WINDOW, AccountSnapshot, RiskLimits, RiskView

__all__ = [
    "CHECKS",
    "GLOBAL_TARGETS",
    "THROTTLE_WINDOW",
    "AccountSnapshot",
    "CheckContext",
    "RiskLimits",
    "RiskView",
    "check_daily_loss",
    "check_gross_exposure",
    "check_kill_switch",
    "check_max_position",
    "check_order_notional",
    "check_order_rate",
    "check_price_band",
    "check_quote_age",
    "check_risk_per_trade",
    "check_stop_distance",
    "check_trading_state",
    "context_for",
    "decide",
    "entry_price",
    "mark_price",
    "reference_price",
    "route",
    "signed",
]
