"""RS256 signing keys from an identity provider's JWKS, by key id, with refetches throttled.

Only RSA keys meant for RS256 signatures are kept: a key of another type under the token's ``kid`` (an EC or a
symmetric key) would otherwise reach the verifier as the wrong kind of object. The set is fetched on first use and
again when a token names a key id it lacks (the provider rotated its keys), but at most once per
``refresh_seconds``: tokens with made-up key ids cannot turn each request into a fetch from the provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from api.errors import ApiError, unauthorized


def signing_keys(jwk_set: jwt.PyJWKSet) -> dict[str, Any]:
    """The RS256 signature keys of a key set, by key id (keys without an id, of another type or use are left out)."""
    return {
        jwk.key_id: jwk.key
        for jwk in jwk_set.keys
        if jwk.key_id
        and jwk.key_type == "RSA"
        and jwk.algorithm_name == "RS256"
        and jwk.public_key_use in (None, "sig")
    }


class JwksKeys:
    """The provider's signing keys, cached by key id; ``key_for(token)`` or a 401 (503 if the set cannot be had)."""

    def __init__(self, url: str, refresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=5)
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._unreachable = False  # the last fetch could not reach the provider
        self._lock = threading.Lock()
        self.fetches = 0

    def key_for(self, token: str) -> Any:
        """The key that signed ``token`` according to its ``kid`` header."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as error:
            raise unauthorized("token_invalid", f"malformed token: {error}") from None
        if not isinstance(kid, str) or not kid:
            raise unauthorized("token_invalid", "the token names no key id (kid)")
        with self._lock:
            if kid not in self._keys and self._may_fetch():
                self._fetch()
            key = self._keys.get(kid)
            unreachable = self._unreachable
        if key is None and unreachable:  # until the next attempt, the provider counts as still down
            raise ApiError(503, "jwks_unavailable", "the identity provider's key set cannot be fetched")
        if key is None:
            raise unauthorized("token_invalid", f"no RS256 signing key with id {kid!r} in the issuer's key set")
        return key

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._refresh_seconds

    def _fetch(self) -> None:
        # The attempt counts even when it fails: an unreachable provider is not asked again on every request.
        self._fetched_at = self._clock()
        self.fetches += 1
        self._unreachable = False
        try:
            jwk_set = self._client.get_jwk_set(refresh=True)
        except jwt.PyJWKClientConnectionError:
            self._unreachable = True  # keys fetched before stay usable
            return
        except jwt.PyJWTError as error:  # a set with no usable key, or not a key set at all
            self._keys = {}
            raise unauthorized("token_invalid", f"the issuer's key set is unusable: {error}") from None
        self._keys = signing_keys(jwk_set)
