"""JSON logs carry correlation ids; metrics reach the Prometheus exposition."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

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


def test_a_remembered_parent_keeps_a_run_in_its_trace_and_links_the_record_that_moved_it() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("open run"):
        opened = telemetry.current_span_context()
    with tracer.start_as_current_span("operator approves"):
        approval_headers = telemetry.kafka_trace_headers()
        approval = telemetry.current_span_context()
    assert opened is not None and approval is not None and opened.trace_id != approval.trace_id
    assert [name for name, _ in approval_headers] == ["traceparent"] and isinstance(approval_headers[0][1], bytes)
    with telemetry.consume_span("approve", approval_headers, span_tracer=tracer, parent=opened) as span:
        with telemetry.within(opened, "later event", span_tracer=tracer) as later:
            assert later is not None
        queued = telemetry.current_span_context()
    with telemetry.as_current(queued):  # a record queued under the span and sent later still carries it
        sent = telemetry.trace_headers()
    assert span.get_span_context().trace_id == opened.trace_id
    finished = {item.name: item for item in exporter.get_finished_spans()}
    assert finished["approve"].parent is not None and finished["approve"].parent.span_id == opened.span_id
    assert [link.context.span_id for link in finished["approve"].links] == [approval.span_id]
    assert finished["later event"].parent is not None and finished["later event"].parent.span_id == opened.span_id
    assert queued is not None and f"{queued.span_id:016x}" in str(sent["traceparent"])
    with telemetry.within(None, "unknown order", span_tracer=tracer) as nothing:
        assert nothing is None  # an order without a remembered span gets no orphan span


def test_errors_are_counted_by_component_and_kind() -> None:
    telemetry.configure_metrics("test")

    def count() -> float:
        body, _ = telemetry.prometheus_exposition()
        found = re.search(rb'^ibstream_errors_total\{component="sink",kind="decode"[^}]*\} (\S+)$', body, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    before = count()
    telemetry.record_error("decode", "sink")
    telemetry.record_error("decode", "sink")
    assert count() - before == 2


def test_a_failed_delivery_is_counted_as_a_delivery_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaError

    from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
    from ibstream.kafka.records import RecordProducer

    telemetry.configure_metrics("test")
    monkeypatch.setattr(telemetry, "_component", "producer")  # what configure() names for a deployable

    def count() -> float:
        body, _ = telemetry.prometheus_exposition()
        found = re.search(
            rb'^ibstream_errors_total\{component="producer",kind="delivery"[^}]*\} (\S+)$', body, re.MULTILINE
        )
        return float(found.group(1)) if found else 0.0

    class Message:
        def topic(self) -> str:
            return "md.quotes.v1"

        def key(self) -> bytes:
            return b"AAPL"

    sink = RecordProducer(None, SingleObjectCodec(SchemaStore()))  # type: ignore[arg-type]
    before = count()
    sink._report(KafkaError(KafkaError._MSG_TIMED_OUT), Message())  # type: ignore[arg-type]
    assert count() - before == 1 and sink.failed == 1


def test_a_log_line_inside_a_span_carries_its_trace_and_span_ids_and_one_outside_carries_none() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    logger, stream = _capture("api")
    tracer = TracerProvider().get_tracer("test")
    with telemetry.log_context(order_id="ord-1"), tracer.start_as_current_span("handle") as span:
        logger.info("inside")
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}" and inside["span_id"] == f"{context.span_id:016x}"
    assert re.fullmatch(r"[0-9a-f]{32}", inside["trace_id"]) and re.fullmatch(r"[0-9a-f]{16}", inside["span_id"])
    assert inside["order_id"] == "ord-1"  # the correlation ids stay
    assert "trace_id" not in outside and "span_id" not in outside


def test_a_produce_span_carries_the_messaging_attributes_of_a_kafka_publish() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with telemetry.produce_span("producer.bar", tracer, topic="dev.md.bars.5s.v1", key="AAPL", symbol="AAPL"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.destination.name": "dev.md.bars.5s.v1",
        "messaging.operation": "publish",
        "messaging.operation.type": "send",
        "messaging.kafka.message.key": "AAPL",
        "symbol": "AAPL",
    }


class _ConfluentLikeMessage:
    """confluent-kafka's Message answers through methods."""

    def topic(self) -> str:
        return "orders.routed.v1"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 1207

    def key(self) -> bytes:
        return b"ord-5"


class _FaustLikeMessage:
    """Faust's Message has plain attributes."""

    topic = "signals.v1"
    partition = 0
    offset = 9
    key = b"\xff\x00"


def test_a_consume_span_carries_the_records_topic_partition_offset_key_and_consumer_group() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    messaging = telemetry.consumed_attributes(_ConfluentLikeMessage(), "ibstream-execution")
    with telemetry.consume_span("execution.place", [], tracer, messaging=messaging, order_id="ord-5"):
        pass
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.destination.name": "orders.routed.v1",
        "messaging.operation": "process",
        "messaging.operation.type": "process",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.message.offset": 1207,
        "messaging.kafka.message.key": "ord-5",
        "messaging.consumer.group.name": "ibstream-execution",
        "order_id": "ord-5",
    }
    faust = telemetry.consumed_attributes(_FaustLikeMessage())
    assert faust["messaging.destination.name"] == "signals.v1" and faust["messaging.kafka.message.offset"] == 9
    assert faust["messaging.kafka.message.key"] == "ff00"  # not UTF-8: shown in hex
    assert "messaging.consumer.group.name" not in faust
    assert telemetry.consumed_attributes(object()) == {}
