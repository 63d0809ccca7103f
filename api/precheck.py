"""``GET /v1/runs/{run_id}/precheck``: the risk limits a run's plan would meet, before anyone approves it.

It runs the gate's own pure checks (``ibstream.risk``, which the streams agent also runs when the order exists) on
the plan, the settings and what the warehouse knows (latest quote, position and kill switch), so an operator sees a
likely refusal before approving. Checks that depend on the moment of the order (order rate, daily loss, gross
exposure) are listed as deferred.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from api.queries.common import fetch_records
from ibstream import ids, risk
from ibstream.contracts import (
    ControlCommand,
    OrderIntent,
    Plan,
    Position,
    Quote,
    Record,
    RiskCheck,
    TopicSpec,
    control,
    positions,
    quotes,
)
from ibstream.contracts.enums import ExecutionSource
from ibstream.exceptions import IbstreamError
from ibstream.risk import GLOBAL_TARGETS
from ibstream.trading_states import STRATEGY_TARGET_PREFIX
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import quote_ident

R = TypeVar("R", bound=Record)

__all__ = ["DEFERRED_CHECKS", "GLOBAL_TARGETS", "Precheck", "PrecheckLimits", "build_precheck", "precheck_checks"]

log = logging.getLogger(__name__)

#: Checks the gate also runs that depend on the moment the order exists, not on the plan — and the account checks,
#: which judge IB's newest account.v1 record, which the pre-check's view does not read (it would show them passing
#: with "no record").
DEFERRED_CHECKS = ("max_gross_exposure", "order_rate", "daily_loss", "account_state", "buying_power")

#: The gate's thresholds (the same settings the gate reads).
PrecheckLimits = risk.RiskLimits


class Precheck(BaseModel):
    """What the gate would say about the plan right now, check by check."""

    run_id: str
    symbol: str
    plan: Plan
    entry: float | None
    reference_price: float | None
    notional: float | None
    passed: bool
    checks: list[RiskCheck]
    deferred: list[str]
    evaluated_time: datetime


def _view(
    symbol: str, quote: Quote | None, position_quantity: float, commands: list[ControlCommand], now: datetime
) -> risk.RiskView:
    view = risk.RiskView()
    if quote is not None:
        view.apply_quote(quote)
    if position_quantity:
        view.apply_position(
            Position(
                account="",
                symbol=symbol,
                con_id=0,
                quantity=position_quantity,
                avg_cost=0.0,
                source=ExecutionSource.RECONCILIATION,
                time=now,
            )
        )
    for command in commands:
        view.apply_control(command)
    return view


def _intent(run_id: str, symbol: str, plan: Plan, now: datetime) -> OrderIntent:
    return OrderIntent(
        order_id=ids.order_id(run_id),
        run_id=run_id,
        symbol=symbol,
        side=plan.side,
        quantity=plan.quantity,
        order_type=plan.order_type,
        limit_price=plan.limit_price,
        stop_price=plan.stop_price,
        stop_loss=plan.stop_loss,
        take_profit=plan.take_profit,
        requested_by="precheck",
        created_time=now,
    )


def kill_switch_for(symbol: str, commands: list[ControlCommand]) -> ControlCommand | None:
    """The kill switch in force for ``symbol`` after ``commands`` (in order), as the gate reads them."""
    return _view(symbol, None, 0.0, commands, datetime.now(UTC)).kill_switch_for(symbol)


def precheck_checks(
    plan: Plan,
    symbol: str,
    limits: risk.RiskLimits,
    *,
    quote: Quote | None,
    position_quantity: float,
    kill_switch: ControlCommand | None,
    now: datetime,
    run_id: str = "precheck",
    controls: Sequence[ControlCommand] = (),
) -> list[RiskCheck]:
    """The gate's own checks on the plan (its ``decide``), minus those that depend on the order's moment.
    ``controls``: the kill-switch and trading-state commands recorded, folded as the gate folds them."""
    commands = [*controls, *([kill_switch] if kill_switch is not None else [])]
    view = _view(symbol, quote, position_quantity, commands, now)
    decision = risk.decide(_intent(run_id, symbol, plan, now), view, limits, now)
    return [check for check in decision.checks if check.name not in DEFERRED_CHECKS]


def build_precheck(
    run_id: str,
    symbol: str,
    plan: Plan,
    limits: risk.RiskLimits,
    *,
    quote: Quote | None,
    position_quantity: float,
    kill_switch: ControlCommand | None,
    now: datetime,
    controls: Sequence[ControlCommand] = (),
) -> Precheck:
    """The response body: the checks plus the prices they used."""
    checks = precheck_checks(
        plan,
        symbol,
        limits,
        quote=quote,
        position_quantity=position_quantity,
        kill_switch=kill_switch,
        now=now,
        run_id=run_id,
        controls=controls,
    )
    reference = risk.reference_price(quote, plan.side)
    entry = risk.entry_price(_intent(run_id, symbol, plan, now), reference)
    return Precheck(
        run_id=run_id,
        symbol=symbol,
        plan=plan,
        entry=entry,
        reference_price=reference,
        notional=plan.quantity * entry if entry is not None else None,
        passed=all(c.passed for c in checks),
        checks=checks,
        deferred=list(DEFERRED_CHECKS),
        evaluated_time=now,
    )


def newest_records(
    warehouse: Warehouse,
    spec: TopicSpec[R],
    where: str,
    parameters: dict[str, Any],
    order_by: str,
    *,
    per: str | None = None,
    limit: int = 1,
) -> list[R]:
    """The first ``limit`` records of a topic in ``order_by`` order (per ``per`` group when given), without reading
    the whole table back: for "latest quote", "latest position per account" and the like."""
    table = warehouse.schema.for_topic(spec)
    names = ", ".join(quote_ident(column.name) for column in table.columns)
    by = f"LIMIT {int(limit)} BY {per}" if per else f"LIMIT {int(limit)}"
    sql = f"SELECT {names} FROM {warehouse.table(table.name)} FINAL WHERE {where} ORDER BY {order_by} {by}"
    result = warehouse.query(sql, parameters, column_formats=table.column_formats())
    return [table.from_row(row) for row in result.rows]  # type: ignore[misc]  # from_row builds spec.record


def latest_quote(warehouse: Warehouse, symbol: str) -> Quote | None:
    """The symbol's newest quote by event time."""
    found = newest_records(
        warehouse,
        quotes.TOPIC,
        "symbol = {symbol:String}",
        {"symbol": symbol},
        "event_time DESC, _kafka_ts DESC, _offset DESC",
    )
    return found[0] if found else None


