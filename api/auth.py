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

from api.errors import ApiError, unauthorized
from api.jwks import JwksKeys
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
    """Verifies bearer tokens: signature (HS256 secret, RS256 PEM key or JWKS), expiry, issuer, audience, subject,
    and a lifetime no longer than the configured maximum. Every way a token can be wrong is a 401."""

    def __init__(self, settings: Settings) -> None:
        check_auth_settings(settings)
        self._algorithm = settings.api.jwt_algorithm
        self._issuer = settings.api.jwt_issuer
        self._audience = settings.api.jwt_audience
        self._leeway = settings.api.jwt_leeway_seconds
        self._max_lifetime = settings.api.jwt_max_lifetime_seconds
        self._key: Any = None
        self._jwks: JwksKeys | None = None
        if self._algorithm == "HS256":
            assert settings.api.jwt_secret is not None  # check_auth_settings guarantees it
            self._key = settings.api.jwt_secret.get_secret_value()
        elif settings.api.jwt_public_key:
            self._key = settings.api.jwt_public_key
        else:
            assert settings.api.jwt_jwks_url is not None
            self._jwks = JwksKeys(settings.api.jwt_jwks_url, settings.api.jwt_jwks_refresh_seconds)

    def verify(self, token: str, now: datetime | None = None) -> Principal:
        """The principal a token names, or a 401 ``token_expired`` / ``token_invalid``."""
        key = self._key if self._jwks is None else self._jwks.key_for(token)
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
        except (jwt.PyJWTError, ValueError, TypeError) as error:  # e.g. a key the library cannot use for this token
            raise unauthorized("token_invalid", f"the token cannot be verified: {error}") from None
        problem = lifetime_problem(claims, self._max_lifetime, self._leeway, now or datetime.now(UTC))
        if problem is not None:
            raise unauthorized("token_invalid", problem)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise unauthorized("token_invalid", "the token has no subject")
        return Principal(subject=subject, role=role_from_claims(claims))


def lifetime_problem(claims: dict[str, Any], max_seconds: int, leeway: int, now: datetime) -> str | None:
    """Why a token lives too long (exp − iat, or exp − now, beyond ``max_seconds`` + leeway), or None."""
    expires = claims.get("exp")
    if not isinstance(expires, int | float):
        return "the token has no numeric expiry (exp)"
    issued = claims.get("iat")
    if issued is not None and not isinstance(issued, int | float):
        return "the token's issue time (iat) is not a number"
    lifetime = expires - issued if issued is not None else None
    remaining = expires - now.timestamp()
    if (lifetime is not None and lifetime > max_seconds + leeway) or remaining > max_seconds + leeway:
        return (
            f"the token lives longer than the {max_seconds} s this API accepts (IBSTREAM_API_JWT_MAX_LIFETIME_SECONDS)"
        )
    return None


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
