-- Post-trade review ("hindsight"): one row per closed trade, as the view `trade_reviews`.
-- Created by warehouse migration 4 ($db. is replaced by the warehouse database); re-created when this text changes.
--
-- A trade is one order (one order_id: a bracket of parent, stop-loss and take-profit legs, IB orderRef = order_id).
--   entry fills     executions of the order on the intent's side; exit fills: executions on the opposite side
--                   (the bracket's stop-loss or take-profit leg). Executions are deduplicated by exec_id.
--   closed          entry quantity > 0 and exit quantity ≥ entry quantity; only closed trades are rows here.
--                   A position closed by another order is not a closed trade of this one.
--   direction       +1 for BUY, −1 for SELL.
-- Plan (what the intent asked for):
--   planned_entry   the intent's limit price; for a market order the signal's entry (the price the plan assumed);
--                   NULL for an order with neither (a manual market order without a signal)
--   planned_stop    the intent's stop_loss; planned_target: the intent's take_profit
--   planned_r       |planned_target − planned_entry| / |planned_entry − planned_stop| (the plan's reward:risk)
-- Actuals:
--   entry_price     VWAP of the entry fills; exit_price: VWAP of the exit fills
--   entry_time      first entry fill's exec_time (IB's time); exit_time: last exit fill's exec_time
--   exit_reason     'stop_loss' if an exit fill came from the stop-loss leg, else 'take_profit' if from the
--                   take-profit leg, else 'other' (legs matched by (order_id, ib_order_id) in orders_events_v1)
--   planned_exit    planned_stop for a stop-loss exit, planned_target for a take-profit exit, else NULL
-- Figures (per share unless named otherwise; slippage is positive when the fill was worse than the plan):
--   entry_slippage       (entry_price − planned_entry) × direction;   entry_slippage_bps = ÷ planned_entry × 10⁴
--   exit_slippage        (planned_exit − exit_price) × direction;     exit_slippage_bps  = ÷ planned_exit × 10⁴
--   gross_pnl            (exit_price − entry_price) × direction × entry_quantity
--   commission           sum of every fill's commission (entry and exit)
--   net_pnl              gross_pnl − commission
--   r_multiple           (exit_price − entry_price) × direction / |planned_entry − planned_stop|: the result in
--                        units of the risk the plan took per share (NULL without a planned entry or a zero risk)
--   net_r_multiple       net_pnl / (entry_quantity × |planned_entry − planned_stop|)
--   holding_seconds      exit_time − entry_time, in seconds of IB's clock
--   outcome              'win' (net_pnl > 0), 'loss' (net_pnl < 0) or 'flat'
--   signal_status        the signal's latest lifecycle status (signals_transitions_v1), NULL without a signal
CREATE OR REPLACE VIEW $db.trade_reviews AS
WITH
    fills AS (
        SELECT exec_id, order_id, ib_order_id, toString(side) AS side, quantity, price,
               coalesce(commission, 0) AS commission, exec_time
        FROM $db.executions_v1 FINAL ORDER BY exec_id, _kafka_ts LIMIT 1 BY exec_id
    ),
    legs AS (
        SELECT order_id, assumeNotNull(ib_order_id) AS ib_order_id, any(toString(leg)) AS leg
        FROM $db.orders_events_v1 FINAL WHERE ib_order_id IS NOT NULL GROUP BY order_id, ib_order_id
    ),
    intents AS (
        SELECT order_id, any(run_id) AS run_id, any(signal_id) AS signal_id, any(symbol) AS symbol,
               any(toString(side)) AS side, any(quantity) AS planned_quantity, any(toString(order_type)) AS order_type,
               any(limit_price) AS limit_price, any(stop_loss) AS planned_stop, any(take_profit) AS planned_target,
               any(requested_by) AS requested_by, any(created_time) AS intent_time
        FROM $db.orders_intents_v1 FINAL GROUP BY order_id
    ),
    sigs AS (
        SELECT signal_id, any(strategy) AS strategy, any(entry) AS signal_entry
        FROM $db.signals_v1 FINAL GROUP BY signal_id
    ),
    statuses AS (
        SELECT signal_id, argMax(toString(to_status), time) AS signal_status
        FROM $db.signals_transitions_v1 FINAL GROUP BY signal_id
    ),
    per_order AS (
        SELECT i.order_id AS order_id,
               sumIf(f.quantity, f.side = i.side) AS entry_quantity,
               sumIf(f.quantity * f.price, f.side = i.side) AS entry_notional,
               minIf(f.exec_time, f.side = i.side) AS entry_time,
               sumIf(f.quantity, f.side != i.side) AS exit_quantity,
               sumIf(f.quantity * f.price, f.side != i.side) AS exit_notional,
               maxIf(f.exec_time, f.side != i.side) AS exit_time,
               groupUniqArrayIf(l.leg, f.side != i.side) AS exit_legs,
               count() AS fills,
               sum(f.commission) AS commission
        FROM intents AS i
        INNER JOIN fills AS f ON f.order_id = i.order_id
        LEFT JOIN legs AS l ON l.order_id = f.order_id AND l.ib_order_id = f.ib_order_id
        GROUP BY i.order_id
    )
SELECT
    p.order_id AS order_id, i.signal_id AS signal_id, i.run_id AS run_id, i.symbol AS symbol,
    s.strategy AS strategy, i.side AS side, i.requested_by AS requested_by,
    if(i.side = 'BUY', 1, -1) AS direction,
    i.order_type AS order_type, i.planned_quantity AS planned_quantity,
    if(i.limit_price IS NOT NULL, i.limit_price, s.signal_entry) AS planned_entry,
    i.planned_stop AS planned_stop, i.planned_target AS planned_target,
    abs(planned_entry - planned_stop) AS planned_risk_per_share,
    if(planned_risk_per_share > 0, abs(planned_target - planned_entry) / planned_risk_per_share, NULL) AS planned_r,
    p.entry_quantity AS entry_quantity, p.entry_notional / p.entry_quantity AS entry_price, p.entry_time AS entry_time,
    p.exit_quantity AS exit_quantity, p.exit_notional / p.exit_quantity AS exit_price, p.exit_time AS exit_time,
    multiIf(has(p.exit_legs, 'stop_loss'), 'stop_loss', has(p.exit_legs, 'take_profit'), 'take_profit', 'other')
        AS exit_reason,
    multiIf(exit_reason = 'stop_loss', planned_stop, exit_reason = 'take_profit', planned_target, NULL) AS planned_exit,
    (entry_price - planned_entry) * direction AS entry_slippage,
    entry_slippage / planned_entry * 10000 AS entry_slippage_bps,
    (planned_exit - exit_price) * direction AS exit_slippage,
    exit_slippage / planned_exit * 10000 AS exit_slippage_bps,
    (exit_price - entry_price) * direction * entry_quantity AS gross_pnl,
    p.commission AS commission,
    gross_pnl - p.commission AS net_pnl,
    if(planned_risk_per_share > 0, (exit_price - entry_price) * direction / planned_risk_per_share, NULL)
        AS r_multiple,
    if(planned_risk_per_share > 0, net_pnl / (entry_quantity * planned_risk_per_share), NULL) AS net_r_multiple,
    dateDiff('microsecond', p.entry_time, p.exit_time) / 1e6 AS holding_seconds,
    p.fills AS fills,
    multiIf(net_pnl > 0, 'win', net_pnl < 0, 'loss', 'flat') AS outcome,
    st.signal_status AS signal_status
FROM per_order AS p
INNER JOIN intents AS i ON i.order_id = p.order_id
LEFT JOIN sigs AS s ON s.signal_id = i.signal_id
LEFT JOIN statuses AS st ON st.signal_id = i.signal_id
WHERE p.entry_quantity > 0 AND p.exit_quantity >= p.entry_quantity - 1e-9
SETTINGS join_use_nulls = 1
