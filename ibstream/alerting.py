"""Operational alerts as records and as metrics, from one place.

A deployable fires an alert once per (kind, subject) and resolves it once; both become `ops.alerts.v1` records
(the audit trail) and the gauge `ibstream_alerts_firing{kind, component}` (what Prometheus alert rules watch), so
the two can never disagree.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from ibstream.contracts import Alert, utc_now
from ibstream.contracts.enums import AlertState, Severity
from ibstream.telemetry import log_context, meter

log = logging.getLogger(__name__)

_books: list[AlertBook] = []
_books_lock = threading.Lock()


def _observe(_options: CallbackOptions) -> list[Observation]:
    with _books_lock:
        books = list(_books)
    observations = []
    for book in books:
        counts = book.counts()
        for kind in sorted(book.kinds_seen):
            observations.append(Observation(counts.get(kind, 0), {"kind": kind, "component": book.component}))
    return observations


_gauge_registered = False


def _register_gauge() -> None:
    global _gauge_registered
    if not _gauge_registered:
        meter("ibstream.alerting").create_observable_gauge(
            "ibstream_alerts_firing", [_observe], description="Alerts currently firing, by kind and component"
        )
        _gauge_registered = True


class AlertBook:
    """The alerts one deployable has firing. Not thread-safe for writers: call from the deployable's loop."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._firing: dict[str, str] = {}  # alert_id → kind
        self.kinds_seen: set[str] = set()
        self._raised = meter("ibstream.alerting").create_counter(
            "ibstream_alerts_raised", description="Alerts fired, by kind and component"
        )
        with _books_lock:
            _books.append(self)
            _register_gauge()

    @staticmethod
    def alert_id(kind: str, subject: str) -> str:
        return f"{kind}:{subject}"

    def is_firing(self, kind: str, subject: str) -> bool:
        return self.alert_id(kind, subject) in self._firing

    @property
    def firing(self) -> set[str]:
        return set(self._firing)

    def counts(self) -> Counter[str]:
        return Counter(self._firing.values())

    def fire(
        self,
        kind: str,
        subject: str,
        severity: Severity,
        message: str,
        *,
        symbol: str | None = None,
        order_id: str | None = None,
        details: dict[str, str] | None = None,
    ) -> Alert | None:
        """The firing record, or None if this alert is already firing (it is raised once until resolved)."""
        identity = self.alert_id(kind, subject)
        self.kinds_seen.add(kind)
        if identity in self._firing:
            return None
        self._firing[identity] = kind
        self._raised.add(1, {"kind": kind, "component": self.component})
        with log_context(symbol=symbol, order_id=order_id):
            log.warning("alert firing", extra={"alert_id": identity, "alert": message})
        return Alert(
            alert_id=identity,
            kind=kind,
            severity=severity,
            state=AlertState.FIRING,
            component=self.component,
            symbol=symbol,
            order_id=order_id,
            message=message,
            details=details or {},
            time=utc_now(),
        )

    def resolve(
        self, kind: str, subject: str, message: str, *, symbol: str | None = None, order_id: str | None = None
    ) -> Alert | None:
        """The resolved record, or None if the alert was not firing."""
        identity = self.alert_id(kind, subject)
        if self._firing.pop(identity, None) is None:
            return None
        log.info("alert resolved", extra={"alert_id": identity})
        return Alert(
            alert_id=identity,
            kind=kind,
            severity=Severity.INFO,
            state=AlertState.RESOLVED,
            component=self.component,
            symbol=symbol,
            order_id=order_id,
            message=message,
            details={},
            time=utc_now(),
        )

    def snapshot(self) -> dict[str, Any]:
        return {"firing": sorted(self._firing)}
