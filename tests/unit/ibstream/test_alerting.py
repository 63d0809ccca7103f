"""Alerts fire once per (kind, subject), resolve once, and the firing gauge follows them."""

from __future__ import annotations

import re

from ibstream import telemetry
from ibstream.alerting import AlertBook
from ibstream.contracts.enums import AlertState, Severity


def _gauge(kind: str, component: str) -> float | None:
    body, _ = telemetry.prometheus_exposition()
    pattern = rf'^ibstream_alerts_firing\{{(?=[^}}]*component="{component}")(?=[^}}]*kind="{kind}")[^}}]*\}} (\S+)$'
    match = re.search(pattern, body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else None


def test_fire_once_resolve_once_and_gauge() -> None:
    telemetry.configure_metrics("test")
    book = AlertBook("unit-alerting")
    first = book.fire("stale_feed", "AAPL", Severity.WARNING, "AAPL stale", symbol="AAPL", details={"age": "31"})
    assert first is not None and first.state is AlertState.FIRING and first.alert_id == "stale_feed:AAPL"
    assert first.details == {"age": "31"} and first.component == "unit-alerting"
    assert book.fire("stale_feed", "AAPL", Severity.WARNING, "again") is None
    book.fire("stale_feed", "MSFT", Severity.WARNING, "MSFT stale")
    assert _gauge("stale_feed", "unit-alerting") == 2
    resolved = book.resolve("stale_feed", "AAPL", "data resumed")
    assert resolved is not None and resolved.state is AlertState.RESOLVED
    assert book.resolve("stale_feed", "AAPL", "twice") is None
    assert book.firing == {"stale_feed:MSFT"}
    assert _gauge("stale_feed", "unit-alerting") == 1
    book.resolve("stale_feed", "MSFT", "data resumed")
    assert _gauge("stale_feed", "unit-alerting") == 0  # stays exported at 0, so "== 0" rules can see it
