-- Closed trades for review: the rows of the view `trade_reviews` (its definitions are in trade_reviews.sql).
-- Parameters (each nullable: no filter): start, end (the window [start, end) of exit_time: trades closed in it),
-- symbol and strategy (the trade's).
SELECT *
FROM trade_reviews
WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR exit_time >= {start:Nullable(DateTime64(6, 'UTC'))})
  AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR exit_time < {end:Nullable(DateTime64(6, 'UTC'))})
  AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
    AND ({strategy:Nullable(String)} IS NULL OR strategy = {strategy:Nullable(String)})
ORDER BY exit_time, order_id
