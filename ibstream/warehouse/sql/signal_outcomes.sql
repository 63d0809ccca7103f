-- Signal outcomes by strategy.
-- Parameters (each nullable: no filter): start, end (the window [start, end) of the signal's created_time),
-- symbol and strategy (the signal's).
-- Definitions (from the records available; executions carry no leg, so sides tell entries from exits):
--   a signal's orders   order intents whose signal_id is the signal's
--   entry fills         executions of those orders on the signal's side; exit fills: the opposite side
--   traded              the signal has at least one entry fill
--   closed              traded and exit quantity ≥ entry quantity (the position it opened is flat again)
--   pnl                 (exit VWAP − entry VWAP) × direction × entry quantity − all commissions of its fills,
--                       direction +1 for BUY, −1 for SELL; only closed signals count
--   r                   (exit VWAP − entry VWAP) × direction / |entry VWAP − signal stop|: the result in units of
--                       the risk the signal took per share
--   hit_rate            closed signals with pnl > 0 / closed signals
-- Executions are deduplicated by exec_id, signals by signal_id, intents by order_id.
WITH
    sig AS (
        SELECT signal_id, any(strategy) AS strategy, any(symbol) AS symbol, any(side) AS side, any(stop) AS stop,
               any(created_time) AS created_time
        FROM signals_v1 FINAL GROUP BY signal_id
    ),
    ord AS (
        SELECT order_id, any(assumeNotNull(signal_id)) AS for_signal
        FROM orders_intents_v1 FINAL WHERE isNotNull(signal_id) GROUP BY order_id
    ),
    fills AS (
        SELECT order_id, side, sum(quantity) AS qty, sum(quantity * price) AS notional,
               sum(coalesce(commission, 0)) AS commission
        FROM (SELECT * FROM executions_v1 FINAL ORDER BY exec_id, _kafka_ts LIMIT 1 BY exec_id)
        GROUP BY order_id, side
    ),
    per_signal AS (
        SELECT sig.signal_id AS signal_id, any(sig.strategy) AS strategy, any(sig.side) AS side,
               any(sig.stop) AS stop,
               sumIf(fills.qty, fills.side = sig.side) AS entry_qty,
               sumIf(fills.notional, fills.side = sig.side) AS entry_notional,
               sumIf(fills.qty, fills.side != sig.side AND fills.side != '') AS exit_qty,
               sumIf(fills.notional, fills.side != sig.side AND fills.side != '') AS exit_notional,
               sum(fills.commission) AS commission
        FROM sig
        LEFT JOIN ord ON ord.for_signal = sig.signal_id
        LEFT JOIN fills ON fills.order_id = ord.order_id
        WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR sig.created_time >= {start:Nullable(DateTime64(6, 'UTC'))})
          AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR sig.created_time < {end:Nullable(DateTime64(6, 'UTC'))})
          AND ({symbol:Nullable(String)} IS NULL OR sig.symbol = {symbol:Nullable(String)})
            AND ({strategy:Nullable(String)} IS NULL OR sig.strategy = {strategy:Nullable(String)})
        GROUP BY sig.signal_id
    ),
    outcome AS (
        SELECT strategy, entry_qty > 0 AS is_traded,
               entry_qty > 0 AND exit_qty >= entry_qty - 1e-9 AS is_closed,
               if(side = 'BUY', 1, -1) AS direction,
               if(entry_qty > 0, entry_notional / entry_qty, NULL) AS entry_px,
               if(exit_qty > 0, exit_notional / exit_qty, NULL) AS exit_px,
               (exit_px - entry_px) * direction * entry_qty - commission AS pnl,
               (exit_px - entry_px) * direction / abs(entry_px - stop) AS r
        FROM per_signal
    )
SELECT
    strategy,
    count() AS signals,
    countIf(is_traded) AS traded,
    countIf(is_closed) AS closed,
    countIf(is_closed AND pnl > 0) AS wins,
    if(closed > 0, wins / closed, NULL) AS hit_rate,
    avgIf(r, is_closed) AS avg_r,
    sumIf(pnl, is_closed) AS pnl_total
FROM outcome
GROUP BY strategy
ORDER BY strategy
