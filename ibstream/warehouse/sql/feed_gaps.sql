-- Feed gaps and lag by symbol and UTC day.
-- Parameters (each nullable: no filter): start, end (a window [start, end) of each record's own time: a bar's
-- start, a gap's first missing bar, a quote's or bar's event_time), symbol.
--   bars            distinct bar starts that day ((symbol, start) identifies a bar across live/backfill/replay)
--   gaps            distinct gap_ids whose first missing bar starts that day, at their latest state
--   missing_bars    sum of the gaps' missing_bars; recovered_bars likewise
--   unrecoverable   gaps whose latest state is unrecoverable; open_gaps: latest state open or backfilling
--   feed_lag_*_ms   ingest_time − event_time over that day's quotes and bars (by event_time's day)
SELECT
    day,
    symbol,
    sum(bars) AS bars,
    sum(gaps) AS gaps,
    sum(missing_bars) AS missing_bars,
    sum(recovered_bars) AS recovered_bars,
    sum(unrecoverable) AS unrecoverable,
    sum(open_gaps) AS open_gaps,
    if(sum(lag_n) > 0, sum(lag_sum) / sum(lag_n), NULL) AS feed_lag_avg_ms,
    max(lag_max) AS feed_lag_max_ms
FROM (
    SELECT toDate(start) AS day, symbol, uniqExact(start) AS bars, 0 AS gaps, 0 AS missing_bars,
           0 AS recovered_bars, 0 AS unrecoverable, 0 AS open_gaps, 0 AS lag_sum, 0 AS lag_n,
           CAST(NULL AS Nullable(Int64)) AS lag_max
    FROM md_bars_5s_v1 FINAL
    WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR start >= {start:Nullable(DateTime64(6, 'UTC'))})
      AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR start < {end:Nullable(DateTime64(6, 'UTC'))})
      AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
    GROUP BY day, symbol
    UNION ALL
    SELECT toDate(start) AS day, symbol, 0, count(), sum(missing), sum(recovered),
           countIf(state = 'unrecoverable'), countIf(state IN ('open', 'backfilling')), 0, 0,
           CAST(NULL AS Nullable(Int64))
    FROM (
        SELECT gap_id,
               argMax(symbol, (updated_time, _kafka_ts, _offset)) AS symbol,
               argMax(start, (updated_time, _kafka_ts, _offset)) AS start,
               argMax(state, (updated_time, _kafka_ts, _offset)) AS state,
               argMax(missing_bars, (updated_time, _kafka_ts, _offset)) AS missing,
               argMax(recovered_bars, (updated_time, _kafka_ts, _offset)) AS recovered
        FROM md_gaps_v1 FINAL GROUP BY gap_id
    )
    WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR start >= {start:Nullable(DateTime64(6, 'UTC'))})
      AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR start < {end:Nullable(DateTime64(6, 'UTC'))})
      AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
    GROUP BY day, symbol
    UNION ALL
    SELECT toDate(event_time) AS day, symbol, 0, 0, 0, 0, 0, 0, sum(lag_ms), count(),
           CAST(max(lag_ms) AS Nullable(Int64))
    FROM feed_lag
    WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR event_time >= {start:Nullable(DateTime64(6, 'UTC'))})
      AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR event_time < {end:Nullable(DateTime64(6, 'UTC'))})
      AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
    GROUP BY day, symbol
)
GROUP BY day, symbol
ORDER BY day, symbol
