"""The API process as deployed (``ibstream run api``, real socket, real broker): a request gets a server span, the
``http.server.duration`` histogram on ``/metrics`` counts it, and the request's log line carries the trace and span
ids of that server span, so an operator can go from the line to the trace."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import Role
from ibstream.config import Settings
from tests.integration.api_support import SECRET, bearer, token
from tests.metric_names import INSTRUMENTATION_METRICS

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _api_process(settings: Settings, directory: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "IBSTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "IBSTREAM_WAREHOUSE_DIR": str(directory / "wh"),
        "IBSTREAM_API_JWT_SECRET": SECRET,
        "IBSTREAM_SPANS_FILE": str(directory / "spans.jsonl"),
        "IBSTREAM_LOG_LEVEL": "INFO",
    }
    with (directory / "api.log").open("ab") as log:
        command = [sys.executable, "-m", "ibstream.cli", "run", "api", "--host", "127.0.0.1", "--port", str(port)]
        return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def _wait_healthy(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the API exited: {log.read_text()[-3000:]}"
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API did not answer /health within 60 s: {log.read_text()[-3000:]}")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text().splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def test_a_request_is_timed_on_metrics_and_its_log_line_carries_its_server_spans_trace(
    settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    process = _api_process(settings, tmp_path, port)
    admin = bearer(token(settings.with_overrides(api_jwt_secret=SECRET), Role.ADMIN, "alice"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_healthy(client, process, tmp_path / "api.log")
            answer = client.post(
                "/v1/control/kill-switch", json={"state": "on", "reason": "telemetry drill"}, headers=admin
            )
            assert answer.status_code == 202, answer.text
            exposition = client.get("/metrics").text
    finally:
        process.terminate()
        process.wait(30)
    route = 'http_target="/v1/control/kill-switch"'
    counts = [
        line
        for line in exposition.splitlines()
        if line.startswith("http_server_duration_milliseconds_count{")
        and route in line
        and 'http_method="POST"' in line
    ]
    assert len(counts) == 1 and counts[0].endswith(" 1.0"), exposition
    assert re.search(r'^http_server_duration_milliseconds_bucket\{.*le="\+Inf".*\} 1\.0$', exposition, re.MULTILINE)
    exposed = {line.split("{", 1)[0].split(" ", 1)[0] for line in exposition.splitlines() if not line.startswith("#")}
    assert exposed >= INSTRUMENTATION_METRICS  # the names the dashboard's checks take as emitted
    timed = [line for line in exposition.splitlines() if line.startswith("http_server_duration_milliseconds")]
    assert not [line for line in timed if "/health" in line or "/metrics" in line]  # probes and scrapes are not timed
    lines = [line for line in _json_lines(tmp_path / "api.log") if line.get("event") == "kill switch"]
    assert len(lines) == 1, (tmp_path / "api.log").read_text()
    logged = lines[0]
    servers = [span for span in _json_lines(tmp_path / "spans.jsonl") if span["name"] == "POST /v1/control/kill-switch"]
    assert len(servers) == 1
    assert (logged["trace_id"], logged["span_id"]) == (servers[0]["trace_id"], servers[0]["span_id"])
    assert servers[0]["attributes"]["http.route"] == "/v1/control/kill-switch"
    assert servers[0]["attributes"]["http.status_code"] == 202
