"""Per-client rate limiting and a request body size limit, as small ASGI middlewares over plain logic."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError


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


def client_key(scope: Scope) -> str:
    """The rate-limit key: the peer address. Behind a proxy, run uvicorn with ``--proxy-headers`` and a trusted
    ``--forwarded-allow-ips`` so this is the real client and not the proxy."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client's bucket is empty; exempt paths (probes, metrics) are never limited."""

    def __init__(self, app: ASGIApp, buckets: TokenBuckets, exempt: Collection[str] = ()) -> None:
        self.app = app
        self.buckets = buckets
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_key(scope))
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
