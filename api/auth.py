"""JWT bearer authentication and role checks, as plain functions and one verifier class (no HTTP here).

Roles are ordered: ``admin`` ⊇ ``trader`` ⊇ ``viewer``. A token names its role in the ``role`` claim (a string)
or the ``roles`` claim (a list, as many identity providers issue it); the highest known role counts. ``service`` is
below them all: a deployable calling another (streams planning with Agent0) holds it, and it reads nothing of the
API (rank 0 passes no ``authorize``); only routes that name it (``authorize_service_or``) admit it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from api.errors import ApiError
from ibstream.config import Settings
from ibstream.exceptions import ConfigError


class Role(StrEnum):
    """What a caller may do: viewer reads, trader also triggers/approves/rejects, admin also flips the kill switch;
    service is a deployable's own identity (streams → Agent0), outside the people's hierarchy."""

    SERVICE = "service"
    VIEWER = "viewer"
    TRADER = "trader"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the hierarchy; a higher rank includes every lower one."""
        return _RANK[self]


_RANK = {Role.SERVICE: 0, Role.VIEWER: 1, Role.TRADER: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: the token subject (recorded as ``actor`` on commands) and its role."""

    subject: str
    role: Role | None


def _bearer_challenge(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer error="{error}"'}


def unauthorized(code: str, message: str) -> ApiError:
    """A 401 with the RFC 6750 challenge header."""
    return ApiError(401, code, message, _bearer_challenge("invalid_token"))


def role_from_claims(claims: dict[str, Any]) -> Role | None:
    """The highest known role among the ``role`` and ``roles`` claims; unknown names are ignored."""
    names: list[Any] = []
    if isinstance(claims.get("role"), str):
        names.append(claims["role"])
    if isinstance(claims.get("roles"), list):
        names.extend(claims["roles"])
    known = [Role(name) for name in names if isinstance(name, str) and name in Role.__members__.values()]
    return max(known, key=lambda role: role.rank, default=None)


def authorize(principal: Principal, required: Role) -> None:
    """Raise 403 unless the principal's role includes ``required``."""
    if principal.role is None or principal.role.rank < required.rank:
        held = principal.role.value if principal.role else "no role"
        raise ApiError(403, "forbidden", f"this needs the {required.value} role; the token has {held}")


def authorize_service_or(principal: Principal, required: Role) -> None:
    """Admit the service role, or a person whose role includes ``required``; 403 otherwise."""
    if principal.role is not Role.SERVICE:
        authorize(principal, required)


def check_auth_settings(settings: Settings) -> None:
    """Stop startup unless the key the configured algorithm needs is present (the message names the setting)."""
    if settings.api.jwt_algorithm == "HS256" and settings.api.jwt_secret is None:
        raise ConfigError(
            "IBSTREAM_API_JWT_SECRET",
            "HS256 tokens need a secret of at least 32 bytes; set it (e.g. `openssl rand -base64 48`)",
        )
    if settings.api.jwt_algorithm == "RS256" and not (settings.api.jwt_public_key or settings.api.jwt_jwks_url):
        raise ConfigError(
            "IBSTREAM_API_JWT_PUBLIC_KEY",
            "RS256 tokens need a PEM public key, or IBSTREAM_API_JWT_JWKS_URL pointing at the issuer's JWKS",
        )
    if settings.api.jwt_algorithm == "RS256" and settings.api.jwt_public_key:
        try:
            jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(settings.api.jwt_public_key)
        except (jwt.InvalidKeyError, ValueError, TypeError) as error:
            raise ConfigError("IBSTREAM_API_JWT_PUBLIC_KEY", f"not a PEM RSA public key: {error}") from None


class TokenVerifier:
    """Verifies bearer tokens: signature (HS256 secret, RS256 PEM key or JWKS), expiry, issuer, audience, subject."""

    def __init__(self, settings: Settings) -> None:
        check_auth_settings(settings)
        self._algorithm = settings.api.jwt_algorithm
        self._issuer = settings.api.jwt_issuer
        self._audience = settings.api.jwt_audience
        self._leeway = settings.api.jwt_leeway_seconds
        self._key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        if self._algorithm == "HS256":
            assert settings.api.jwt_secret is not None  # check_auth_settings guarantees it
            self._key = settings.api.jwt_secret.get_secret_value()
        elif settings.api.jwt_public_key:
            self._key = settings.api.jwt_public_key
        else:
            assert settings.api.jwt_jwks_url is not None
            # PyJWKClient caches the key set and refetches on an unknown kid (key rotation).
            self._jwks = jwt.PyJWKClient(settings.api.jwt_jwks_url, cache_keys=True, timeout=5)

    def _signing_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise ApiError(503, "jwks_unavailable", "the identity provider's key set cannot be fetched") from None
        except jwt.PyJWKClientError as error:
            raise unauthorized("token_invalid", f"no key for this token: {error}") from None
        except jwt.InvalidTokenError as error:
            raise unauthorized("token_invalid", f"malformed token: {error}") from None

    def verify(self, token: str) -> Principal:
        """The principal a token names, or a 401 ``token_expired`` / ``token_invalid``."""
        key = self._signing_key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                # One algorithm only: accepting several invites alg-confusion (an RS256 key used as an HS256 secret).
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token_expired", "the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise unauthorized("token_invalid", f"invalid token: {error}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise unauthorized("token_invalid", "the token has no subject")
        return Principal(subject=subject, role=role_from_claims(claims))


def issue_token(settings: Settings, role: Role, subject: str, ttl: timedelta, now: datetime | None = None) -> str:
    """A locally signed HS256 token for development, with the configured issuer and audience."""
    if settings.api.jwt_algorithm != "HS256":
        raise ConfigError(
            "IBSTREAM_API_JWT_ALGORITHM",
            "local tokens are HS256 only; with RS256 your identity provider issues the tokens",
        )
    check_auth_settings(settings)
    assert settings.api.jwt_secret is not None
    issued = now or datetime.now(UTC)
    claims = {
        "sub": subject,
        "role": role.value,
        "iss": settings.api.jwt_issuer,
        "aud": settings.api.jwt_audience,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, settings.api.jwt_secret.get_secret_value(), algorithm="HS256")
