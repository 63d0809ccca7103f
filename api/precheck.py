"""``GET /v1/runs/{run_id}/precheck``: the risk limits a run's plan would meet, before anyone approves it.

The gate itself lives in ``streams`` (which the API may not import) and decides again when the order exists. This
pre-check evaluates the checks that depend only on the plan, the settings and what the warehouse knows (latest quote,
position and kill switch), with the same names, formulas and thresholds as the gate, so an operator sees a likely
refusal before approving. Checks that depend on the moment of the order (order rate, daily loss, gross exposure)
are listed as deferred. A unit test runs the gate's own checks on the same inputs and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Path, Request
from pydantic import BaseModel

from api.auth import Principal
from api.errors import ApiError, errors
from api.models import ID_PATTERN
from api.queries import fetch_records, get_run
from ibstream.config import Settings
from ibstream.contracts import ControlCommand, Plan, Quote, Record, RiskCheck, TopicSpec, control, positions, quotes
from ibstream.contracts.enums import ControlCommandKind, OrderType, Side
from ibstream.sizing import risk_budget
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import quote_ident

R = TypeVar("R", bound=Record)

#: Kill-switch targets that stop every symbol (as the gate reads them); any other target names one symbol.
GLOBAL_TARGETS = frozenset({"*", "all", "global", "account"})
#: Checks the gate also runs that depend on the moment the order exists, not on the plan.
DEFERRED_CHECKS = ("max_gross_exposure", "order_rate", "daily_loss")


@dataclass(frozen=True)
class PrecheckLimits:
    """The gate's thresholds, from the same settings."""

    max_position: float
    max_order_notional: float
    min_stop_pct: float
    max_stop_pct: float
    account_equity: float
    risk_per_trade_pct: float
    price_band_pct: float
    quote_max_age_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PrecheckLimits:
        """The thresholds in force for this process."""
        return cls(
            max_position=settings.risk_max_position,
            max_order_notional=settings.risk_max_order_notional,
            min_stop_pct=settings.risk_min_stop_pct,
            max_stop_pct=settings.risk_max_stop_pct,
            account_equity=settings.account_equity,
            risk_per_trade_pct=settings.risk_per_trade_pct,
            price_band_pct=settings.risk_price_band_pct,
            quote_max_age_seconds=settings.risk_quote_max_age_seconds,
        )


class Precheck(BaseModel):
    """What the plan would meet at the risk gate now. ``passed`` is true when every evaluated check passes."""

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


def reference_price(quote: Quote | None, side: Side) -> float | None:
    """The price an order would trade at now: the far touch, else last, else mid (as the gate computes it)."""
    if quote is None:
        return None
    touch = quote.ask if side is Side.BUY else quote.bid
    if touch is not None and touch > 0:
        return touch
    if quote.last is not None and quote.last > 0:
        return quote.last
    if quote.bid is not None and quote.ask is not None and quote.bid > 0 and quote.ask > 0:
        return (quote.bid + quote.ask) / 2
    return None


def plan_entry(plan: Plan, reference: float | None) -> float | None:
    """The price the plan expects to pay: its limit (or stop) price, else the market's reference."""
    if plan.order_type in (OrderType.LMT, OrderType.STP_LMT) and plan.limit_price is not None:
        return plan.limit_price
    if plan.order_type is OrderType.STP and plan.stop_price is not None:
        return plan.stop_price
    return reference


def kill_switch_for(symbol: str, commands: list[ControlCommand]) -> ControlCommand | None:
    """The kill switch in force for ``symbol`` from control commands in time order (global first), or None."""
    engaged: dict[str, ControlCommand] = {}
    for command in commands:
        target = command.target.strip().lower() if command.target.strip().lower() in GLOBAL_TARGETS else command.target
        if command.command is ControlCommandKind.KILL_SWITCH_ON:
            engaged[target] = command
        elif command.command is ControlCommandKind.KILL_SWITCH_OFF:
            engaged.pop(target, None)
    for target in GLOBAL_TARGETS:
        if target in engaged:
            return engaged[target]
    return engaged.get(symbol)


def _unpriced(name: str, limit: float | None) -> RiskCheck:
    return RiskCheck(name=name, value=None, limit=limit, passed=False, reason="no price: no quote and no limit price")


