-- Orders whose records do not reconcile. One row per order with every issue found:
--   no_risk_decision         routed or seen at the broker without an approving risk decision for that order
--   not_acknowledged         routed, but no broker order event at all
--   unrouted                 broker order events for an order that was never routed
--   fill_mismatch            a routed order's parent-leg latest filled_quantity differs from the sum of fills on
--                            the routed side (executions deduplicated by exec_id; exits are on the opposite side)
--   reconciliation_mismatch  the latest parent-leg event says reconciliation_status = 'mismatch'
-- Parameters: symbol (nullable: every symbol).
WITH
    routed AS (
        SELECT order_id, any(symbol) AS symbol, any(side) AS side, any(quantity) AS quantity,
               any(decision_id) AS decision_id
        FROM orders_routed_v1 FINAL GROUP BY order_id
    ),
    approved AS (SELECT DISTINCT order_id FROM risk_decisions_v1 FINAL WHERE approved),
    parent AS (
        SELECT order_id, any(symbol) AS symbol,
               argMax(status, (event_time, _kafka_ts, _offset)) AS status,
               argMax(filled_quantity, (event_time, _kafka_ts, _offset)) AS filled,
               argMax(reconciliation_status, (event_time, _kafka_ts, _offset)) AS recon
        FROM orders_events_v1 FINAL WHERE leg = 'parent' GROUP BY order_id
    ),
    seen AS (SELECT DISTINCT order_id FROM orders_events_v1 FINAL),
    entry_fills AS (
        SELECT e.order_id AS order_id, sum(e.quantity) AS qty
        FROM (SELECT * FROM executions_v1 FINAL ORDER BY exec_id, _kafka_ts LIMIT 1 BY exec_id) AS e
        INNER JOIN routed ON routed.order_id = e.order_id AND routed.side = e.side
        GROUP BY e.order_id
    ),
    orders AS (SELECT order_id FROM routed UNION DISTINCT SELECT order_id FROM seen),
    joined AS (
        SELECT orders.order_id AS order_id,
               coalesce(routed.symbol, parent.symbol) AS symbol,
               routed.order_id IS NOT NULL AS is_routed,
               seen.order_id IS NOT NULL AS is_seen,
               approved.order_id IS NOT NULL AS is_approved,
               parent.status AS status,
               routed.quantity AS routed_quantity,
               parent.filled AS broker_filled,
               entry_fills.qty AS executed,
               parent.recon AS recon
        FROM orders
        LEFT JOIN routed ON routed.order_id = orders.order_id
        LEFT JOIN seen ON seen.order_id = orders.order_id
        LEFT JOIN approved ON approved.order_id = orders.order_id
        LEFT JOIN parent ON parent.order_id = orders.order_id
        LEFT JOIN entry_fills ON entry_fills.order_id = orders.order_id
    )
SELECT
    order_id,
    symbol,
    arrayStringConcat(arrayFilter(x -> x != '', [
        if(NOT is_approved, 'no_risk_decision', ''),
        if(is_routed AND NOT is_seen, 'not_acknowledged', ''),
        if(is_seen AND NOT is_routed, 'unrouted', ''),
        if(is_routed AND broker_filled IS NOT NULL AND abs(broker_filled - coalesce(executed, 0)) > 1e-6, 'fill_mismatch', ''),
        if(recon = 'mismatch', 'reconciliation_mismatch', '')
    ]), ',') AS issues,
    status,
    routed_quantity,
    broker_filled,
    coalesce(executed, 0) AS executed_quantity
FROM joined
WHERE issues != '' AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
ORDER BY order_id
SETTINGS join_use_nulls = 1
