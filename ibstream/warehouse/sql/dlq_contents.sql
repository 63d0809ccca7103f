-- Dead letters: every record a component could not decode or process, from every DLQ topic.
-- Parameters: start, end (nullable: open; the window [start, end) of failed_time).
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
WHERE ({start:Nullable(DateTime64(6, 'UTC'))} IS NULL OR failed_time >= {start:Nullable(DateTime64(6, 'UTC'))})
  AND ({end:Nullable(DateTime64(6, 'UTC'))} IS NULL OR failed_time < {end:Nullable(DateTime64(6, 'UTC'))})
ORDER BY failed_time, dlq_topic, _offset
