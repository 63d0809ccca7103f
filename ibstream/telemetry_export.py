"""Where telemetry is exported, from the standard ``OTEL_*`` environment variables (and the ``IBSTREAM_`` ones).

The OpenTelemetry Operator (and any OTel-aware platform) configures a process with the standard variables only, so
they alone turn export on: ``export_plan(component, environ)`` reads them into an ``ExportPlan`` (a pure function of
the environment, tested with plain dicts) and ``ibstream.telemetry`` builds the providers from it.

Per signal (traces, metrics, logs) ``OTEL_<SIGNAL>_EXPORTER`` lists exporters: ``otlp``, ``console`` (traces),
``prometheus`` (metrics), ``none``. Unset, a signal goes to OTLP when an OTLP endpoint is configured
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``) and nowhere otherwise: the OTel default
(``otlp`` always) would make every dev process retry a collector that is not there. The OTLP exporters read their
endpoint, headers, timeout and compression from the ``OTEL_EXPORTER_OTLP_*`` variables themselves; only OTLP over
HTTP (``http/protobuf``) is installed, so another ``OTEL_EXPORTER_OTLP_PROTOCOL`` stops startup naming the variable.
Metrics are always served on ``/metrics`` for Prometheus as well (dashboards and alerts scrape it).

Service name: ``OTEL_SERVICE_NAME``, else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else
``ibstream-<component>``; the other resource attributes of ``OTEL_RESOURCE_ATTRIBUTES`` are added as they are.

Precedence with the project's own settings: ``IBSTREAM_OTLP_ENDPOINT`` (an explicit base URL, ``/v1/traces`` is
appended) wins over the ``OTEL_EXPORTER_OTLP_*`` endpoints for traces and turns trace export on even when
``OTEL_TRACES_EXPORTER`` is unset or ``none``; ``IBSTREAM_SPANS_FILE`` adds the JSON-lines file whatever the rest says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ibstream.exceptions import ConfigError

#: The exporters each signal accepts in ``OTEL_<SIGNAL>_EXPORTER`` (``none`` alone means none).
SUPPORTED_EXPORTERS = {
    "traces": frozenset({"otlp", "console", "none"}),
    "metrics": frozenset({"otlp", "prometheus", "none"}),
    "logs": frozenset({"otlp", "none"}),
}
#: The only OTLP transport installed (opentelemetry-exporter-otlp-proto-http).
OTLP_PROTOCOL = "http/protobuf"


@dataclass(frozen=True)
class ExportPlan:
    """What the telemetry of one process is sent to."""

    service_name: str
    traces: frozenset[str]
    #: An explicit base URL for trace export (IBSTREAM_OTLP_ENDPOINT); None lets the exporter read OTEL_*.
    traces_endpoint: str | None
    spans_file: str | None
    metrics: frozenset[str]
    logs: frozenset[str]


def service_name(component: str, environ: Mapping[str, str]) -> str:
    """``OTEL_SERVICE_NAME``, else ``service.name`` of ``OTEL_RESOURCE_ATTRIBUTES``, else ``ibstream-<component>``."""
    explicit = environ.get("OTEL_SERVICE_NAME", "").strip()
    if explicit:
        return explicit
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return value.strip()
    return f"ibstream-{component}"


def _exporters(signal: str, environ: Mapping[str, str]) -> frozenset[str] | None:
    """The exporters ``OTEL_<SIGNAL>_EXPORTER`` names (None when unset); an unknown one is a configuration error."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = environ.get(variable, "").strip()
    if not raw:
        return None
    named = frozenset(item.strip().lower() for item in raw.split(",") if item.strip())
    unknown = named - SUPPORTED_EXPORTERS[signal]
    if unknown:
        raise ConfigError(
            variable,
            f"{raw!r}: {', '.join(sorted(unknown))} not supported here "
            f"(use {', '.join(sorted(SUPPORTED_EXPORTERS[signal]))})",
        )
    if "none" in named and len(named) > 1:
        raise ConfigError(variable, f"{raw!r}: 'none' cannot be combined with an exporter")
    return frozenset() if named == {"none"} else named


def _has_otlp_endpoint(signal: str, environ: Mapping[str, str]) -> bool:
    return any(environ.get(name, "").strip() for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", _signal_variable(signal)))


def _signal_variable(signal: str, suffix: str = "ENDPOINT") -> str:
    return f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix}"


def _check_protocol(signal: str, environ: Mapping[str, str]) -> None:
    for variable in (_signal_variable(signal, "PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(variable, "").strip()
        if protocol:
            if protocol != OTLP_PROTOCOL:
                raise ConfigError(variable, f"{protocol!r}: only {OTLP_PROTOCOL} (OTLP over HTTP) is installed")
            return  # the signal's own variable wins over the general one


def _signal_exporters(signal: str, environ: Mapping[str, str]) -> frozenset[str]:
    named = _exporters(signal, environ)
    if named is None:
        named = frozenset({"otlp"}) if _has_otlp_endpoint(signal, environ) else frozenset()
    if "otlp" in named:
        _check_protocol(signal, environ)
    return named


def export_plan(component: str, environ: Mapping[str, str], otlp_endpoint: str | None = None) -> ExportPlan:
    """The export plan of one process from its environment (``otlp_endpoint`` overrides IBSTREAM_OTLP_ENDPOINT).
    Raises ConfigError naming the variable when one is not understood."""
    traces_endpoint = (otlp_endpoint or environ.get("IBSTREAM_OTLP_ENDPOINT", "")).strip() or None
    traces = _signal_exporters("traces", environ)
    if traces_endpoint is not None:
        traces = traces | {"otlp"}
    metrics = _signal_exporters("metrics", environ) | {"prometheus"}
    return ExportPlan(
        service_name=service_name(component, environ),
        traces=traces,
        traces_endpoint=traces_endpoint.rstrip("/") + "/v1/traces" if traces_endpoint else None,
        spans_file=environ.get("IBSTREAM_SPANS_FILE", "").strip() or None,
        metrics=metrics,
        logs=_signal_exporters("logs", environ),
    )
