"""Telemetry: JSON log lines carrying correlation ids, and OpenTelemetry metrics exposed for Prometheus.

Every deployable calls ``configure(component)`` once in ``main()``. Code that knows a correlation id wraps its
work in ``log_context(symbol=…, order_id=…)`` and every log line inside carries it, across function boundaries,
without threading ids through every call.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

#: The ids a log line may carry, by the names the guide fixes.
CORRELATION_IDS = ("symbol", "signal_id", "run_id", "order_id")

_context: ContextVar[Mapping[str, str] | None] = ContextVar("ibstream_log_context", default=None)
_component = "ibstream"
_meter_provider: MeterProvider | None = None

# Attributes every LogRecord has; anything else on a record came from `extra=` and belongs in the JSON line.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Add correlation ids to every log line emitted inside the block (nested blocks add to outer ones)."""
    merged = {**(_context.get() or {}), **{key: str(value) for key, value in ids.items() if value is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, component, event, logger, correlation ids, then `extra` fields."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "event": record.getMessage(),
            "logger": record.name,
        }
        line.update(_context.get() or {})
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(component: str, level: str = "INFO") -> None:
    """Route all logging to stderr as JSON lines tagged with the component."""
    global _component
    _component = component
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_metrics(component: str) -> MeterProvider:
    """Install the process-wide meter provider with a Prometheus reader (served by each deployable's /metrics).

    Idempotent: deployables and tests may call it more than once; the first provider stays.
    """
    global _meter_provider
    if _meter_provider is None:
        reader = PrometheusMetricReader()
        _meter_provider = MeterProvider(
            resource=Resource.create({"service.name": f"ibstream-{component}"}), metric_readers=[reader]
        )
        metrics.set_meter_provider(_meter_provider)
    return _meter_provider


def configure(component: str, log_level: str = "INFO") -> None:
    """Logging and metrics for one deployable; call once from its ``main()``."""
    configure_logging(component, log_level)
    configure_metrics(component)


def meter(name: str) -> Meter:
    """A meter for instrumenting one module (instruments are no-ops until ``configure`` ran)."""
    return metrics.get_meter(name)


def prometheus_exposition() -> tuple[bytes, str]:
    """The body and content type for a ``/metrics`` endpoint."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
