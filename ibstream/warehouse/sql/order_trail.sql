-- Order trail: everything recorded about one order, in time order.
--   signal → orchestration run states → order intent → risk decision → routing → operator commands on the order
--   (cancel_order, modify_order) → broker order events (with IB's message) → fills.
-- Parameters: order_id. Rows are deduplicated by (topic, partition, offset) with FINAL and by logical id with
-- LIMIT 1 BY, so an at-least-once retry that wrote the same event twice shows once.
WITH
    intent_refs AS (
        SELECT order_id, run_id, signal_id FROM orders_intents_v1 FINAL WHERE order_id = {order_id:String}
    ),
    run_ids AS (SELECT run_id FROM intent_refs WHERE run_id IS NOT NULL),
    signal_ids AS (
        SELECT signal_id FROM intent_refs WHERE signal_id IS NOT NULL
        UNION ALL
        SELECT signal_id FROM orchestration_runs_v1 FINAL WHERE run_id IN (SELECT run_id FROM run_ids)
    )
SELECT time, stage, id, status, detail
FROM (
    SELECT created_time AS time, 1 AS rank, 'signal' AS stage, signal_id AS id, toString(side) AS status,
           concat(strategy, ' ', symbol, ' confidence=', toString(confidence), ' entry=', toString(entry),
                  ' stop=', toString(stop)) AS detail
    FROM signals_v1 FINAL WHERE signal_id IN (SELECT signal_id FROM signal_ids)
    UNION ALL
    SELECT time, 2, 'run', run_id, toString(state), coalesce(reason, '')
    FROM orchestration_runs_v1 FINAL WHERE run_id IN (SELECT run_id FROM run_ids)
    UNION ALL
    SELECT created_time, 3, 'intent', order_id, toString(side),
           concat(toString(quantity), ' ', symbol, ' ', toString(order_type), ' by ', requested_by)
    FROM orders_intents_v1 FINAL WHERE order_id = {order_id:String}
    UNION ALL
    SELECT decided_time, 4, 'risk_decision', decision_id, if(approved, 'approved', 'rejected'),
           arrayStringConcat(arrayMap(c -> c.name, arrayFilter(c -> NOT c.passed, checks)), ',')
    FROM risk_decisions_v1 FINAL WHERE order_id = {order_id:String}
    UNION ALL
    SELECT routed_time, 5, 'routed', order_id, 'routed', concat('decision ', decision_id)
    FROM orders_routed_v1 FINAL WHERE order_id = {order_id:String}
    UNION ALL
    SELECT issued_time, 6, 'command', command_id, toString(command), concat('by ', actor, ': ', reason)
    FROM control_v1 FINAL
    WHERE target = {order_id:String} AND toString(command) IN ('cancel_order', 'modify_order')
    UNION ALL
    SELECT event_time, 7, 'order_event', event_id, toString(status),
           concat(toString(leg), ' filled=', toString(filled_quantity), ' remaining=', toString(remaining_quantity),
                  if(broker_message IS NULL OR broker_message = '', '', concat(' ', broker_message)))
    FROM orders_events_v1 FINAL WHERE order_id = {order_id:String}
    UNION ALL
    SELECT exec_time, 8, 'fill', exec_id, toString(side), concat(toString(quantity), ' @ ', toString(price))
    FROM executions_v1 FINAL WHERE order_id = {order_id:String}
)
ORDER BY time, rank, id, status
LIMIT 1 BY stage, id, status
