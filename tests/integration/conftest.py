from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ibstream.contracts import Quote
from ibstream.contracts.enums import MarketDataSource

from .kafka_helpers import close_leftover_consumers


@pytest.fixture(autouse=True)
def _close_test_readers() -> Iterator[None]:
    """Close the Kafka readers a test left open, in the test's own thread (see ``kafka_helpers.tracked``)."""
    yield
    close_leftover_consumers()


@pytest.fixture
def quote_sample() -> Quote:
    now = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    return Quote(
        symbol="AAPL",
        con_id=265598,
        bid=189.1,
        ask=189.12,
        last=189.11,
        bid_size=300.0,
        ask_size=200.0,
        last_size=100.0,
        event_time=now,
        ingest_time=now,
        source=MarketDataSource.LIVE,
    )
