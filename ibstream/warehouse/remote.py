"""Reading the warehouse through the running API, for when the embedded chDB directory is held by that API.

Embedded chDB lets one process open a directory, and in the embedded default that process is the API (with the sink
inside it). `ibstream audit` and `ibstream replay --source warehouse` try the directory first and, on
``WarehouseLockedError``, come here: the same audit through ``GET /v1/audits/{name}`` (viewer), the same stored
records through ``GET /v1/topics/{topic}/records`` (admin), at ``IBSTREAM_API_URL`` with ``IBSTREAM_API_TOKEN``.

Why through the API rather than another read path: chDB has no read-only or shared open of a directory, a copy of a
directory that is being written is not a consistent snapshot, and the API already serves reads of that very engine.
The records come back Avro-encoded (single-object encoding, the writer schema named by its fingerprint), so what the
caller decodes is exactly the record the API read — the same bytes a direct read would encode.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx

from ibstream.config import Settings
from ibstream.contracts import Record, TopicSpec
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.warehouse.audits import AuditFilters
from ibstream.warehouse.client import QueryResult
from ibstream.warehouse.exceptions import (
    ApiAnswerError,
    ApiReadError,
    AuditParameterError,
    UnknownAuditError,
    WarehouseLockedError,
)

#: Records per page of ``GET /v1/topics/{topic}/records`` (the API's maximum): few requests against its rate limit.
PAGE_SIZE = 5000
#: How often a request the API rate-limited (429) is sent again, after the Retry-After it names (capped).
RATE_LIMITED_ATTEMPTS = 20
MAX_RETRY_AFTER_SECONDS = 30.0


def audit_query(filters: AuditFilters) -> dict[str, str]:
    """The query parameters of ``GET /v1/audits/{name}`` for ``filters`` (the given ones only)."""
    values: dict[str, Any] = {
        "day": filters.day,
        "from": filters.start,
        "to": filters.end,
        "symbol": filters.symbol,
        "strategy": filters.strategy,
        "order_id": filters.order_id,
    }
    return {
        name: value.isoformat() if hasattr(value, "isoformat") else str(value)
        for name, value in values.items()
        if value is not None
    }


def result_from_body(body: Any) -> QueryResult:
    """The ``QueryResult`` a ``GET /v1/audits/{name}`` JSON body carries (columns, then rows as objects)."""
    try:
        columns = [str(name) for name in body["columns"]]
        rows = [tuple(row[name] for name in columns) for row in body["rows"]]
    except (KeyError, TypeError) as error:
        raise ApiReadError(f"the API's audit answer is not the expected shape ({error!r})") from None
    return QueryResult(columns, rows)


class ApiWarehouseReader:
    """Audits and stored records through the API. Build with ``through_api(settings, locked)``."""

    def __init__(self, settings: Settings, token: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = settings.api.client_url
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0, connect=5.0),
            transport=transport,
        )
        self._codec = SingleObjectCodec(SchemaStore())
        self._sleep = time.sleep

    def close(self) -> None:
        self._client.close()

    def _send(self, path: str, params: Any) -> httpx.Response:
        """The answer to GET ``path``; a rate-limited request (a long replay pages quickly) waits and goes again."""
        for _ in range(RATE_LIMITED_ATTEMPTS):
            try:
                response = self._client.get(path, params=params)
            except httpx.TransportError as error:
                raise ApiReadError(
                    f"the API at {self.url} (IBSTREAM_API_URL) does not answer: {type(error).__name__}: {error}"
                ) from None
            if response.status_code != 429:
                return response
            self._sleep(retry_after(response.headers.get("Retry-After")))
        return response

    def _get(self, path: str, params: Any) -> httpx.Response:
        response = self._send(path, params)
        if response.status_code == 200:
            return response
        message = _message(response)
        if response.status_code == 401:
            raise ApiReadError(f"the API at {self.url} refused IBSTREAM_API_TOKEN: {message}")
        if response.status_code == 403:
            raise ApiReadError(f"IBSTREAM_API_TOKEN may not do this at {self.url}: {message}")
        raise ApiAnswerError(
            response.status_code, f"the API at {self.url} answered {response.status_code} to GET {path}: {message}"
        )

    def audit(self, name: str, filters: AuditFilters) -> QueryResult:
        """The audit's rows, as ``execute_audit`` would give them after ``jsonable``."""
        try:
            response = self._get(f"/v1/audits/{name}", {**audit_query(filters), "format": "json"})
        except ApiAnswerError as error:
            if error.status == 404:
                raise UnknownAuditError(str(error)) from None
            if error.status == 422:
                raise AuditParameterError("", str(error)) from None
            raise
        return result_from_body(response.json())

    def records(
        self, spec: TopicSpec[Any], topic: str, start: datetime, end: datetime, symbols: Sequence[str]
    ) -> tuple[int, Iterator[Record]]:
        """How many stored records of ``spec``'s topic lie in [start, end), and the records in (partition, offset)
        order, fetched a page at a time. ``topic`` is the stored (prefixed) name the caller expects; the API names
        the one it reads, and a different one (another topic prefix) is refused rather than replayed."""
        params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "limit": PAGE_SIZE}
        if symbols:
            params["symbol"] = list(symbols)
        first = self._get(f"/v1/topics/{spec.name}/records", params).json()
        if first.get("topic") != topic:
            raise ApiReadError(
                f"the API at {self.url} stores {spec.name} as {first.get('topic')!r}, not {topic!r}: its "
                "IBSTREAM_KAFKA_TOPIC_PREFIX differs from this one's"
            )
        return int(first.get("total") or 0), self._pages(spec, params, first)

    def _pages(self, spec: TopicSpec[Any], params: dict[str, Any], page: dict[str, Any]) -> Iterator[Record]:
        while True:
            for item in page["items"]:
                value = base64.b64decode(item["value"])
                yield self._codec.decode(page["topic"], spec.record, value, item["partition"], item["offset"])
            cursor = page.get("next_cursor")
            if not cursor:
                return
            page = self._get(f"/v1/topics/{spec.name}/records", {**params, "cursor": cursor}).json()


def retry_after(header: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds form; 1 when absent or unreadable), capped."""
    try:
        seconds = float(header) if header is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    details = "; ".join(f"{'.'.join(d.get('loc', []))}: {d.get('msg')}" for d in body.get("details") or [])
    return f"{body.get('code')}: {body.get('message')}" + (f" ({details})" if details else "")


def through_api(
    settings: Settings, locked: WarehouseLockedError, transport: httpx.BaseTransport | None = None
) -> ApiWarehouseReader:
    """A reader through the API for a warehouse directory another process holds; without IBSTREAM_API_TOKEN the
    lock's own error, plus how to go through the API instead."""
    if settings.warehouse.clickhouse_url is not None or settings.api.token is None:
        raise ApiReadError(
            f"{locked}. To read through the running API instead, set IBSTREAM_API_TOKEN (a viewer token for audits, "
            f"an admin token for replay: `ibstream token --role admin`) and, unless it is {settings.api.client_url}, "
            "IBSTREAM_API_URL"
        )
    return ApiWarehouseReader(settings, settings.api.token.get_secret_value(), transport)
