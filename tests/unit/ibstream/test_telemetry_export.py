"""The standard OTEL_* variables alone configure export (as the OpenTelemetry Operator sets them); the IBSTREAM_ ones
keep working and win where they overlap; a variable not understood stops startup naming it."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ibstream import telemetry
from ibstream.exceptions import ConfigError
from ibstream.telemetry_export import export_plan, service_name

OPERATOR = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.observability:4318",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_SERVICE_NAME": "ibstream-risk",
    "OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=trading,k8s.pod.name=streams-0",
}


def test_nothing_is_exported_without_an_endpoint_or_an_exporter_named() -> None:
    plan = export_plan("api", {})
    assert plan.traces == frozenset() and plan.logs == frozenset() and plan.metrics == {"prometheus"}
    assert plan.service_name == "ibstream-api" and plan.traces_endpoint is None and plan.spans_file is None


def test_the_operators_endpoint_alone_turns_otlp_export_of_every_signal_on() -> None:
    plan = export_plan("streams", OPERATOR)
    assert plan.traces == {"otlp"} and plan.logs == {"otlp"} and plan.metrics == {"otlp", "prometheus"}
    assert plan.service_name == "ibstream-risk"
    assert plan.traces_endpoint is None  # the OTLP exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself


def test_a_signal_specific_endpoint_turns_on_only_that_signal() -> None:
    plan = export_plan("api", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces"})
    assert plan.traces == {"otlp"} and plan.logs == frozenset() and plan.metrics == {"prometheus"}


def test_exporter_variables_choose_per_signal_and_none_turns_one_off() -> None:
    environ = {
        **OPERATOR,
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_LOGS_EXPORTER": "none",
    }
    plan = export_plan("api", environ)
    assert plan.traces == {"otlp", "console"} and plan.metrics == {"prometheus"} and plan.logs == frozenset()


def test_service_name_precedence_is_the_variable_then_the_resource_attribute_then_the_component() -> None:
    attributes = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=paper, service.name=desk-api"}
    assert service_name("api", {**attributes, "OTEL_SERVICE_NAME": "ops-api"}) == "ops-api"
    assert service_name("api", attributes) == "desk-api"
    assert service_name("api", {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=paper"}) == "ibstream-api"


def test_the_ibstream_endpoint_wins_for_traces_even_over_none_and_the_spans_file_stays() -> None:
    environ = {
        "IBSTREAM_OTLP_ENDPOINT": "http://jaeger:4318/",
        "OTEL_TRACES_EXPORTER": "none",
        "IBSTREAM_SPANS_FILE": "/tmp/spans.jsonl",
    }
    plan = export_plan("producer", environ)
    assert plan.traces == {"otlp"} and plan.traces_endpoint == "http://jaeger:4318/v1/traces"
    assert plan.spans_file == "/tmp/spans.jsonl" and plan.logs == frozenset()
    assert export_plan("producer", {}, otlp_endpoint="http://argument:4318").traces_endpoint == (
        "http://argument:4318/v1/traces"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_METRICS_EXPORTER", "otlp,none"),
        ("OTEL_LOGS_EXPORTER", "console"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ],
)
def test_a_variable_not_understood_is_a_configuration_error_naming_it(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        export_plan("api", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", variable: value})
    assert raised.value.setting == variable and value in raised.value.reason


def test_the_plan_builds_otlp_exporters_that_read_the_standard_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OPERATOR.items():
        monkeypatch.setenv(name, value)
    plan = export_plan("streams", OPERATOR)
    provider = telemetry.build_tracer_provider(plan)
    processors = provider._active_span_processor._span_processors  # what the SDK was given
    exporters = [processor.span_exporter for processor in processors if isinstance(processor, BatchSpanProcessor)]
    assert len(exporters) == 1 and isinstance(exporters[0], OTLPSpanExporter)
    assert exporters[0]._endpoint == "http://collector.observability:4318/v1/traces"
    assert provider.resource.attributes["service.name"] == "ibstream-risk"
    assert provider.resource.attributes["k8s.pod.name"] == "streams-0"
    logs = telemetry.build_logger_provider(plan)
    assert logs is not None
    logs.shutdown()
    provider.shutdown()
    assert telemetry.build_logger_provider(export_plan("streams", {})) is None
