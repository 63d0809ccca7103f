-- Risk rejections by failed check and UTC day of the decision.
-- Parameters: day (nullable: all days).
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
  AND ({day:Nullable(Date)} IS NULL OR toDate(decided_time) = {day:Nullable(Date)})
GROUP BY day, check_name
ORDER BY day, rejections DESC, check_name
