"""The pure parts of the API's hardening: the client address behind proxies, token lifetimes, accepted times."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api import token_cli
from api.auth import TokenVerifier, lifetime_problem
from api.errors import ApiError
from api.jwks import JwksKeys
from api.limits import bearer_token, client_address
from api.times import out_of_range
from ibstream.config import load_settings

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1")]


def _scope(peer: str, *forwarded: str, authorization: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return {"client": (peer, 50000), "headers": headers}


@pytest.mark.parametrize(
    ("scope", "trusted", "expected"),
    [
        (_scope("127.0.0.1", "203.0.113.7"), [], "127.0.0.1"),  # nothing trusted: the header is ignored
        (_scope("198.51.100.1", "203.0.113.7"), PROXIES, "198.51.100.1"),  # peer is no proxy: ignored
        (_scope("10.1.2.3", "203.0.113.7"), PROXIES, "203.0.113.7"),
        (_scope("10.1.2.3", "1.1.1.1, 203.0.113.7, 10.9.9.9"), PROXIES, "203.0.113.7"),  # forged left hop ignored
        (_scope("10.1.2.3", "1.1.1.1", "203.0.113.7"), PROXIES, "203.0.113.7"),  # several headers: one list
        (_scope("10.1.2.3", "10.0.0.5, 127.0.0.1"), PROXIES, "10.0.0.5"),  # all trusted: the leftmost
        (_scope("10.1.2.3", "203.0.113.7, garbage"), PROXIES, "10.1.2.3"),  # garbage: believe nothing past it
        (_scope("10.1.2.3"), PROXIES, "10.1.2.3"),
        ({"headers": []}, PROXIES, "unknown"),
    ],
)
def test_client_address_reads_x_forwarded_for_only_through_trusted_proxies(
    scope: dict[str, Any], trusted: list[Any], expected: str
) -> None:
    assert client_address(scope, trusted) == expected


def test_bearer_token_is_read_case_insensitively_and_only_as_bearer() -> None:
    assert bearer_token(_scope("1.2.3.4", authorization="bearer abc")) == "abc"
    assert bearer_token(_scope("1.2.3.4", authorization="Basic abc")) is None
    assert bearer_token(_scope("1.2.3.4", authorization="Bearer ")) is None
    assert bearer_token(_scope("1.2.3.4")) is None


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("claims", "too_long"),
    [
        ({"iat": T, "exp": T + 3600}, False),
        ({"iat": T, "exp": T + 3600 + 10}, False),  # within the leeway
        ({"iat": T, "exp": T + 3600 + 11}, True),
        ({"iat": T - 7000, "exp": T + 600}, True),  # exp − now is short, the lifetime is not
        ({"exp": T + 3000}, False),
        ({"exp": T + 4000}, True),  # no iat: exp − now decides
        ({"iat": T + 5000, "exp": T + 5600}, True),  # issued "in the future" to dodge exp − iat: exp − now catches it
        ({"iat": "now", "exp": T + 60}, True),
        ({}, True),
    ],
)
def test_lifetime_problem(claims: dict[str, Any], too_long: bool) -> None:
    assert (lifetime_problem(claims, 3600, 10, NOW) is not None) is too_long


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), True),
        (datetime(2199, 12, 31, 23, 59, tzinfo=UTC), True),
        (datetime(2026, 3, 2, 14, 30), True),  # naive = UTC
        (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), False),
        (datetime(2200, 1, 1, tzinfo=UTC), False),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), False),  # would overflow converting to UTC
        (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))), False),
    ],
)
def test_times_between_1970_and_2200_are_accepted(value: datetime, accepted: bool) -> None:
    assert (out_of_range(value) is None) is accepted


def test_the_token_command_refuses_a_lifetime_the_api_would_refuse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(api_jwt_secret="s" * 40, api_jwt_max_lifetime_seconds=3600)
    monkeypatch.setattr(token_cli, "get_settings", lambda: settings)
    with pytest.raises(SystemExit):
        token_cli.main(["--role", "viewer", "--ttl", "2h"])
    assert "IBSTREAM_API_JWT_MAX_LIFETIME_SECONDS" in capsys.readouterr().err
    assert token_cli.main(["--role", "viewer", "--ttl", "1h"]) == 0


class _Provider:
    """What the identity provider's JWKS endpoint answers (``fetch_data`` is PyJWKClient's one I/O call)."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.down = False
        self.fetches = 0

    def fetch_data(self, client: Any) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise jwt.PyJWKClientConnectionError("connection refused")
        return {"keys": self.keys}


