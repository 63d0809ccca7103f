"""The API's hardening (issue #21 item 5), in-process and over real sockets: who the rate limit counts (token
subject, peer, trusted proxies — uvicorn's own proxy headers off), invented HTTP methods, times and cursors out of
range, JWKS keys of the wrong type and made-up key ids, the maximum token lifetime, and a /ready that checks its
dependencies at most once per period."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from api.app import create_app, server_config
from api.auth import Role, issue_token
from api.limits import TokenBuckets
from ibstream import telemetry
from ibstream.config import Settings
from ibstream.warehouse import Warehouse
from tests.integration.api_support import RecordingCommands, api_settings, bearer, load_scenario, token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    settings = api_settings(tmp_path_factory.mktemp("api") / "wh")
    with Warehouse.open(settings) as opened:
        load_scenario(opened)
        yield opened


def _settings(warehouse: Warehouse, **overrides: Any) -> Settings:
    return api_settings(warehouse.settings.warehouse_path, **overrides)


def _client(settings: Settings, warehouse: Warehouse, burst: int = 1_000_000, **kwargs: Any) -> TestClient:
    buckets = TokenBuckets(per_minute=1, burst=burst)  # no refill worth mentioning within a test
    commands = kwargs.pop("commands", RecordingCommands())
    return TestClient(create_app(settings, warehouse, commands, buckets=buckets), raise_server_exceptions=False)


# --- who the rate limit counts ----------------------------------------------------------------------------------------


def test_rate_limit_counts_each_token_subject_apart(warehouse: Warehouse) -> None:
    settings = _settings(warehouse)
    client = _client(settings, warehouse, burst=2)
    alice, bob = bearer(token(settings, Role.VIEWER, "alice")), bearer(token(settings, Role.VIEWER, "bob"))
    assert [client.get("/v1/runs", headers=alice).status_code for _ in range(3)] == [200, 200, 429]
    # Same address, another caller: its own bucket (keyed by the peer, bob was limited by alice's requests).
    assert [client.get("/v1/runs", headers=bob).status_code for _ in range(2)] == [200, 200]
    # A token that does not verify buys nothing: it counts against the address, like no token.
    forged = bearer(jwt.encode({"sub": "mallory"}, "not-the-secret-" + "z" * 32, algorithm="HS256"))
    assert [client.get("/v1/runs", headers=forged).status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/v1/runs").status_code == 429


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Served:
    """The API served by uvicorn with the production server config (``server_config``) on a free port."""

    def __init__(self, settings: Settings, warehouse: Warehouse, burst: int) -> None:
        app = create_app(settings, warehouse, RecordingCommands(), buckets=TokenBuckets(per_minute=1, burst=burst))
        self.port = _free_port()
        self.server = uvicorn.Server(server_config(app, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def statuses(self, forwarded_for: list[str]) -> list[int]:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}") as client:
            return [client.get("/v1/runs", headers={"X-Forwarded-For": hop}).status_code for hop in forwarded_for]


def test_a_local_client_cannot_pick_its_rate_limit_bucket_with_x_forwarded_for(warehouse: Warehouse) -> None:
    # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the API's server config must not.
    with _Served(_settings(warehouse), warehouse, burst=2) as served:
        assert served.statuses(["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [401, 401, 429]


def test_x_forwarded_for_names_the_client_behind_a_trusted_proxy(warehouse: Warehouse) -> None:
    settings = _settings(warehouse, api_trusted_proxies="127.0.0.0/8")
    with _Served(settings, warehouse, burst=2) as served:
        # Each client behind the proxy has its own bucket; a forged hop left of the real client changes nothing.
        assert served.statuses(["203.0.113.1", "203.0.113.2", "203.0.113.1", "198.51.100.9, 203.0.113.1"]) == [
            401,
            401,
            401,
            429,
        ]


# --- methods --------------------------------------------------------------------------------------------------------


def test_invented_methods_get_405_and_one_metric_label(warehouse: Warehouse) -> None:
    telemetry.configure_metrics("api")
    client = _client(_settings(warehouse), warehouse)
    for method, path in (("FOO", "/v1/runs"), ("BREW", "/nowhere"), ("X-INJECT", "/health")):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.json()["code"] == "method_not_allowed" and "GET" in response.headers["allow"]
    exposition = client.get("/metrics").text
    samples = [line for line in exposition.splitlines() if line.startswith("ibstream_api_requests_total{")]
    assert not any(name in line for line in samples for name in ("FOO", "BREW", "X-INJECT"))
    assert any('method="other"' in line and 'status="405"' in line for line in samples)


# --- times and cursors ---------------------------------------------------------------------------------------------


CHART_SYMBOL = {"/v1/bars": {"symbol": "AAPL"}, "/v1/chart": {"symbol": "AAPL"}}


@pytest.mark.parametrize(
    ("path", "parameter", "value"),
    [
        ("/v1/signals", "since", "0001-01-01T00:00:00+05:00"),
        ("/v1/signals", "until", "9999-12-31T23:59:59-05:00"),
        ("/v1/runs", "since", "1969-12-31T23:59:59Z"),
        ("/v1/orders", "until", "2200-01-01T00:00:00"),
        ("/v1/bars", "since", "0001-01-01T00:00:00+01:00"),
        ("/v1/chart", "until", "2250-06-01T00:00:00Z"),
    ],
)
def test_times_outside_1970_to_2200_are_refused_with_a_reason(
    warehouse: Warehouse, path: str, parameter: str, value: str
) -> None:
    settings = _settings(warehouse)
    response = _client(settings, warehouse).get(
        path, params={parameter: value, **CHART_SYMBOL.get(path, {})}, headers=bearer(token(settings, Role.VIEWER))
    )
    assert response.status_code == 422, response.text
    [detail] = response.json()["details"]
    assert detail["loc"] == ["query", parameter] and "1970" in detail["msg"] and "2200" in detail["msg"]


def _cursor_at(cursor: str, time_text: str) -> str:
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    payload["t"] = time_text  # same filters digest, time moved
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("time_text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1900-01-01T00:00Z"])
def test_cursors_out_of_range_are_a_400_with_a_reason(warehouse: Warehouse, time_text: str) -> None:
    settings = _settings(warehouse)
    client, headers = _client(settings, warehouse), bearer(token(settings, Role.VIEWER))
    cursor = client.get("/v1/signals", params={"limit": 1}, headers=headers).json()["next_cursor"]
    assert cursor
    response = client.get("/v1/signals", params={"limit": 1, "cursor": _cursor_at(cursor, time_text)}, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_cursor" and "1970" in response.json()["message"]


# --- tokens ---------------------------------------------------------------------------------------------------------


def test_tokens_living_longer_than_the_maximum_are_refused(warehouse: Warehouse) -> None:
    settings = _settings(warehouse, api_jwt_max_lifetime_seconds=3600)
    client = _client(settings, warehouse)
    assert client.get("/v1/runs", headers=bearer(token(settings, Role.VIEWER, ttl=timedelta(minutes=59)))).is_success
    too_long = client.get("/v1/runs", headers=bearer(token(settings, Role.VIEWER, ttl=timedelta(hours=2))))
    assert too_long.status_code == 401 and "3600" in too_long.json()["message"]
    # Issued long ago with a long life, so exp − now alone looks fine: exp − iat still gives it away.
    old = issue_token(
        settings, Role.VIEWER, "v", timedelta(hours=3), now=datetime.now(UTC) - timedelta(hours=2, minutes=30)
    )
    assert client.get("/v1/runs", headers=bearer(old)).status_code == 401
    # No iat: exp − now is the lifetime.
    claims = jwt.decode(token(settings, Role.VIEWER), options={"verify_signature": False})
    claims.pop("iat")
    claims["exp"] = int(time.time()) + 2 * 3600
    assert settings.api.jwt_secret is not None
    no_iat = jwt.encode(claims, settings.api.jwt_secret.get_secret_value(), algorithm="HS256")
    assert client.get("/v1/runs", headers=bearer(no_iat)).status_code == 401


class _Jwks:
    """An identity provider's JWKS endpoint on a real socket, counting fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        body = json.dumps({"keys": keys}).encode()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.fetches = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _jwk(public: Any, **fields: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
    data: dict[str, Any] = json.loads(algorithm.to_jwk(public))
    data.update(fields)
    return data


