"""The standard OTEL_* variables alone send traces, metrics and logs over OTLP/HTTP to a collector on a real socket
(a recording HTTP server standing in for the OpenTelemetry Collector): what the Operator's auto-configuration needs."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ibstream import telemetry
from ibstream.telemetry_export import export_plan

pytestmark = pytest.mark.integration


class _Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.received: list[tuple[str, str, bytes]] = []


class _Receive(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_otel_variables_alone_export_traces_metrics_and_logs_to_the_collector(
    collector: _Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_address[1]}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ibstream-drill")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.namespace.name=trading")
    for name in ("IBSTREAM_OTLP_ENDPOINT", "IBSTREAM_SPANS_FILE", "OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    plan = export_plan("api", os.environ)
    assert plan.traces == {"otlp"} and plan.logs == {"otlp"} and "otlp" in plan.metrics
    tracer_provider = telemetry.build_tracer_provider(plan)
    # Without the Prometheus reader: it would register a second collector in this test process's global registry.
    meter_provider = telemetry.build_meter_provider(dataclasses.replace(plan, metrics=frozenset({"otlp"})))
    logger_provider = telemetry.build_logger_provider(plan)
    assert logger_provider is not None
    logger = logging.getLogger("test.telemetry.export")
    logger.propagate = False
    logger.handlers[:] = [telemetry.LoggingHandler(logger_provider=logger_provider)]
    with tracer_provider.get_tracer("drill").start_as_current_span("drill.span"):
        logger.warning("drill log line")
    meter_provider.get_meter("drill").create_counter("ibstream_drill_events").add(1)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    by_path = {path: (content_type, body) for path, content_type, body in collector.received}
    assert set(by_path) == {"/v1/traces", "/v1/metrics", "/v1/logs"}, collector.received
    for content_type, body in by_path.values():
        assert content_type == "application/x-protobuf" and b"ibstream-drill" in body and b"trading" in body
    assert b"drill.span" in by_path["/v1/traces"][1]
    assert b"ibstream_drill_events" in by_path["/v1/metrics"][1]
    assert b"drill log line" in by_path["/v1/logs"][1]
