"""Order reads: the order list with risk verdict and broker status, and an order's full trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.errors import ApiError
from api.models import OrderDetail, OrderPage, OrderSummary, Reconciliation, TrailStep
from api.queries.common import aware, equals, fetch_records, keyset, next_cursor, time_range, topic_table, where_clause
from ibstream.contracts import (
    TERM_FIELDS,
    ControlCommand,
    Execution,
    OrderEvent,
    OrderIntent,
    RiskDecision,
    RoutedOrder,
    control,
    executions,
    order_events,
    order_intents,
    risk_decisions,
    routed_orders,
)
from ibstream.contracts.enums import OrderLeg
from ibstream.contracts.order_terms import OrderTerms
from ibstream.order_modifications import MODIFICATION_PREFIX, command_of, is_modification, terms_from_parameters
from ibstream.warehouse import Warehouse
from ibstream.warehouse.audits import AUDITS, AuditFilters, audit_parameters, run_audit
from ibstream.warehouse.schema import quote_ident

#: The order terms an order summary shows: those its API model declares, in its order. Derived from the one
#: declaration of the terms (ibstream.contracts.order_terms), so neither the SQL nor ``order_summary`` restates them.
SUMMARY_TERMS: tuple[str, ...] = tuple(name for name in OrderSummary.model_fields if name in TERM_FIELDS)
_SUMMARY_TERM_COLUMNS = ", ".join(f"i.{quote_ident(name)} AS {quote_ident(name)}" for name in SUMMARY_TERMS)


def list_orders(
    warehouse: Warehouse,
    *,
    symbol: str | None,
    run_id: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> OrderPage:
    """Orders (by intent) newest first, with the latest risk verdict and parent-leg broker status."""
    filters = {"symbol": symbol, "run_id": run_id, "status": status, "since": since, "until": until}
    conditions: list[str] = []
    parameters: dict[str, Any] = {"limit": limit + 1}
    equals(conditions, parameters, "symbol", symbol)
    equals(conditions, parameters, "run_id", run_id)
    equals(conditions, parameters, "status", status)
    time_range(conditions, parameters, "created_time", since, until)
    keyset(conditions, parameters, cursor, filters, "created_time", "order_id")
    sql = f"""
        SELECT * FROM (
            SELECT i.order_id AS order_id, {_SUMMARY_TERM_COLUMNS}, i.created_time AS created_time,
                   multiIf(d.order_id IS NULL, 'pending', d.verdict, 'approved', 'rejected') AS risk,
                   e.status_now AS status, coalesce(e.filled_now, 0) AS filled_quantity,
                   e.avg_now AS avg_fill_price
            FROM (SELECT * FROM {topic_table(warehouse, order_intents.TOPIC)} FINAL ORDER BY _kafka_ts, _offset
                  LIMIT 1 BY order_id) AS i
            LEFT JOIN (
                SELECT order_id, argMax(approved, (decided_time, _kafka_ts, _offset)) AS verdict
                FROM {topic_table(warehouse, risk_decisions.TOPIC)} FINAL
                WHERE NOT startsWith(decision_id, '{MODIFICATION_PREFIX}') GROUP BY order_id
            ) AS d ON d.order_id = i.order_id
            LEFT JOIN (
                SELECT order_id, argMax(toString(status), (event_time, _kafka_ts, _offset)) AS status_now,
                       argMax(filled_quantity, (event_time, _kafka_ts, _offset)) AS filled_now,
                       argMax(avg_fill_price, (event_time, _kafka_ts, _offset)) AS avg_now
                FROM {topic_table(warehouse, order_events.TOPIC)} FINAL WHERE leg = 'parent' GROUP BY order_id
            ) AS e ON e.order_id = i.order_id
        )
        WHERE {where_clause(conditions)}
        ORDER BY created_time DESC, order_id DESC
        LIMIT {{limit:UInt32}}
        SETTINGS join_use_nulls = 1
    """
    rows = warehouse.query(sql, parameters).dicts()
    items = [OrderSummary.model_validate(row) for row in rows]
    return OrderPage(items=items[:limit], next_cursor=next_cursor(items, limit, "created_time", "order_id", filters))


def order_summary(intent: OrderIntent, decisions: Sequence[RiskDecision], events: Sequence[OrderEvent]) -> OrderSummary:
    """An order's summary from its records (decisions and events in time order), as ``list_orders`` computes it."""
    parent = [event for event in events if event.leg == OrderLeg.PARENT]
    prices = [event.avg_fill_price for event in parent if event.avg_fill_price is not None]
    decisions = own_decisions(decisions)
    risk = "pending" if not decisions else ("approved" if decisions[-1].approved else "rejected")
    return OrderSummary(
        order_id=intent.order_id,
        **{name: getattr(intent, name) for name in SUMMARY_TERMS},
        created_time=intent.created_time,
        risk=risk,  # type: ignore[arg-type]  # one of the three literals by construction
        status=parent[-1].status if parent else None,
        filled_quantity=parent[-1].filled_quantity if parent else 0.0,
        avg_fill_price=prices[-1] if prices else None,
    )


