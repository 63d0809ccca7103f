-- Risk rejections by failed check and UTC day of the decision.
-- Parameters (each nullable: no filter): start, end (the window [start, end) of decided_time), symbol.
--   rejections  rejected decisions (approved = false) in which this check failed (a decision failing two checks
--               counts once under each); decisions are deduplicated by decision_id
--   symbols     the symbols concerned, sorted
SELECT
    toDate(decided_time) AS day,
    chk.name AS check_name,
    uniqExact(decision_id) AS rejections,
    arraySort(groupUniqArray(symbol)) AS symbols
FROM (SELECT * FROM risk_decisions_v1 FINAL ORDER BY decision_id, _kafka_ts LIMIT 1 BY decision_id)
ARRAY JOIN checks AS chk
WHERE NOT approved AND NOT chk.passed
  AND ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR decided_time >= {start:Nullable(DateTime64(6, 'UTC'))})
    AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR decided_time < {end:Nullable(DateTime64(6, 'UTC'))})
  AND ({symbol:Nullable(String)} IS NULL OR symbol = {symbol:Nullable(String)})
GROUP BY day, check_name
ORDER BY day, rejections DESC, check_name