def test_jwks_keys_of_the_wrong_type_and_made_up_key_ids_are_401_without_refetch_storms(warehouse: Warehouse) -> None:
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curve = ec.generate_private_key(ec.SECP256R1())
    jwks = _Jwks(
        [
            _jwk(signer.public_key(), kid="rsa-1", use="sig"),
            _jwk(curve.public_key(), kid="ec-1", use="sig"),
            {"kty": "oct", "kid": "oct-1", "k": base64.urlsafe_b64encode(b"s" * 32).decode().rstrip("=")},
            _jwk(signer.public_key(), kid="rsa-enc", use="enc"),
        ]
    )
    try:
        settings = _settings(
            warehouse,
            api_jwt_algorithm="RS256",
            api_jwt_secret=None,
            api_jwt_jwks_url=jwks.url,
            api_jwt_jwks_refresh_seconds=60,
        )
        client = _client(settings, warehouse)
        now = int(time.time())
        claims = {
            "sub": "ivy",
            "role": "viewer",
            "iss": "ibstream",
            "aud": "ibstream-api",
            "iat": now,
            "exp": now + 300,
        }

        def status(kid: str | None, body: dict[str, Any] = claims) -> int:
            headers = {"kid": kid} if kid is not None else {}
            signed = jwt.encode(body, signer, algorithm="RS256", headers=headers)
            response = client.get("/v1/runs", headers=bearer(signed))
            assert response.status_code in (200, 401), response.text
            return response.status_code

        assert status("rsa-1") == 200
        assert [status(kid) for kid in ("ec-1", "oct-1", "rsa-enc", None)] == [401] * 4
        assert client.get("/v1/runs", headers=bearer("not.a.token")).status_code == 401
        fetched = jwks.fetches
        assert [status(f"made-up-{uuid.uuid4().hex}") for _ in range(20)] == [401] * 20
        assert jwks.fetches - fetched <= 1  # at most one refetch per refresh period, however many unknown kids
    finally:
        jwks.close()


# --- readiness ------------------------------------------------------------------------------------------------------


class CountingCommands(RecordingCommands):
    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def reachable(self) -> bool:
        self.checks += 1
        return True


def test_ready_checks_its_dependencies_at_most_once_per_period(warehouse: Warehouse) -> None:
    commands = CountingCommands()
    client = _client(_settings(warehouse, api_ready_cache_seconds=0.5), warehouse, commands=commands)
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(client.get("/ready").status_code)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 20
    assert commands.checks == 1
    time.sleep(0.6)
    assert client.get("/ready").json()["checks"] == {"warehouse": True, "kafka": True, "sink": True}
    assert commands.checks == 2