def test_jwks_refetches_for_unknown_key_ids_at_most_once_per_period(monkeypatch: pytest.MonkeyPatch) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())) | {"kid": "k1"}
    provider = _Provider([jwk])
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda client: provider.fetch_data(client))
    clock = [0.0]
    keys = JwksKeys("https://idp.example/jwks", refresh_seconds=60, clock=lambda: clock[0])

    def signed(kid: str) -> str:
        return jwt.encode({"sub": "s"}, private, algorithm="RS256", headers={"kid": kid})

    assert keys.key_for(signed("k1")) is not None and provider.fetches == 1
    for n in range(5):
        with pytest.raises(ApiError) as unknown:
            keys.key_for(signed(f"made-up-{n}"))
        assert unknown.value.status == 401
    assert provider.fetches == 1
    provider.keys = [
        *provider.keys,
        json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())) | {"kid": "k2"},
    ]
    clock[0] = 60.0  # the provider rotated in k2; the next unknown kid may refetch
    assert keys.key_for(signed("k2")) is not None and provider.fetches == 2

    provider.down = True
    clock[0] = 120.0
    with pytest.raises(ApiError) as down:
        keys.key_for(signed("k3"))
    assert (down.value.status, down.value.code) == (503, "jwks_unavailable")
    assert keys.key_for(signed("k1")) is not None  # keys fetched before stay usable while the provider is down
    with pytest.raises(ApiError) as still_down:
        keys.key_for(signed("k3"))
    assert still_down.value.status == 503 and provider.fetches == 3  # not asked again within the period


def _b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD_CLAIMS = {"sub": "s", "role": "viewer", "iss": "ibstream", "aud": "ibstream-api", "exp": 4_000_000_000}
MALFORMED = [
    "",
    "abc",
    "a.b.c",
    "....",
    f"{_b64({'alg': 'none'})}.{_b64(GOOD_CLAIMS)}.",
    f"{_b64({'alg': 'HS256'})}.{_b64([1, 2, 3])}.{_b64(b'sig')}",
    f"{_b64(b'not json')}.{_b64(GOOD_CLAIMS)}.{_b64(b'sig')}",
    f"{_b64({'alg': 'RS256', 'kid': {'nested': 1}})}.{_b64(GOOD_CLAIMS)}.{_b64(b'sig')}",
    f"{_b64({'alg': 'HS256', 'crit': ['exp']})}.{_b64(GOOD_CLAIMS)}.{_b64(b'sig')}",
]


@pytest.mark.parametrize("token", MALFORMED)
@pytest.mark.parametrize("mode", ["HS256", "RS256-PEM"])
def test_every_malformed_token_is_a_401(token: str, mode: str) -> None:
    if mode == "HS256":
        settings = load_settings(api_jwt_secret="s" * 40)
    else:
        public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        settings = load_settings(api_jwt_algorithm="RS256", api_jwt_public_key=pem.decode())
    with pytest.raises(ApiError) as error:
        TokenVerifier(settings).verify(token)
    assert error.value.status == 401


@pytest.mark.parametrize(
    "claims",
    [
        {**GOOD_CLAIMS, "exp": "tomorrow"},
        {**GOOD_CLAIMS, "iat": "yesterday"},
        {**GOOD_CLAIMS, "sub": 42},
        {**GOOD_CLAIMS, "sub": "  "},
        {**GOOD_CLAIMS, "aud": ["someone-else"]},
        {key: value for key, value in GOOD_CLAIMS.items() if key != "exp"},
    ],
)
def test_every_well_signed_but_wrong_token_is_a_401(claims: dict[str, Any]) -> None:
    settings = load_settings(api_jwt_secret="s" * 40)
    signed = jwt.encode(claims, "s" * 40, algorithm="HS256")
    with pytest.raises(ApiError) as error:
        TokenVerifier(settings).verify(signed)
    assert error.value.status == 401
