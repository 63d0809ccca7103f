-- Dead letters: every record a component could not decode or process, from every DLQ topic.
-- Parameters: day (nullable: all days; the UTC day of failed_time).
SELECT
    failed_time,
    _topic AS dlq_topic,
    original_topic,
    partition,
    offset,
    error_kind,
    component,
    consumer_group,
    exception_class,
    error_message,
    length(coalesce(value, '')) AS value_bytes
FROM dead_letters FINAL
WHERE {day:Nullable(Date)} IS NULL OR toDate(failed_time) = {day:Nullable(Date)}
ORDER BY failed_time, dlq_topic, _offset
