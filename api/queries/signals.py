"""Signal reads: the signal list with current status, and a signal's detail with its outcome and reviews."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from api.errors import ApiError
from api.models import Fill, SignalDetail, SignalOutcome, SignalPage, SignalSummary, TradeReview, Transition
from api.queries.common import equals, fetch_records, keyset, next_cursor, time_range, topic_table, where_clause
from ibstream.contracts import Signal, SignalTransition, executions, order_intents, runs, signal_transitions, signals
from ibstream.contracts.enums import Side, SignalStatus
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import quote_ident


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
    equals(conditions, parameters, "symbol", symbol)
    equals(conditions, parameters, "strategy", strategy)
    equals(conditions, parameters, "status", status.value if status else None)
    time_range(conditions, parameters, "created_time", since, until)
    keyset(conditions, parameters, cursor, filters, "created_time", "signal_id")
    sql = f"""
        SELECT signal_id, symbol, strategy, side, confidence, `entry`, `stop`, take_profit, bar_start, created_time,
               expiry_time, status
        FROM (
            SELECT s.signal_id AS signal_id, s.symbol AS symbol, s.strategy AS strategy, s.side AS side,
                   s.confidence AS confidence, s.`entry` AS `entry`, s.`stop` AS `stop`, s.take_profit AS take_profit,
                   s.bar_start AS bar_start, s.created_time AS created_time, s.expiry_time AS expiry_time,
                   if(t.latest = '', 'new', t.latest) AS status
            FROM (SELECT * FROM {topic_table(warehouse, signals.TOPIC)} FINAL ORDER BY _kafka_ts, _offset
                  LIMIT 1 BY signal_id) AS s
            LEFT JOIN (
                SELECT signal_id, argMax(toString(to_status), (time, _kafka_ts, _offset)) AS latest
                FROM {topic_table(warehouse, signal_transitions.TOPIC)} FINAL GROUP BY signal_id
            ) AS t ON t.signal_id = s.signal_id
        )
        WHERE {where_clause(conditions)}
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
            f"SELECT DISTINCT run_id FROM {topic_table(warehouse, runs.TOPIC)} FINAL WHERE signal_id = {{id:String}}",
            by_id,
        ).rows
    ]
    order_ids = [
        str(row[0])
        for row in warehouse.query(
            f"SELECT DISTINCT order_id FROM {topic_table(warehouse, order_intents.TOPIC)} FINAL "
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
    sql = f"SELECT count() FROM {topic_table(warehouse, signals.TOPIC)} FINAL WHERE signal_id = {{id:String}}"
    return int(warehouse.query(sql, {"id": signal_id}).rows[0][0]) > 0