def _cmp(passed: bool, ok: str = "≤", bad: str = ">") -> str:
    return ok if passed else bad


def precheck_checks(
    plan: Plan,
    symbol: str,
    limits: PrecheckLimits,
    *,
    quote: Quote | None,
    position_quantity: float,
    kill_switch: ControlCommand | None,
    now: datetime,
) -> list[RiskCheck]:
    """The plan-dependent checks of the gate, in its order, with its names and formulas. Pure."""
    reference = reference_price(quote, plan.side)
    entry = plan_entry(plan, reference)
    checks: list[RiskCheck] = []
    # kill switch
    if kill_switch is None:
        checks.append(RiskCheck(name="kill_switch", value=0.0, limit=0.0, passed=True, reason="kill switch off"))
    else:
        checks.append(RiskCheck(
            name="kill_switch", value=1.0, limit=0.0, passed=False,
            reason=f"kill switch on for {kill_switch.target} by {kill_switch.actor}: {kill_switch.reason}",
        ))  # fmt: skip
    # stale quote
    age_limit = limits.quote_max_age_seconds
    if quote is None:
        checks.append(RiskCheck(name="stale_quote", value=None, limit=age_limit, passed=False,
                                reason=f"no quote for {symbol}"))  # fmt: skip
    else:
        age = (now - quote.event_time).total_seconds()
        ok = age <= age_limit
        checks.append(RiskCheck(name="stale_quote", value=age, limit=age_limit, passed=ok,
                                reason=f"last quote {age:.2f}s old ({_cmp(ok)} {age_limit:g}s)"))  # fmt: skip
    # price band
    band = limits.price_band_pct
    if reference is None:
        checks.append(RiskCheck(name="price_band", value=None, limit=band, passed=False,
                                reason="no quote to compare the order price with"))  # fmt: skip
    elif plan.order_type is OrderType.MKT:
        checks.append(RiskCheck(name="price_band", value=0.0, limit=band, passed=True,
                                reason="market order trades at the quote"))  # fmt: skip
    else:
        price = entry if entry is not None else reference
        pct = abs(price - reference) / reference * 100
        ok = pct <= band
        checks.append(RiskCheck(
            name="price_band", value=pct, limit=band, passed=ok,
            reason=f"order price {price:g} is {pct:.2f}% from quote {reference:g} ({_cmp(ok)} {band:g}%)",
        ))  # fmt: skip
    # max position
    signed = plan.quantity if plan.side is Side.BUY else -plan.quantity
    after = abs(position_quantity + signed)
    ok = after <= limits.max_position
    checks.append(RiskCheck(
        name="max_position", value=after, limit=limits.max_position, passed=ok,
        reason=f"position after fill {after:g} {_cmp(ok)} {limits.max_position:g} shares",
    ))  # fmt: skip
    # order notional
    if entry is None:
        checks.append(_unpriced("max_order_notional", limits.max_order_notional))
    else:
        notional = plan.quantity * entry
        ok = notional <= limits.max_order_notional
        checks.append(RiskCheck(
            name="max_order_notional", value=notional, limit=limits.max_order_notional, passed=ok,
            reason=f"order notional {notional:,.2f} {_cmp(ok)} {limits.max_order_notional:,.2f}",
        ))  # fmt: skip
    checks.append(_stop_distance(plan, entry, limits))
    # risk per trade
    budget = risk_budget(limits.account_equity, limits.risk_per_trade_pct)
    if entry is None:
        checks.append(_unpriced("risk_per_trade", budget))
    else:
        at_risk = plan.quantity * abs(entry - plan.stop_loss)
        ok = at_risk <= budget
        checks.append(RiskCheck(
            name="risk_per_trade", value=at_risk, limit=budget, passed=ok,
            reason=f"loss at stop {at_risk:,.2f} {_cmp(ok)} {limits.risk_per_trade_pct:g}% of equity ({budget:,.2f})",
        ))  # fmt: skip
    return checks


