"""The sink's lag histograms count every record, even when clocks disagree."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from ibstream.warehouse.metrics import OtelMetrics


def test_a_negative_lag_counts_as_zero_instead_of_being_dropped() -> None:
    reader = InMemoryMetricReader()
    metrics = OtelMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    # A simulated session's records carry the simulator's event_time and the local ingest_time: hours apart.
    metrics.feed_lag("md.quotes.v1", -32_400.0)
    metrics.feed_lag("md.quotes.v1", 0.25)
    metrics.sink_lag("md.quotes.v1", -0.01)
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, HistogramDataPoint] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    points[metric.name] = point
    assert points["ibstream_feed_lag_seconds"].count == 2
    assert points["ibstream_feed_lag_seconds"].min == 0.0 and points["ibstream_feed_lag_seconds"].sum == 0.25
    assert points["ibstream_sink_lag_seconds"].count == 1