def own_decisions(decisions: Sequence[RiskDecision]) -> list[RiskDecision]:
    """The order's own risk decisions, without those on later modifications (``ibstream.order_modifications``)."""
    return [decision for decision in decisions if not is_modification(decision)]


def reconciliation(events: Sequence[OrderEvent], issues: Sequence[str]) -> Reconciliation:
    """The latest parent-leg reconciliation flag and the audit's issues for the order."""
    parent = [event for event in events if event.leg == OrderLeg.PARENT and event.reconciliation_status is not None]
    return Reconciliation(status=parent[-1].reconciliation_status if parent else None, issues=list(issues))


def order_trail(warehouse: Warehouse, order_id: str) -> list[TrailStep]:
    """The order-trail audit's rows for the order, unchanged (the same SQL as ``ibstream audit order-trail``)."""
    result = run_audit(warehouse, "order-trail", order_id=order_id)
    return [TrailStep.model_validate({**row, "time": aware(row["time"])}) for row in result.dicts()]


def unreconciled_issues(warehouse: Warehouse, order_id: str) -> list[str]:
    """The unreconciled-orders audit's issues for one order (its SQL, filtered to the order)."""
    audit = AUDITS["unreconciled-orders"]
    sql = audit.sql().strip().rstrip(";")
    parameters = {**audit_parameters(audit, AuditFilters()), "order_id": order_id}
    rows = warehouse.query(f"SELECT issues FROM ({sql}) WHERE order_id = {{order_id:String}}", parameters)
    return [issue for row in rows.rows for issue in str(row[0]).split(",") if issue]


def get_order(warehouse: Warehouse, order_id: str) -> OrderDetail:
    """The order's full trail; 404 ``order_not_found`` if no intent for it is recorded."""
    by_id = {"id": order_id}
    where = "order_id = {id:String}"
    intents = fetch_records(warehouse, order_intents.TOPIC, where, by_id, "created_time", "order_id")
    if not intents:
        raise ApiError(404, "order_not_found", f"no order {order_id} in the warehouse")
    decisions = fetch_records(
        warehouse, risk_decisions.TOPIC, where, by_id, "decided_time, _kafka_ts, _offset", "decision_id"
    )
    routed: list[RoutedOrder] = fetch_records(warehouse, routed_orders.TOPIC, where, by_id, "routed_time", "order_id")
    events = fetch_records(warehouse, order_events.TOPIC, where, by_id, "event_time, _kafka_ts, _offset", "event_id")
    fills: list[Execution] = fetch_records(warehouse, executions.TOPIC, where, by_id, "exec_time", "exec_id")
    return OrderDetail(
        order=order_summary(intents[0], decisions, events),
        intent=intents[0],
        risk_decision=own[-1] if (own := own_decisions(decisions)) else None,
        routed=routed[0] if routed else None,
        events=events,
        fills=fills,
        reconciliation=reconciliation(events, unreconciled_issues(warehouse, order_id)),
        trail=order_trail(warehouse, order_id),
    )


@dataclass(frozen=True)
class WorkingView:
    """What the order commands judge from: the intent, the summary, and the order's current terms (the intent's, or
    those of the latest modification risk approved)."""

    intent: OrderIntent
    summary: OrderSummary
    terms: OrderTerms


def working_view(warehouse: Warehouse, order_id: str) -> WorkingView:
    """An order's intent, summary and current terms; 404 ``order_not_found`` if no intent for it is recorded.
    Lighter than ``get_order``: no trail, no audits."""
    by_id = {"id": order_id}
    where = "order_id = {id:String}"
    intents = fetch_records(warehouse, order_intents.TOPIC, where, by_id, "created_time", "order_id")
    if not intents:
        raise ApiError(404, "order_not_found", f"no order {order_id} in the warehouse")
    decisions = fetch_records(
        warehouse, risk_decisions.TOPIC, where, by_id, "decided_time, _kafka_ts, _offset", "decision_id"
    )
    events = fetch_records(warehouse, order_events.TOPIC, where, by_id, "event_time, _kafka_ts, _offset", "event_id")
    intent = intents[0]
    return WorkingView(intent, order_summary(intent, decisions, events), current_terms(warehouse, intent, decisions))


def current_terms(warehouse: Warehouse, intent: OrderIntent, decisions: Sequence[RiskDecision]) -> OrderTerms:
    """The terms of the latest-issued modification risk approved (from its command on control.v1), else the
    intent's. Latest by the command's sequence, not the decision's time: a decision re-made after a risk worker's
    restart must not bring back older terms."""
    approved = {command_of(d) for d in decisions if is_modification(d) and d.approved}
    if not approved:
        return OrderTerms(**intent.terms())
    commands: list[ControlCommand] = fetch_records(
        warehouse,
        control.TOPIC,
        "command_id IN {ids:Array(String)}",
        {"ids": sorted(i for i in approved if i is not None)},
        "sequence, issued_time",
        "command_id",
    )
    return terms_from_parameters(commands[-1].parameters) if commands else OrderTerms(**intent.terms())