def _stop_distance(plan: Plan, entry: float | None, limits: PrecheckLimits) -> RiskCheck:
    band = f"[{limits.min_stop_pct:g}%, {limits.max_stop_pct:g}%]"
    if entry is None or entry <= 0:
        return _unpriced("stop_distance", limits.max_stop_pct)
    wrong_side = plan.stop_loss >= entry if plan.side is Side.BUY else plan.stop_loss <= entry
    pct = abs(entry - plan.stop_loss) / entry * 100
    if wrong_side:
        return RiskCheck(name="stop_distance", value=pct, limit=limits.max_stop_pct, passed=False,
                         reason=f"stop {plan.stop_loss:g} is on the wrong side of entry {entry:g}")  # fmt: skip
    if pct < limits.min_stop_pct:
        return RiskCheck(name="stop_distance", value=pct, limit=limits.min_stop_pct, passed=False,
                         reason=f"stop {pct:.3f}% from entry is inside {band}: too tight")  # fmt: skip
    ok = pct <= limits.max_stop_pct
    return RiskCheck(name="stop_distance", value=pct, limit=limits.max_stop_pct, passed=ok,
                     reason=f"stop {pct:.3f}% from entry {'within' if ok else 'outside'} {band}")  # fmt: skip


def build_precheck(
    run_id: str,
    symbol: str,
    plan: Plan,
    limits: PrecheckLimits,
    *,
    quote: Quote | None,
    position_quantity: float,
    kill_switch: ControlCommand | None,
    now: datetime,
) -> Precheck:
    """The response body: the checks plus the prices they used."""
    checks = precheck_checks(
        plan, symbol, limits, quote=quote, position_quantity=position_quantity, kill_switch=kill_switch, now=now
    )
    reference = reference_price(quote, plan.side)
    entry = plan_entry(plan, reference)
    return Precheck(
        run_id=run_id, symbol=symbol, plan=plan, entry=entry, reference_price=reference,
        notional=plan.quantity * entry if entry is not None else None, passed=all(c.passed for c in checks),
        checks=checks, deferred=list(DEFERRED_CHECKS), evaluated_time=now,
    )  # fmt: skip


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
        warehouse, quotes.TOPIC, "symbol = {symbol:String}", {"symbol": symbol},
        "event_time DESC, _kafka_ts DESC, _offset DESC",
    )  # fmt: skip
    return found[0] if found else None


def latest_position_quantity(warehouse: Warehouse, symbol: str) -> float:
    """The symbol's latest position (summed over accounts), 0 when none is recorded."""
    found = newest_records(
        warehouse, positions.TOPIC, "symbol = {symbol:String}", {"symbol": symbol},
        "time DESC, _kafka_ts DESC, _offset DESC", per="account",
    )  # fmt: skip
    return sum(p.quantity for p in found)


def kill_switch_commands(warehouse: Warehouse) -> list[ControlCommand]:
    """Every kill-switch command recorded, oldest first."""
    return fetch_records(
        warehouse, control.TOPIC, "startsWith(toString(command), 'kill_switch')", {},
        "issued_time, _kafka_ts, _offset", "command_id",
    )  # fmt: skip


def add_precheck_routes(app: FastAPI, viewer: Callable[..., Principal]) -> None:
    """Register ``GET /v1/runs/{run_id}/precheck`` (viewer)."""

    @app.get(
        "/v1/runs/{run_id}/precheck",
        response_model=Precheck,
        tags=["runs"],
        responses=errors(404, 409),
        dependencies=[Depends(viewer)],
    )
    def precheck(
        request: Request,
        run_id: Annotated[str, Path(pattern=ID_PATTERN)],
    ) -> Any:
        """The gate's plan-dependent checks for the run's latest plan, evaluated now (409 ``no_plan`` before
        Agent0 has planned)."""
        warehouse: Warehouse = request.app.state.warehouse
        run = get_run(warehouse, run_id)
        if run.plan is None:
            raise ApiError(409, "no_plan", f"run {run_id} has no plan yet")
        return build_precheck(
            run_id, run.symbol, run.plan, PrecheckLimits.from_settings(request.app.state.settings),
            quote=latest_quote(warehouse, run.symbol),
            position_quantity=latest_position_quantity(warehouse, run.symbol),
            kill_switch=kill_switch_for(run.symbol, kill_switch_commands(warehouse)), now=datetime.now(UTC),
        )  # fmt: skip
