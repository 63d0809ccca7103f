"""Per-client rate limiting, a request body size limit and the HTTP methods served, as small ASGI middlewares over
plain logic.

Who the client is: the subject of a token that verifies (so one caller is one bucket wherever it connects from, and
callers behind one NAT or proxy do not share one); otherwise the client address, which is the peer address unless
the peer is a configured trusted proxy (``IBSTREAM_API_TRUSTED_PROXIES``) — only then is ``X-Forwarded-For`` read.
Nothing else may set it: uvicorn's own proxy-header handling is switched off where the API is served (api/app.py).
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Principal
from api.errors import ApiError
from api.metrics import KNOWN_METHODS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBuckets:
    """One token bucket per client key: ``burst`` requests at once, refilled at ``per_minute`` / 60 per second.

    Memory is bounded: at most ``max_clients`` buckets are kept, least recently used evicted first (an evicted
    client starts again with a full bucket, which only ever errs towards letting a request through).
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._max = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float | None:
        """Take one token for ``key``: None if allowed, else the seconds until a token is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self.rate


async def _send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", []) if key == name]


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(scope: Scope, trusted: Sequence[Network] = ()) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (read right to left: only trusted hops vouch for the
    hop before them, everything left of the first untrusted one may be forged)."""
    client = scope.get("client")
    address = str(client[0]) if client else "unknown"
    if not _is_trusted(address, trusted):
        return address
    hops = [hop.strip() for value in _header(scope, b"x-forwarded-for") for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage in the chain: believe nothing further left of it
        address = hop
        if not _is_trusted(hop, trusted):
            break
    return address


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    for value in _header(scope, b"authorization"):
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class ClientKeys:
    """The rate-limit key of a request: ``sub:<subject>`` when its bearer token verifies, else ``ip:<address>``."""

    def __init__(self, verify: Callable[[str], Principal], trusted_proxies: Sequence[str] = ()) -> None:
        self._verify = verify
        self._trusted = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]

    async def __call__(self, scope: Scope) -> str:
        token = bearer_token(scope)
        if token is not None:
            try:
                # On a worker thread: with a JWKS the verifier may (rarely) fetch the issuer's key set.
                principal = await anyio.to_thread.run_sync(self._verify, token)
            except ApiError:
                pass  # an invalid token buys nothing: the request counts against its address
            else:
                return f"sub:{principal.subject}"
        return f"ip:{client_address(scope, self._trusted)}"


async def _peer_key(scope: Scope) -> str:
    return f"ip:{client_address(scope)}"


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client's bucket is empty; exempt paths (probes, metrics) are never limited."""

    def __init__(
        self,
        app: ASGIApp,
        buckets: TokenBuckets,
        exempt: Collection[str] = (),
        key: Callable[[Scope], Awaitable[str]] = _peer_key,
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.exempt = frozenset(exempt)
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(await self.key(scope))
        if wait is None:
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(wait)))
        await _send_error(
            send,
            ApiError(
                429, "rate_limited", f"too many requests; retry after {retry_after}s", {"Retry-After": retry_after}
            ),
        )


class BodySizeLimitMiddleware:
    """413 for a body over ``max_bytes``: refused up front by Content-Length, and counted while streaming when the
    client sends chunked (no Content-Length), so an oversized body is never read into memory whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(413, "body_too_large", f"the request body exceeds {self.max_bytes} bytes")

    def _refused_up_front(self, scope: Scope) -> ApiError | None:
        """The error for a Content-Length that is not a number or is over the limit; None when the body may be read."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return ApiError(400, "bad_request", "invalid Content-Length")
                if declared > self.max_bytes:
                    return self._too_large()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._refused_up_front(scope)
        if refused is not None:
            await _send_error(send, refused)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, because FastAPI turns any other error while reading the body into a 400;
                    # the app's handler renders it as 413 body_too_large.
                    raise HTTPException(413, self._too_large().message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as error:
            if error.status_code != 413 or started:
                raise
            if not started:
                await _send_error(send, self._too_large())


class KnownMethodsMiddleware:
    """405 for a method outside the standard ones (``KNOWN_METHODS``) on any path, before routing: an invented
    method is nobody's request, and must not reach anything that records it (metric labels, logs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in KNOWN_METHODS:
            await self.app(scope, receive, send)
            return
        error = ApiError(405, "method_not_allowed", "method not allowed", {"Allow": "GET, HEAD, POST, OPTIONS"})
        await _send_error(send, error)