def latest_position_quantity(warehouse: Warehouse, symbol: str) -> float:
    """The symbol's latest position (summed over accounts), 0 when none is recorded."""
    found = newest_records(
        warehouse,
        positions.TOPIC,
        "symbol = {symbol:String}",
        {"symbol": symbol},
        "time DESC, _kafka_ts DESC, _offset DESC",
        per="account",
    )
    return sum(p.quantity for p in found)


def trading_control_commands(warehouse: Warehouse) -> list[ControlCommand]:
    """Every kill-switch and trading-state command recorded (the audit trail), oldest first; strategy switches
    (``trading_state`` on ``strategy:<instance>``, ``api.queries.strategies``) are not trading scopes."""
    return fetch_records(
        warehouse,
        control.TOPIC,
        "(startsWith(toString(command), 'kill_switch') OR toString(command) = 'trading_state') "
        "AND NOT startsWith(target, {strategy_prefix:String})",
        {"strategy_prefix": STRATEGY_TARGET_PREFIX},
        "issued_time, _kafka_ts, _offset",
        "command_id",
    )


def recorded_sequence(warehouse: Warehouse) -> int:
    """The highest sequence of any kill-switch or trading-state command recorded (0: none, or the warehouse does
    not answer): the floor of the next one this API issues, so a replica whose clock is behind still orders its
    command after one it can see. Best effort: the warehouse trails Kafka, and a command must not wait for it."""
    table = warehouse.table(warehouse.schema.for_topic(control.TOPIC).name)
    sql = (
        "SELECT max(if(sequence > 0, sequence, toUnixTimestamp64Micro(issued_time))) FROM "
        f"{table} WHERE startsWith(toString(command), 'kill_switch') OR toString(command) = 'trading_state'"
    )
    try:
        rows = warehouse.query(sql).rows
    except IbstreamError as error:
        log.warning("recorded control sequence unavailable", extra={"error": str(error)})
        return 0
    return int(rows[0][0] or 0) if rows else 0
