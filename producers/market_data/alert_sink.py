"""The producer's alerts: fired and resolved once per (kind, subject) in an ``AlertBook``, each change an
``ops.alerts.v1`` record (``ibstream.alerting``)."""

from __future__ import annotations

from ibstream.alerting import AlertBook
from ibstream.contracts import alerts
from ibstream.contracts.enums import Severity
from ibstream.kafka.records import RecordProducer


class AlertSink:
    """An ``AlertBook`` whose changes go to Kafka."""

    def __init__(self, component: str, sink: RecordProducer) -> None:
        self.book = AlertBook(component)
        self.sink = sink

    @property
    def firing(self) -> set[str]:
        return self.book.firing

    def fire(
        self,
        kind: str,
        subject: str,
        severity: Severity,
        message: str,
        *,
        symbol: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        alert = self.book.fire(kind, subject, severity, message, symbol=symbol, details=details)
        if alert is not None:
            self.sink.send(alerts.TOPIC, alert)

    def resolve(self, kind: str, subject: str, message: str, *, symbol: str | None = None) -> None:
        alert = self.book.resolve(kind, subject, message, symbol=symbol)
        if alert is not None:
            self.sink.send(alerts.TOPIC, alert)
