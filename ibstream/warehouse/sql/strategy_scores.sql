-- Strategy scores from every scored signal (signals.outcomes.v1: traded or not), by strategy, symbol and UTC day.
-- Parameters (each nullable: no filter): start, end (the window [start, end) of the signal's signal_time),
-- symbol and strategy (the signal's).
-- One row per (strategy, symbol, day), then per (strategy, symbol) over the days (day NULL), then per strategy
-- (symbol and day NULL). Definitions (as GET /v1/strategies/{instance}/performance computes them):
--   scored          signals with an outcome, one per signal_id (the first recorded)
--   wins            scored signals with R multiple > 0; hit_rate = wins / scored
--   target_rate     signals that hit their target / scored
--   expectancy_r    mean R multiple; expectancy_pnl: mean hypothetical P&L at the planned size
--   profit_factor   gross hypothetical profit / gross hypothetical loss (NULL without a loss)
WITH scored AS (
    SELECT strategy, symbol, toDate(signal_time) AS day, outcome, r_multiple, pnl
    FROM (SELECT * FROM signals_outcomes_v1 FINAL ORDER BY _kafka_ts, _offset LIMIT 1 BY signal_id)
    WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR signal_time >= {start:Nullable(DateTime64(6, 'UTC'))})
      AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR signal_time < {end:Nullable(DateTime64(6, 'UTC'))})
      AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
      AND ({strategy:Nullable(String)} IS NULL OR strategy = {strategy:Nullable(String)})
)
SELECT
    strategy,
    symbol,
    day,
    count() AS scored,
    countIf(r_multiple > 0) AS wins,
    wins / scored AS hit_rate,
    countIf(outcome = 'hit_target') / scored AS target_rate,
    avg(r_multiple) AS expectancy_r,
    avg(pnl) AS expectancy_pnl,
    sumIf(pnl, pnl > 0) AS gross_profit,
    -sumIf(pnl, pnl < 0) AS gross_loss,
    if(gross_loss > 0, gross_profit / gross_loss, NULL) AS profit_factor,
    countIf(outcome = 'hit_target') AS hit_target,
    countIf(outcome = 'hit_stop') AS hit_stop,
    countIf(outcome = 'expired') AS expired
FROM scored
GROUP BY GROUPING SETS ((strategy, symbol, day), (strategy, symbol), (strategy))
ORDER BY strategy, symbol NULLS LAST, day NULLS LAST
-- The totals' symbol and day are NULL, not '' and 1970-01-01.
SETTINGS group_by_use_nulls = 1
