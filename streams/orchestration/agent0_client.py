"""The Agent0 HTTP client orchestration plans with: timeout, bounded retries with backoff, circuit breaker.

The only module of streams that imports httpx. Every failure surfaces as ``PlanningError`` whose message is the
cause recorded on the failed run (timeout, HTTP status and body, connection refused, circuit open).

Agent0 wants a bearer token: orchestration presents the service-role token from ``IBSTREAM_AGENT0_TOKEN`` (a
secret, never logged). Each request carries the account's NetLiquidation (``equity``) from the newest
``account.v1`` record when orchestration has one (``streams.orchestration.account``), so plans are sized by
what IB reports; without it Agent0 falls back to its configured equity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

from ibstream.backoff import Backoff
from ibstream.config import Settings
from ibstream.contracts import Plan, Signal
from ibstream.exceptions import ConfigError, IbstreamError
from ibstream.telemetry import trace_headers, tracer
from streams.observability import AGENT0_LATENCY, AGENT0_REQUESTS
from streams.orchestration.breaker import CircuitBreaker, CircuitOpenError

_tracer = tracer(__name__)


class PlanningError(IbstreamError):
    """Planning failed; the message is the cause."""


def plan_request(signal: Signal, equity: float | None) -> dict[str, Any]:
    """The body of ``POST /v1/plan``: the signal on record, and the account's NetLiquidation when known."""
    payload: dict[str, Any] = {"signal": signal.model_dump(mode="json", exclude={"features"})}
    if equity is not None:
        payload["equity"] = equity
    return payload


def _no_equity() -> float | None:
    return None


class Agent0Client:
    """Calls ``POST /v1/plan``; retries timeouts, connection errors and 5xx (never 4xx: the input is wrong)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_attempts: int,
        backoff_seconds: float,
        breaker: CircuitBreaker,
        token: SecretStr | None = None,
        equity: Callable[[], float | None] = _no_equity,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._token = token
        self._equity = equity
        self._attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self.breaker = breaker

    @classmethod
    def from_settings(cls, settings: Settings, equity: Callable[[], float | None] = _no_equity) -> Agent0Client:
        """The client orchestration plans with; ConfigError without the service token Agent0 requires."""
        if settings.agent0.token is None:
            raise ConfigError(
                "IBSTREAM_AGENT0_TOKEN",
                "Agent0 requires a bearer token with the service role "
                "(`ibstream token --role service --subject streams`, or one from your identity provider)",
            )
        return cls(
            settings.agent0.url,
            timeout=settings.agent0.timeout_seconds,
            max_attempts=settings.agent0.max_attempts,
            backoff_seconds=settings.agent0.backoff_seconds,
            breaker=CircuitBreaker(settings.agent0.breaker_failures, settings.agent0.breaker_reset_seconds),
            token=settings.agent0.token,
            equity=equity,
        )

    async def plan(self, signal: Signal) -> Plan:
        """Agent0's plan for the signal, or PlanningError with the cause of the last failure."""
        with _tracer.start_as_current_span("agent0.request", attributes={"signal_id": signal.signal_id}):
            return await self._plan(signal)

    async def _plan(self, signal: Signal) -> Plan:
        payload = plan_request(signal, self._equity())
        backoff = Backoff(base=self._backoff_seconds, cap=max(self._backoff_seconds * 8, 0.001))
        cause = "not attempted"
        for attempt in range(1, self._attempts + 1):
            try:
                self.breaker.before_call()
            except CircuitOpenError as error:
                AGENT0_REQUESTS.add(1, {"outcome": "circuit_open"})
                raise PlanningError(f"agent0 {error}") from None
            started = time.monotonic()
            # Agent0 continues this trace from the HTTP headers, as Kafka consumers do from record headers.
            headers = {key: str(value) for key, value in trace_headers().items() if value is not None}
            if self._token is not None:
                headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
            try:
                response = await self._client.post("/v1/plan", json=payload, headers=headers)
            except httpx.TimeoutException as error:
                cause = f"agent0 timeout ({type(error).__name__}) on attempt {attempt}"
                self._observe("timeout", started)
            except httpx.TransportError as error:
                cause = f"agent0 unreachable ({type(error).__name__}: {error}) on attempt {attempt}"
                self._observe("unreachable", started)
            else:
                if response.status_code == 200:
                    self.breaker.success()
                    try:
                        plan = Plan.model_validate(response.json()["plan"])
                    except (ValueError, KeyError, TypeError) as error:  # ValidationError and JSON errors included
                        # Not retried: the same request would get the same answer. Surfacing it as a
                        # PlanningError records a failed run instead of leaving it in "planning".
                        self._observe("bad_plan", started)
                        raise PlanningError(f"agent0 returned no readable plan: {error}") from None
                    self._observe("ok", started)
                    return plan
                cause = f"agent0 HTTP {response.status_code}: {response.text[:300]} on attempt {attempt}"
                if response.status_code < 500:
                    self._observe("http_4xx", started)
                    self.breaker.success()  # Agent0 is up; the request is wrong and retrying cannot help
                    raise PlanningError(cause)
                self._observe("http_5xx", started)
            self.breaker.failure()
            if attempt < self._attempts:
                await asyncio.sleep(backoff.next_delay())
        raise PlanningError(f"{cause} (gave up after {self._attempts} attempts)")

    @staticmethod
    def _observe(outcome: str, started: float) -> None:
        AGENT0_REQUESTS.add(1, {"outcome": outcome})
        AGENT0_LATENCY.record(time.monotonic() - started, {"outcome": outcome})

    async def close(self) -> None:
        await self._client.aclose()
