"""Warehouse reads behind the GET routes, and the pure functions that shape their rows.

Every read uses FINAL (ReplacingMergeTree dedup on Kafka coordinates) and ``LIMIT 1 BY`` the logical id (an
at-least-once retry can write the same record at two offsets). "Latest" always means the greatest
(record time, Kafka timestamp, offset) — the order the audits use — so a list row and its detail agree.
Lists use keyset pagination on (time, id) descending: stable while new rows arrive, no OFFSET scans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from api.cursor import decode_cursor, encode_cursor
from api.errors import ApiError
from api.models import (
    Fill,
    OrderDetail,
    OrderPage,
    OrderSummary,
    Reconciliation,
    RunDetail,
    RunPage,
    RunStateChange,
    RunSummary,
    SignalDetail,
    SignalOutcome,
    SignalPage,
    SignalSummary,
    TradeReview,
    TrailStep,
    Transition,
)
from ibstream.contracts import (
    TERM_FIELDS,
    Execution,
    OrchestrationRun,
    OrderEvent,
    OrderIntent,
    Record,
    RiskDecision,
    RoutedOrder,
    Signal,
    SignalTransition,
    TopicSpec,
    executions,
    order_events,
    order_intents,
    risk_decisions,
    routed_orders,
    runs,
    signal_transitions,
    signals,
)
from ibstream.contracts.enums import OrderLeg, RunState, Side, SignalStatus
from ibstream.warehouse import Warehouse
from ibstream.warehouse.audits import AUDITS, run_audit
from ibstream.warehouse.schema import quote_ident

R = TypeVar("R", bound=Record)

#: Run states after which approve/reject can change nothing.
FINAL_RUN_STATES = frozenset(
    {RunState.APPROVED, RunState.SUBMITTED, RunState.COMPLETED, RunState.FAILED, RunState.EXPIRED, RunState.REJECTED}
)


def micros(value: datetime) -> int:
    """Microseconds since the epoch: compared as integers in SQL, so cursors keep full precision."""
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _table(warehouse: Warehouse, spec: TopicSpec[Any]) -> str:
    return warehouse.table(warehouse.schema.for_topic(spec).name)


def fetch_records(
    warehouse: Warehouse,
    spec: TopicSpec[R],
    where: str,
    parameters: Mapping[str, Any],
    order_by: str,
    dedup_by: str,
) -> list[R]:
    """Records of one topic matching ``where``, deduplicated by ``dedup_by``, in ``order_by`` order."""
    table = warehouse.schema.for_topic(spec)
    names = ", ".join(quote_ident(column.name) for column in table.columns)
    sql = (
        f"SELECT {names} FROM (SELECT * FROM {warehouse.table(table.name)} FINAL WHERE {where} "
        f"ORDER BY _kafka_ts, _offset LIMIT 1 BY {dedup_by}) ORDER BY {order_by}"
    )
    result = warehouse.query(sql, parameters, column_formats=table.column_formats())
    return [table.from_row(row) for row in result.rows]  # type: ignore[misc]  # from_row builds spec.record


def _keyset(
    conditions: list[str],
    parameters: dict[str, Any],
    cursor: str | None,
    filters: Mapping[str, Any],
    time_column: str,
    id_column: str,
) -> None:
    if cursor is None:
        return
    time, item_id = decode_cursor(cursor, filters)
    conditions.append(
        f"(toUnixTimestamp64Micro({time_column}), {id_column}) < ({{cursor_us:Int64}}, {{cursor_id:String}})"
    )
    parameters.update(cursor_us=micros(time), cursor_id=item_id)


def _time_range(
    conditions: list[str], parameters: dict[str, Any], column: str, since: datetime | None, until: datetime | None
) -> None:
    if since is not None:
        conditions.append(f"toUnixTimestamp64Micro({column}) >= {{since_us:Int64}}")
        parameters["since_us"] = micros(since)
    if until is not None:
        conditions.append(f"toUnixTimestamp64Micro({column}) < {{until_us:Int64}}")
        parameters["until_us"] = micros(until)


def _equals(conditions: list[str], parameters: dict[str, Any], column: str, value: str | None) -> None:
    if value is not None:
        conditions.append(f"{column} = {{{column}_eq:String}}")
        parameters[f"{column}_eq"] = value


def next_cursor(items: Sequence[Any], limit: int, time_of: str, id_of: str, filters: Mapping[str, Any]) -> str | None:
    """The cursor after the last item of a full page (``items`` holds up to limit + 1 rows); None at the end."""
    if len(items) <= limit:
        return None
    last = items[limit - 1]
    return encode_cursor(getattr(last, time_of), getattr(last, id_of), filters)


def _where(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "1"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- signals ---------------------------------------------------------------------------------------------------------


def list_signals(
    warehouse: Warehouse,
    *,
    symbol: str | None,
    strategy: str | None,
    status: SignalStatus | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> SignalPage:
    """Signals newest first (created_time, then signal_id), with their current status."""
    filters = {"symbol": symbol, "strategy": strategy, "status": status, "since": since, "until": until}
    conditions: list[str] = []
    parameters: dict[str, Any] = {"limit": limit + 1}
    _equals(conditions, parameters, "symbol", symbol)
    _equals(conditions, parameters, "strategy", strategy)
    _equals(conditions, parameters, "status", status.value if status else None)
    _time_range(conditions, parameters, "created_time", since, until)
    _keyset(conditions, parameters, cursor, filters, "created_time", "signal_id")
    sql = f"""
        SELECT signal_id, symbol, strategy, side, confidence, `entry`, `stop`, take_profit, bar_start, created_time,
               expiry_time, status
        FROM (
            SELECT s.signal_id AS signal_id, s.symbol AS symbol, s.strategy AS strategy, s.side AS side,
                   s.confidence AS confidence, s.`entry` AS `entry`, s.`stop` AS `stop`, s.take_profit AS take_profit,
                   s.bar_start AS bar_start, s.created_time AS created_time, s.expiry_time AS expiry_time,
                   if(t.latest = '', 'new', t.latest) AS status
            FROM (SELECT * FROM {_table(warehouse, signals.TOPIC)} FINAL ORDER BY _kafka_ts, _offset
                  LIMIT 1 BY signal_id) AS s
            LEFT JOIN (
                SELECT signal_id, argMax(toString(to_status), (time, _kafka_ts, _offset)) AS latest
                FROM {_table(warehouse, signal_transitions.TOPIC)} FINAL GROUP BY signal_id
            ) AS t ON t.signal_id = s.signal_id
        )
        WHERE {_where(conditions)}
        ORDER BY created_time DESC, signal_id DESC
        LIMIT {{limit:UInt32}}
    """
    rows = warehouse.query(sql, parameters).dicts()
    items = [SignalSummary.model_validate(row) for row in rows]
    return SignalPage(items=items[:limit], next_cursor=next_cursor(items, limit, "created_time", "signal_id", filters))


def signal_outcome(signal_side: Side, stop: float, order_ids: Iterable[str], fills: Iterable[Fill]) -> SignalOutcome:
    """A signal's outcome by the signal-outcomes audit's definitions (see ``sql/signal_outcomes.sql``)."""
    entry_qty = entry_notional = exit_qty = exit_notional = commission = 0.0
    for fill in fills:
        if fill.side == signal_side:
            entry_qty += fill.quantity
            entry_notional += fill.quantity * fill.price
        else:
            exit_qty += fill.quantity
            exit_notional += fill.quantity * fill.price
        commission += fill.commission or 0.0
    traded = entry_qty > 0
    closed = traded and exit_qty >= entry_qty - 1e-9
    entry_px = entry_notional / entry_qty if entry_qty > 0 else None
    exit_px = exit_notional / exit_qty if exit_qty > 0 else None
    pnl = r = None
    if closed and entry_px is not None and exit_px is not None:
        direction = 1.0 if signal_side == Side.BUY else -1.0
        pnl = (exit_px - entry_px) * direction * entry_qty - commission
        risk = abs(entry_px - stop)
        r = (exit_px - entry_px) * direction / risk if risk > 0 else None
    return SignalOutcome(
        order_ids=sorted(set(order_ids)),
        traded=traded,
        closed=closed,
        entry_quantity=entry_qty,
        entry_price=entry_px,
        exit_quantity=exit_qty,
        exit_price=exit_px,
        commission=commission,
        pnl=pnl,
        r=r,
    )


def signal_detail(
    signal: Signal,
    transitions: Sequence[SignalTransition],
    run_ids: Sequence[str],
    outcome: SignalOutcome,
    review: Sequence[TradeReview] = (),
) -> SignalDetail:
    """Assemble a signal's detail; its status is the latest transition's (``new`` before any)."""
    status = transitions[-1].to_status if transitions else SignalStatus.NEW
    data = signal.model_dump()
    return SignalDetail(
        **data,
        status=status,
        transitions=[Transition.model_validate(t.model_dump()) for t in transitions],
        run_ids=sorted(set(run_ids)),
        outcome=outcome,
        review=list(review),
    )


def get_signal(warehouse: Warehouse, signal_id: str) -> SignalDetail:
    """One signal with transitions, runs and outcome; 404 ``signal_not_found``."""
    by_id = {"id": signal_id}
    found = fetch_records(warehouse, signals.TOPIC, "signal_id = {id:String}", by_id, "created_time", "signal_id")
    if not found:
        raise ApiError(404, "signal_not_found", f"no signal {signal_id} in the warehouse")
    signal = found[0]
    transitions = fetch_records(
        warehouse,
        signal_transitions.TOPIC,
        "signal_id = {id:String}",
        by_id,
        "time, _kafka_ts, _offset",
        "transition_id",
    )
    run_ids = [
        str(row[0])
        for row in warehouse.query(
            f"SELECT DISTINCT run_id FROM {_table(warehouse, runs.TOPIC)} FINAL WHERE signal_id = {{id:String}}", by_id
        ).rows
    ]
    order_ids = [
        str(row[0])
        for row in warehouse.query(
            f"SELECT DISTINCT order_id FROM {_table(warehouse, order_intents.TOPIC)} FINAL "
            "WHERE signal_id = {id:String}",
            by_id,
        ).rows
    ]
    fills = _fills(warehouse, order_ids)
    outcome = signal_outcome(signal.side, signal.stop, order_ids, fills)
    return signal_detail(signal, transitions, run_ids, outcome, trade_reviews(warehouse, signal_id))


def trade_reviews(warehouse: Warehouse, signal_id: str) -> list[TradeReview]:
    """The post-trade review of every closed trade of a signal, oldest entry first (view ``trade_reviews``)."""
    fields = list(TradeReview.model_fields)
    sql = (
        f"SELECT {', '.join(quote_ident(name) for name in fields)} "
        f"FROM {quote_ident(warehouse.database)}.trade_reviews "
        "WHERE signal_id = {id:String} ORDER BY entry_time, order_id"
    )
    return [
        TradeReview.model_validate(dict(zip(fields, row, strict=True)))
        for row in warehouse.query(sql, {"id": signal_id}).rows
    ]


def _fills(warehouse: Warehouse, order_ids: Sequence[str]) -> list[Fill]:
    if not order_ids:
        return []
    records = fetch_records(
        warehouse, executions.TOPIC, "order_id IN {ids:Array(String)}", {"ids": list(order_ids)}, "exec_time", "exec_id"
    )
    return [
        Fill(order_id=e.order_id, side=e.side, quantity=e.quantity, price=e.price, commission=e.commission)
        for e in records
    ]


def signal_exists(warehouse: Warehouse, signal_id: str) -> bool:
    """Whether the warehouse holds the signal."""
    sql = f"SELECT count() FROM {_table(warehouse, signals.TOPIC)} FINAL WHERE signal_id = {{id:String}}"
    return int(warehouse.query(sql, {"id": signal_id}).rows[0][0]) > 0


# --- runs ------------------------------------------------------------------------------------------------------------


def list_runs(
    warehouse: Warehouse,
    *,
    signal_id: str | None,
    symbol: str | None,
    state: RunState | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> RunPage:
    """Runs most recently started first (first record's time, then run_id), each in its latest state."""
    filters = {"signal_id": signal_id, "symbol": symbol, "state": state, "since": since, "until": until}
    conditions: list[str] = []
    parameters: dict[str, Any] = {"limit": limit + 1}
    _equals(conditions, parameters, "signal_id", signal_id)
    _equals(conditions, parameters, "symbol", symbol)
    _equals(conditions, parameters, "state", state.value if state else None)
    _time_range(conditions, parameters, "started_time", since, until)
    _keyset(conditions, parameters, cursor, filters, "started_time", "run_id")
    # Aliases differ from column names: ClickHouse would otherwise substitute an alias into its own aggregate.
    latest = "(time, _kafka_ts, _offset)"
    sql = f"""
        SELECT run_id, signal_id, symbol, state_now AS state, approval_now AS approval_mode, attempt_now AS attempt,
               actor_now AS actor, started_time, updated_time
        FROM (
            SELECT run_id, any(signal_id) AS signal_id, any(symbol) AS symbol,
                   argMax(toString(`state`), {latest}) AS state_now,
                   argMax(approval_mode, {latest}) AS approval_now,
                   argMax(attempt, {latest}) AS attempt_now,
                   argMax(actor, {latest}) AS actor_now,
                   min(time) AS started_time, max(time) AS updated_time
            FROM {_table(warehouse, runs.TOPIC)} FINAL GROUP BY run_id
        )
        WHERE {_where(conditions)}
        ORDER BY started_time DESC, run_id DESC
        LIMIT {{limit:UInt32}}
    """
    rows = warehouse.query(sql, parameters).dicts()
    items = [RunSummary.model_validate(row) for row in rows]
    return RunPage(items=items[:limit], next_cursor=next_cursor(items, limit, "started_time", "run_id", filters))


def run_detail(records: Sequence[OrchestrationRun], order_ids: Sequence[str]) -> RunDetail:
    """Assemble a run from its state records (in time order): latest state, history, latest plan, failures."""
    last = records[-1]
    history = [
        RunStateChange(
            state=r.state,
            previous_state=r.previous_state,
            reason=r.reason,
            actor=r.actor,
            attempt=r.attempt,
            time=r.time,
        )
        for r in records
    ]
    plans = [r.plan for r in records if r.plan is not None]
    modes = [r.approval_mode for r in records if r.approval_mode is not None]
    return RunDetail(
        run_id=last.run_id,
        signal_id=last.signal_id,
        symbol=last.symbol,
        state=last.state,
        approval_mode=modes[-1] if modes else None,
        attempt=last.attempt,
        actor=last.actor,
        started_time=min(r.time for r in records),
        updated_time=max(r.time for r in records),
        history=history,
        plan=plans[-1] if plans else None,
        failures=[change for change in history if change.state == RunState.FAILED],
        order_ids=sorted(set(order_ids)),
    )


def _run_records(warehouse: Warehouse, run_id: str) -> list[OrchestrationRun]:
    return fetch_records(
        warehouse,
        runs.TOPIC,
        "run_id = {id:String}",
        {"id": run_id},
        "time, _kafka_ts, _offset",
        "state, previous_state, attempt, time",
    )


def get_run(warehouse: Warehouse, run_id: str) -> RunDetail:
    """One run with history, plan, failures and orders; 404 ``run_not_found``."""
    records = _run_records(warehouse, run_id)
    if not records:
        raise ApiError(404, "run_not_found", f"no run {run_id} in the warehouse")
    order_ids = [
        str(row[0])
        for row in warehouse.query(
            f"SELECT DISTINCT order_id FROM {_table(warehouse, order_intents.TOPIC)} FINAL "
            "WHERE run_id = {id:String}",
            {"id": run_id},
        ).rows
    ]
    return run_detail(records, order_ids)


def run_state(warehouse: Warehouse, run_id: str) -> RunState | None:
    """A run's latest state, or None if the warehouse does not know the run."""
    records = _run_records(warehouse, run_id)
    return records[-1].state if records else None


# --- orders ----------------------------------------------------------------------------------------------------------


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
    _equals(conditions, parameters, "symbol", symbol)
    _equals(conditions, parameters, "run_id", run_id)
    _equals(conditions, parameters, "status", status)
    _time_range(conditions, parameters, "created_time", since, until)
    _keyset(conditions, parameters, cursor, filters, "created_time", "order_id")
    sql = f"""
        SELECT * FROM (
            SELECT i.order_id AS order_id, {_SUMMARY_TERM_COLUMNS}, i.created_time AS created_time,
                   multiIf(d.order_id IS NULL, 'pending', d.verdict, 'approved', 'rejected') AS risk,
                   e.status_now AS status, coalesce(e.filled_now, 0) AS filled_quantity,
                   e.avg_now AS avg_fill_price
            FROM (SELECT * FROM {_table(warehouse, order_intents.TOPIC)} FINAL ORDER BY _kafka_ts, _offset
                  LIMIT 1 BY order_id) AS i
            LEFT JOIN (
                SELECT order_id, argMax(approved, (decided_time, _kafka_ts, _offset)) AS verdict
                FROM {_table(warehouse, risk_decisions.TOPIC)} FINAL GROUP BY order_id
            ) AS d ON d.order_id = i.order_id
            LEFT JOIN (
                SELECT order_id, argMax(toString(status), (event_time, _kafka_ts, _offset)) AS status_now,
                       argMax(filled_quantity, (event_time, _kafka_ts, _offset)) AS filled_now,
                       argMax(avg_fill_price, (event_time, _kafka_ts, _offset)) AS avg_now
                FROM {_table(warehouse, order_events.TOPIC)} FINAL WHERE leg = 'parent' GROUP BY order_id
            ) AS e ON e.order_id = i.order_id
        )
        WHERE {_where(conditions)}
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


def reconciliation(events: Sequence[OrderEvent], issues: Sequence[str]) -> Reconciliation:
    """The latest parent-leg reconciliation flag and the audit's issues for the order."""
    parent = [event for event in events if event.leg == OrderLeg.PARENT and event.reconciliation_status is not None]
    return Reconciliation(status=parent[-1].reconciliation_status if parent else None, issues=list(issues))


def order_trail(warehouse: Warehouse, order_id: str) -> list[TrailStep]:
    """The order-trail audit's rows for the order, unchanged (the same SQL as ``ibstream audit order-trail``)."""
    result = run_audit(warehouse, "order-trail", order_id=order_id)
    return [TrailStep.model_validate({**row, "time": _aware(row["time"])}) for row in result.dicts()]


def unreconciled_issues(warehouse: Warehouse, order_id: str) -> list[str]:
    """The unreconciled-orders audit's issues for one order (its SQL, filtered to the order)."""
    sql = AUDITS["unreconciled-orders"].sql().strip().rstrip(";")
    rows = warehouse.query(f"SELECT issues FROM ({sql}) WHERE order_id = {{order_id:String}}", {"order_id": order_id})
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
        risk_decision=decisions[-1] if decisions else None,
        routed=routed[0] if routed else None,
        events=events,
        fills=fills,
        reconciliation=reconciliation(events, unreconciled_issues(warehouse, order_id)),
        trail=order_trail(warehouse, order_id),
    )
