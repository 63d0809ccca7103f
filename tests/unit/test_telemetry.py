"""JSON logs carry correlation ids; metrics reach the Prometheus exposition."""

from __future__ import annotations

import io
import json
import logging
import re

from ibstream import telemetry


def _capture(component: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(telemetry.JsonFormatter(component))
    logger = logging.getLogger(f"test.telemetry.{component}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_log_lines_are_json_with_correlation_ids_and_extras() -> None:
    logger, stream = _capture("execution")
    with telemetry.log_context(symbol="AAPL", run_id="run-1"), telemetry.log_context(order_id="ord-9"):
        logger.info("order placed", extra={"ib_order_id": 42})
    logger.warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "order placed" and first["level"] == "info" and first["component"] == "execution"
    assert (first["symbol"], first["run_id"], first["order_id"], first["ib_order_id"]) == ("AAPL", "run-1", "ord-9", 42)
    assert "ts" in first and first["ts"].endswith("+00:00")
    assert "symbol" not in second and "order_id" not in second


def test_exceptions_are_kept_in_the_line() -> None:
    logger, stream = _capture("sink")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("insert failed")
    line = json.loads(stream.getvalue())
    assert "ValueError: boom" in line["exception"]


def test_metrics_reach_prometheus_exposition() -> None:
    telemetry.configure_metrics("test")
    counter = telemetry.meter("test").create_counter("ibstream_test_events", description="test counter")
    counter.add(3, {"kind": "unit"})
    body, content_type = telemetry.prometheus_exposition()
    assert "text/plain" in content_type
    assert re.search(rb'^ibstream_test_events_total\{kind="unit"[^}]*\} 3\.0$', body, re.MULTILINE)


def test_trace_context_crosses_kafka_headers(tmp_path: object) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    assert telemetry.trace_headers({"a": b"1"}) == {"a": b"1"}  # no active span: headers unchanged
    with tracer.start_as_current_span("produce signal") as parent:
        headers = telemetry.trace_headers({"a": b"1"})
    assert headers["a"] == b"1" and str(headers["traceparent"]).startswith("00-")
    kafka_headers = [(key, value.encode() if isinstance(value, str) else value) for key, value in headers.items()]
    with telemetry.consume_span("decide", kafka_headers, span_tracer=tracer, order_id="o-1") as child:
        pass
    parent_context = parent.get_span_context()
    assert child.get_span_context().trace_id == parent_context.trace_id
    finished = {span.name: span for span in exporter.get_finished_spans()}
    assert finished["decide"].parent is not None and finished["decide"].parent.span_id == parent_context.span_id
    assert finished["decide"].attributes["order_id"] == "o-1"
