"""Telemetry: JSON log lines carrying correlation ids, OpenTelemetry metrics exposed for Prometheus, and traces
that follow one bar → signal → run → intent → decision → order → fills across processes.

Every deployable calls ``configure(component)`` once in ``main()``. Code that knows a correlation id wraps its
work in ``log_context(symbol=…, order_id=…)`` and every log line inside carries it, across function boundaries,
without threading ids through every call.

Metrics. Adding one is a single line at module level::

    THINGS = meter(__name__).create_counter("ibstream_<things>", description="Things done, by outcome")
    ...
    THINGS.add(1, {"outcome": "ok"})

The instrument binds to the provider ``configure`` installs later (the OpenTelemetry API hands out proxies until
then), every deployable serves it on ``/metrics``, and the Prometheus name follows from the declaration: counters
get ``_total``, ``unit="s"`` adds ``_seconds`` and the 1 ms–2 min latency buckets, histograms expose
``_bucket``/``_sum``/``_count``. Keep labels low-cardinality (outcome, kind, symbol of the small universe; never
ids). ``tests/metric_names.py`` reads these declarations, so the dashboard, the alert rules and the README's
metric table are checked against them: a new metric needs its README row (the test says which is missing).
Errors a deployable logs or dead-letters are counted with ``record_error(kind)`` (``ibstream_errors_total``).

Traces cross Kafka in W3C trace-context headers: ``RecordProducer.send`` injects the current span's context (and
``kafka_trace_headers()`` gives the same headers for Faust's producer), and a consumer continues it with
``consume_span(name, message.headers())``; both follow the messaging semantic conventions (``kafka_attributes``).
Every log line inside a span carries its ``trace_id`` and ``span_id``.

Export: the standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, …) turn OTLP/HTTP export of traces, metrics and logs on, as
``ibstream.telemetry_export`` describes (with the precedence of ``IBSTREAM_OTLP_ENDPOINT``); spans also go to a
JSON-lines file when ``IBSTREAM_SPANS_FILE`` is set (tests, demo).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.metrics import Meter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ibstream.telemetry_export import ExportPlan, export_plan

#: Bucket boundaries of every latency histogram recorded in seconds (1 ms … 2 min).
LATENCY_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

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


def trace_ids() -> dict[str, str]:
    """The current span's ``trace_id`` and ``span_id`` as OpenTelemetry renders them (32 and 16 hex digits), so a log
    line leads to its trace in the tracing backend; empty outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": trace.format_trace_id(context.trace_id), "span_id": trace.format_span_id(context.span_id)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, component, event, logger, correlation ids, the current span's
    ``trace_id``/``span_id``, then `extra` fields.

    The ids are read while formatting, which the logging call does synchronously in its own thread and context, so
    they are those of the span the line was logged in."""

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
        line.update(trace_ids())
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
    # ibapi logs every request and answer at INFO (thousands of lines a second under market data): keep its
    # warnings only, unless debugging was asked for.
    if level.upper() != "DEBUG":
        for noisy in ("ibapi", "ibapi.client", "ibapi.wrapper", "ibapi.decoder", "ibapi.reader", "ibapi.comm"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def resource(plan: ExportPlan) -> Resource:
    """The process's resource: the plan's service name over OTEL_RESOURCE_ATTRIBUTES (which Resource.create reads)."""
    return Resource.create({"service.name": plan.service_name})


def build_meter_provider(plan: ExportPlan) -> MeterProvider:
    """A meter provider with the plan's readers: Prometheus (served on /metrics) and/or periodic OTLP export (the
    exporter reads OTEL_EXPORTER_OTLP_*; OTEL_METRIC_EXPORT_INTERVAL sets the period)."""
    readers: list[MetricReader] = []
    if "prometheus" in plan.metrics:
        readers.append(PrometheusMetricReader())
    if "otlp" in plan.metrics:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    # OTel's default buckets (0…10000) suit milliseconds; our latencies are recorded in seconds.
    seconds = View(
        instrument_type=Histogram,
        instrument_unit="s",
        aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_SECONDS),
    )
    return MeterProvider(resource=resource(plan), metric_readers=readers, views=[seconds])


def configure_metrics(component: str) -> MeterProvider:
    """Install the process-wide meter provider with a Prometheus reader (served by each deployable's /metrics), and
    OTLP export when the OTEL_* variables ask for it.

    Idempotent: deployables and tests may call it more than once; the first provider stays.
    """
    global _meter_provider
    if _meter_provider is None:
        _meter_provider = build_meter_provider(export_plan(component, os.environ))
        metrics.set_meter_provider(_meter_provider)
    return _meter_provider


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line (several processes may share the file)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        # Opened once: a span per bar at demo speeds made open/close per span a measurable cost. Each export is one
        # flushed append (O_APPEND), so processes sharing the file never interleave inside a line.
        self._handle: Any = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            parent = span.parent
            if context is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "trace_id": f"{context.trace_id:032x}",
                        "span_id": f"{context.span_id:016x}",
                        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "start": span.start_time,
                        "end": span.end_time,
                        "attributes": dict(span.attributes or {}),
                    },
                    default=str,
                )
            )
        with self._lock:
            if self._handle is None:
                self._handle = open(self._path, "a", buffering=1 << 20)  # noqa: SIM115 - closed in shutdown()
            self._handle.write("".join(line + "\n" for line in lines))
            self._handle.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


_tracer_provider: TracerProvider | None = None


def build_tracer_provider(plan: ExportPlan) -> TracerProvider:
    """A tracer provider with the plan's exporters: OTLP/HTTP (to IBSTREAM_OTLP_ENDPOINT, else where the OTLP
    exporter's OTEL_* variables say), the console, the JSON-lines file."""
    provider = TracerProvider(resource=resource(plan))
    if "otlp" in plan.traces:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=plan.traces_endpoint)))
    if "console" in plan.traces:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    if plan.spans_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(plan.spans_file)))
    return provider


