"""Lag and throughput metrics behind a tiny interface, exported through OpenTelemetry when the core telemetry
module is present (``ibstream.telemetry.meter``), otherwise recorded nowhere.

Feed lag = ingest_time − event_time, sink lag = inserted − Kafka timestamp, consumer lag = high watermark − next
offset to commit. The same figures are queryable in ClickHouse (views ``feed_lag``, ``sink_lag``, ``consumer_lag``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class SinkMetrics(Protocol):
    """What the sink reports."""

    def rows_inserted(self, table: str, rows: int) -> None: ...

    def feed_lag(self, topic: str, seconds: float) -> None: ...

    def sink_lag(self, topic: str, seconds: float) -> None: ...

    def consumer_lag(self, topic: str, partition: int, messages: int) -> None: ...


class NullMetrics:
    """Records nothing (telemetry not configured)."""

    def rows_inserted(self, table: str, rows: int) -> None:
        """Ignore."""

    def feed_lag(self, topic: str, seconds: float) -> None:
        """Ignore."""

    def sink_lag(self, topic: str, seconds: float) -> None:
        """Ignore."""

    def consumer_lag(self, topic: str, partition: int, messages: int) -> None:
        """Ignore."""


class OtelMetrics:
    """OpenTelemetry instruments: histograms for the two time lags, a gauge for consumer lag, a row counter."""

    def __init__(self, meter: Any) -> None:
        self._rows = meter.create_counter("ibstream_warehouse_rows_inserted", unit="1", description="Rows inserted")
        self._feed = meter.create_histogram(
            "ibstream_feed_lag_seconds",
            unit="s",
            description="ingest_time - event_time of market records (0 when the local clock is behind IB's)",
        )
        self._sink = meter.create_histogram(
            "ibstream_sink_lag_seconds", unit="s", description="Warehouse insert time - Kafka timestamp"
        )
        self._consumer = meter.create_gauge(
            "ibstream_sink_consumer_lag", unit="1", description="High watermark - committed offset, per partition"
        )

    def rows_inserted(self, table: str, rows: int) -> None:
        """Count rows landed in a table."""
        self._rows.add(rows, {"table": table})

    def feed_lag(self, topic: str, seconds: float) -> None:
        """Record one market record's feed lag.

        Negative when the local clock is behind IB's (or a simulator's): recorded as 0, since a histogram drops
        negative values with a warning per record, and the record would go uncounted.
        """
        self._feed.record(max(0.0, seconds), {"topic": topic})

    def sink_lag(self, topic: str, seconds: float) -> None:
        """Record one record's sink lag (clamped at 0 like the feed lag: the broker's clock may be ahead)."""
        self._sink.record(max(0.0, seconds), {"topic": topic})

    def consumer_lag(self, topic: str, partition: int, messages: int) -> None:
        """Set a partition's consumer lag."""
        self._consumer.set(messages, {"topic": topic, "partition": str(partition)})


def default_metrics() -> SinkMetrics:
    """OpenTelemetry metrics through the core telemetry module if it exists, else NullMetrics."""
    try:
        from ibstream import telemetry
    except ImportError:  # pragma: no cover - the telemetry module is another issue's deliverable
        log.info("ibstream.telemetry not available: warehouse metrics are not exported")
        return NullMetrics()
    meter_factory = getattr(telemetry, "meter", None)
    if meter_factory is None:
        return NullMetrics()
    return OtelMetrics(meter_factory("ibstream.warehouse"))
