"""Request metrics: ``ibstream_api_requests_total`` by route template, method and status; and OpenTelemetry's FastAPI
instrumentation (a server span per request, the ``http.server.duration`` histogram) for the API and Agent0."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ibstream.telemetry import meter

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

#: Probes and scrapes get neither a server span nor a latency sample: Kubernetes and Prometheus call them every few
#: seconds, and their spans would bury the requests an operator looks for. Regexes searched in the full URL.
UNTRACED_PATHS = ("/health", "/ready", "/metrics")

#: The methods counted under their own name; any other is refused (KnownMethodsMiddleware) and counted as "other",
#: so a client inventing methods cannot create metric series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_requests = meter("api.http").create_counter(
    "ibstream_api_requests_total", description="HTTP requests by route template, method and status"
)


class RequestMetricsMiddleware:
    """Counts requests by route template, method and status.

    Plain ASGI on purpose: Starlette's ``BaseHTTPMiddleware`` runs the app in a task group, which wraps errors
    raised while reading the body (the 413 of the body limit) in an ExceptionGroup that FastAPI turns into a 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = ["500"]

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router stores the matched route in the (shared) scope; its template keeps label cardinality low.
            template = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            _requests.add(1, {"route": template, "method": method, "status": status[0]})


def instrument(
    app: FastAPI, *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Add OpenTelemetry's FastAPI instrumentation: a server span per request (continuing a caller's W3C trace
    context, so log lines inside carry its ids) and the ``http.server.duration`` histogram (milliseconds, by method,
    route and status), exposed on ``/metrics`` as ``http_server_duration_milliseconds``. The providers default to the
    process-wide ones ``ibstream.telemetry.configure`` installs (tests pass in-memory ones)."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        excluded_urls=",".join(f"^[a-z]+://[^/]+{path}(\\?.*)?$" for path in UNTRACED_PATHS),
        # One span per request: the ASGI "http receive"/"http send" children (two or three per request) say nothing
        # an operator needs and would double the spans a busy API exports.
        exclude_spans=["receive", "send"],
    )
