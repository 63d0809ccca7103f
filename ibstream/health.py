"""HTTP health for every deployable: /health (process up), /ready (the deployable's own readiness probe),
/metrics (Prometheus). Standard library only: it must answer even when everything else is stuck."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ibstream.telemetry import prometheus_exposition

ReadyProbe = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """A tiny threaded HTTP server for probes; ``ready`` is called on every /ready request."""

    def __init__(self, host: str, port: int, ready: ReadyProbe) -> None:
        probe = ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    self._json(200, {"status": "up"})
                elif self.path == "/ready":
                    ok, details = probe()
                    self._json(200 if ok else 503, {"ready": ok, **details})
                elif self.path == "/metrics":
                    body, content_type = prometheus_exposition()
                    self._send(200, body, content_type)
                else:
                    self._json(404, {"error": "not_found", "message": f"no route {self.path}"})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                self._send(status, json.dumps(payload, default=str).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the JSON log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