def configure_tracing(component: str, otlp_endpoint: str | None = None, spans_file: str | None = None) -> None:
    """Install the tracer provider; exporters from the arguments, the OTEL_* variables, IBSTREAM_OTLP_ENDPOINT and
    IBSTREAM_SPANS_FILE (``ibstream.telemetry_export`` says which wins)."""
    global _tracer_provider
    if _tracer_provider is not None:
        return
    plan = export_plan(component, os.environ, otlp_endpoint)
    if spans_file:
        plan = dataclasses.replace(plan, spans_file=spans_file)
    provider = build_tracer_provider(plan)
    trace.set_tracer_provider(provider)
    _tracer_provider = provider


_logger_provider: LoggerProvider | None = None


def build_logger_provider(plan: ExportPlan) -> LoggerProvider | None:
    """A logger provider exporting log records over OTLP/HTTP when the plan asks for it (OTEL_LOGS_EXPORTER=otlp,
    or an OTLP endpoint), else None. The records carry the trace and span ids of the span they were logged in."""
    if "otlp" not in plan.logs:
        return None
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    provider = LoggerProvider(resource=resource(plan))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    return provider


def configure_log_export(component: str) -> None:
    """Send every log record over OTLP as well (the JSON lines on stderr stay) when the OTEL_* variables ask."""
    global _logger_provider
    if _logger_provider is not None:
        return
    provider = build_logger_provider(export_plan(component, os.environ))
    if provider is None:
        return
    logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
    _logger_provider = provider


def tracer(name: str) -> Tracer:
    """A tracer for one module (spans are no-ops until ``configure`` ran)."""
    return trace.get_tracer(name)


