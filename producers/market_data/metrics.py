"""The market data producer's metrics: counters it adds to and histograms it records, gauges observed on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ibstream.telemetry import meter

#: An observable gauge's callback: (options) → observations.
Observe = Callable[[Any], Iterable[Any]]


class ProducerMetrics:
    """The instruments of ``producers.market_data``; the gauges read the producer through ``observe_*``."""

    def __init__(self, observe_staleness: Observe, observe_connected: Observe) -> None:
        m = meter("producers.market_data")
        self.m_quotes = m.create_counter("ibstream_quotes_published", description="Quotes sent to Kafka")
        self.m_bars = m.create_counter("ibstream_bars_published", description="5-second bars sent to Kafka")
        self.m_gaps = m.create_counter("ibstream_gaps", description="Gaps by final state")
        self.m_reconnects = m.create_counter("ibstream_ib_reconnects", description="IB reconnects")
        self.m_ingest_lag = m.create_histogram(
            "ibstream_feed_ingest_lag_seconds",
            unit="s",
            description="IB's clock when a live bar was published - the bar's event_time (IB's seconds: local clock "
            "skew excluded)",
        )
        m.create_observable_gauge(
            "ibstream_feed_staleness_seconds",
            [observe_staleness],
            unit="s",
            description="Seconds since the last tick per symbol",
        )
        m.create_observable_gauge(
            "ibstream_ib_connected", [observe_connected], description="1 when the IB session is connected"
        )
