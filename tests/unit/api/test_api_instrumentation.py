"""OpenTelemetry's FastAPI instrumentation as ``api.metrics.instrument`` installs it: a server span per request and the
``http.server.duration`` histogram, recorded into in-memory providers; probes and scrapes recorded by neither."""

from __future__ import annotations

import io
import json
import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.metrics import instrument
from ibstream import telemetry


def _app() -> tuple[FastAPI, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter("api"))
    logger = logging.getLogger("test.api.instrumentation")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def order(order_id: str) -> dict[str, str]:
        logger.info("order read", extra={"order_id": order_id})
        return {"order_id": order_id}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app, stream


def _durations(reader: InMemoryMetricReader) -> list[tuple[dict[str, object], HistogramDataPoint]]:
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "http.server.duration":
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        found.append((dict(point.attributes or {}), point))
    return found


def test_a_request_gets_a_server_span_its_log_lines_point_to_and_a_latency_sample_by_route() -> None:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app, logs = _app()
    instrument(app, tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    with TestClient(app) as client:
        assert client.get("/orders/ord-7").status_code == 200
    server = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert [span.name for span in server] == ["GET /orders/{order_id}"]
    assert len(spans.get_finished_spans()) == 1  # no "http send"/"http receive" children
    assert server[0].attributes is not None and server[0].attributes["http.route"] == "/orders/{order_id}"
    line = json.loads(logs.getvalue())
    context = server[0].get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}" and line["order_id"] == "ord-7"
    durations = _durations(reader)
    assert len(durations) == 1
    attributes, point = durations[0]
    assert point.count == 1 and point.sum > 0
    assert attributes["http.method"] == "GET" and attributes["http.status_code"] == 200
    assert attributes.get("http.target") == "/orders/{order_id}"  # the template, never the id: bounded series


def test_probes_get_neither_a_span_nor_a_latency_sample() -> None:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app, _ = _app()
    instrument(app, tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health?verbose=1").status_code == 200
    assert spans.get_finished_spans() == ()
    assert _durations(reader) == []