def trace_headers(headers: dict[str, str | bytes | None] | None = None) -> dict[str, str | bytes | None]:
    """Headers with the current span's W3C trace context added (unchanged when no span is active)."""
    if not trace.get_current_span().get_span_context().is_valid:
        # Nothing to carry (we set no baggage): skipping the propagators saves a tenth of a quote's send.
        return headers if headers is not None else {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return headers if headers is not None else {}
    return {**(headers or {}), **carrier}


def _header_carrier(headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    carrier: dict[str, str] = {}
    for key, value in pairs:
        if key in ("traceparent", "tracestate"):
            carrier[key] = value.decode() if isinstance(value, bytes) else str(value)
    return carrier


def kafka_trace_headers() -> list[tuple[str, bytes]]:
    """The current span's W3C trace context as Kafka headers (name, bytes), for producers other than
    ``RecordProducer`` (Faust's); empty when no span is active."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def span_context_of(headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> SpanContext | None:
    """The remote span context a record's headers carry, or None."""
    context = trace.get_current_span(propagate.extract(_header_carrier(headers))).get_span_context()
    return context if context.is_valid else None


#: OpenTelemetry's messaging semantic conventions: ``messaging.operation`` is the name most backends still key on,
#: ``messaging.operation.type`` the current one; both are set.
_OPERATION_TYPES = {"publish": "send", "process": "process"}


def kafka_attributes(
    operation: Literal["publish", "process"],
    topic: str,
    *,
    key: bytes | str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    group: str | None = None,
) -> dict[str, str | int]:
    """The messaging semantic-convention attributes of a Kafka span: ``operation`` is ``publish`` (producing) or
    ``process`` (handling a consumed record); what is unknown (a record not yet delivered has no offset) is left out.
    A key that is not UTF-8 is shown in hex."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation": operation,
        "messaging.operation.type": _OPERATION_TYPES[operation],
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = _key_text(key)
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.message.offset"] = offset
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    return attributes


def _key_text(key: bytes | str) -> str:
    if isinstance(key, str):
        return key
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key.hex()


def consumed_attributes(message: Any, group: str | None = None) -> dict[str, str | int]:
    """``kafka_attributes`` of a consumed record, from a confluent-kafka ``Message`` (accessor methods) or a Faust
    message (plain attributes); empty for an object without a topic."""

    def field(name: str) -> Any:
        value = getattr(message, name, None)
        return value() if callable(value) else value

    topic = field("topic")
    if topic is None:  # not a Kafka record (a test's stand-in): nothing to describe
        return {}
    return kafka_attributes(
        "process",
        str(topic),
        key=field("key"),
        partition=field("partition"),
        offset=field("offset"),
        group=group,
    )


@contextmanager
def consume_span(
    name: str,
    headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
    span_tracer: Tracer | None = None,
    *,
    parent: SpanContext | None = None,
    messaging: Mapping[str, str | int] | None = None,
    **attributes: str | int | float | bool,
) -> Iterator[Span]:
    """A span for handling one consumed record, continuing the trace its producer started.

    ``messaging`` adds the record's semantic-convention attributes (``consumed_attributes(message, group)``).

    ``parent`` overrides the headers' context (the record is then linked, not parented): orchestration keeps a
    run in the trace of the signal that opened it even when an operator's approval arrives from another trace.
    """
    remote = span_context_of(headers)
    links: list[Link] = []
    if parent is not None and parent.is_valid:
        if remote is not None and remote.trace_id != parent.trace_id:
            links.append(Link(remote))
        remote = parent
    start = trace.set_span_in_context(trace.NonRecordingSpan(remote)) if remote is not None else otel_context.Context()
    token = otel_context.attach(start)
    try:
        with (span_tracer or trace.get_tracer("ibstream")).start_as_current_span(
            name, kind=SpanKind.CONSUMER, attributes={**(messaging or {}), **attributes}, links=links
        ) as span:
            yield span
    finally:
        otel_context.detach(token)


@contextmanager
def produce_span(
    name: str,
    span_tracer: Tracer | None = None,
    *,
    topic: str | None = None,
    key: bytes | str | None = None,
    **attributes: str | int | float | bool,
) -> Iterator[Span]:
    """A span around producing records that start a trace (a published bar); records sent inside carry it.
    ``topic`` (and the record's ``key``) add the messaging semantic-convention attributes of a publish."""
    messaging = kafka_attributes("publish", topic, key=key) if topic is not None else {}
    with (span_tracer or trace.get_tracer("ibstream")).start_as_current_span(
        name, kind=SpanKind.PRODUCER, attributes={**messaging, **attributes}
    ) as span:
        yield span


@contextmanager
def within(
    context: SpanContext | None, name: str, span_tracer: Tracer | None = None, **attributes: str | int | float | bool
) -> Iterator[Span | None]:
    """A child span of a remembered span context (later events of one order), or nothing when it is unknown."""
    if context is None or not context.is_valid:
        yield None
        return
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(context)))
    try:
        with (span_tracer or trace.get_tracer("ibstream")).start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        otel_context.detach(token)


@contextmanager
def as_current(context: SpanContext | None) -> Iterator[None]:
    """Make a remembered span context current without a new span, so records sent inside carry it (records
    queued under a span and sent later in a batch)."""
    if context is None or not context.is_valid:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(context)))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_span_context() -> SpanContext | None:
    """The active span's context (to remember it for later work on the same order), or None."""
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def configure(component: str, log_level: str = "INFO") -> None:
    """Logging, metrics and tracing for one deployable; call once from its ``main()``."""
    configure_logging(component, log_level)
    configure_metrics(component)
    configure_tracing(component)
    configure_log_export(component)  # after configure_logging, which replaces the root logger's handlers


def shutdown() -> None:
    """Flush spans (and exported metrics and logs) before the process exits."""
    if _tracer_provider is not None:
        _tracer_provider.shutdown()
    if _logger_provider is not None:
        _logger_provider.shutdown()
    if _meter_provider is not None:
        _meter_provider.force_flush()  # pushes the last OTLP export, if any (Prometheus has nothing to flush)


def meter(name: str) -> Meter:
    """A meter for instrumenting one module (instruments bind to the provider once ``configure`` ran)."""
    return metrics.get_meter(name)


_ERRORS = meter("ibstream.errors").create_counter(
    "ibstream_errors", description="Errors a deployable logged or dead-lettered, by component and kind"
)


def record_error(kind: str, component: str | None = None) -> None:
    """Count one error of ``kind`` (a small fixed vocabulary: decode, processing, delivery, …) for the component
    (default: the one ``configure`` named), next to the log line or dead letter that describes it."""
    _ERRORS.add(1, {"component": component or _component, "kind": kind})


def prometheus_exposition() -> tuple[bytes, str]:
    """The body and content type for a ``/metrics`` endpoint."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
