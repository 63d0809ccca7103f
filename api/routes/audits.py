"""Audits and stored records: ``GET /v1/audits`` and ``GET /v1/audits/{name}`` (viewer: an audit only reads), and
``GET /v1/topics/{topic}/records`` (admin: raw market-data records, paged, for `ibstream replay --source warehouse`).

They exist so the operator's CLI can read the embedded warehouse while this process holds its directory (chDB lets
one process open it); ``ibstream.warehouse.remote`` is their client. An audit's rows are those of
``ibstream audit`` (the same SQL, the same JSON values); a stored record is its Avro single-object encoding, so the
caller decodes exactly the record read here.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api.errors import ApiError, errors
from api.models import ID_PATTERN, SYMBOL_PATTERN
from api.routes.deps import Admin, Cursor, IdFilter, Symbol, Viewer, utc, warehouse_of
from api.times import IsoTime, as_utc
from api.warehouse_reads import (
    CSV_TYPE,
    JSON_TYPE,
    AuditFormat,
    audit_json,
    checked_audit,
    day_problem,
    decode_offset_cursor,
    encode_offset_cursor,
    negotiate,
    readable_topic,
    records_window_problem,
)
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from ibstream.telemetry import log_context
from ibstream.warehouse.audits import AUDITS, AuditFilters, execute_audit, render

router = APIRouter(tags=["audits"])

_CODEC = SingleObjectCodec(SchemaStore())


class AuditInfo(BaseModel):
    """One audit: what it answers and the filters it takes."""

    name: str
    doc: str
    filters: list[str] = Field(description="the query parameters it takes (day, from, to, symbol, …)")
    required: list[str]
    window: str = Field(description="what day/from/to apply to (empty: no time filter)")


class AuditList(BaseModel):
    audits: list[AuditInfo]


class AuditRows(BaseModel):
    """An audit's answer as JSON (the CSV form has the same columns and rows)."""

    audit: str
    columns: list[str]
    rows: list[dict[str, Any]]


class StoredRecordItem(BaseModel):
    partition: int
    offset: int
    kafka_ts: str = Field(description="the record's Kafka timestamp (ISO 8601)")
    value: str = Field(description="the record, Avro single-object encoded (C3 01 + schema fingerprint), base64")


class StoredRecordPage(BaseModel):
    """Stored records of a topic in (partition, offset) order, as replay reads them."""

    topic: str = Field(description="the stored topic name, with this deployment's topic prefix")
    total: int | None = Field(description="records in the window (first page only)")
    items: list[StoredRecordItem]
    next_cursor: str | None


AuditName = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,64}$")]
Strategy = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
#: The 200 answer in OpenAPI: the JSON model (``model`` puts AuditRows into the components) or CSV text.
_AUDIT_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": AuditRows, "description": "the audit's rows", "content": {CSV_TYPE: {"schema": {"type": "string"}}}}
}


@router.get("/v1/audits", response_model=AuditList, responses=errors())
def list_audits(principal: Viewer) -> AuditList:
    """The ready-made audits and the filters each takes."""
    return AuditList(
        audits=[
            AuditInfo(name=a.name, doc=a.doc, filters=list(a.filters), required=list(a.required), window=a.window)
            for a in AUDITS.values()
        ]
    )


@router.get(
    "/v1/audits/{name}",
    response_class=Response,
    responses={**errors(404, 406), **_AUDIT_ANSWER},
)
def get_audit(
    principal: Viewer,
    request: Request,
    name: AuditName,
    day: Annotated[date | None, Query(description="a UTC day (or from/to)")] = None,
    start: Annotated[IsoTime | None, Query(alias="from", description="at or after (ISO 8601; naive = UTC)")] = None,
    end: Annotated[IsoTime | None, Query(alias="to", description="before (ISO 8601; naive = UTC)")] = None,
    symbol: Symbol = None,
    strategy: Strategy = None,
    order_id: IdFilter = None,
    format: Annotated[AuditFormat | None, Query(description="json or csv; else the Accept header")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """An audit's rows as JSON (``columns`` and ``rows``) or CSV: the same SQL and values as ``ibstream audit``.
    A filter the audit does not take is a 422 naming it."""
    problem = day_problem(day)
    if problem is not None:
        raise ApiError(422, "invalid_filter", problem)
    filters = AuditFilters(day=day, start=utc(start), end=utc(end), symbol=symbol, strategy=strategy, order_id=order_id)
    audit = checked_audit(name, filters)
    output = negotiate(format, accept)
    with log_context(audit=audit.name):
        result = execute_audit(warehouse_of(request), audit.name, filters)
    if output == "csv":
        return Response(render(result, "csv"), media_type=f"{CSV_TYPE}; charset=utf-8")
    return Response(audit_json(audit.name, result), media_type=JSON_TYPE)


@router.get("/v1/topics/{topic}/records", response_model=StoredRecordPage, responses=errors(404))
def topic_records(
    principal: Admin,
    request: Request,
    topic: Annotated[str, Path(pattern=ID_PATTERN)],
    start: Annotated[IsoTime, Query(alias="from", description="Kafka timestamp at or after (ISO 8601)")],
    end: Annotated[IsoTime, Query(alias="to", description="Kafka timestamp before (ISO 8601)")],
    symbol: Annotated[list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="page size")] = 1000,
    cursor: Cursor = None,
) -> StoredRecordPage:
    """A market-data topic's stored records with a Kafka timestamp in [from, to), deduplicated, in (partition,
    offset) order — what ``ibstream replay --source warehouse`` reads — a page at a time."""
    spec = readable_topic(topic)
    window = (as_utc(start), as_utc(end))
    symbols = sorted(set(symbol or []))
    problem = records_window_problem(spec, window[0], window[1], symbols)
    if problem is not None:
        raise problem
    filters = {"topic": spec.name, "from": window[0], "to": window[1], "symbols": ",".join(symbols)}
    after = decode_offset_cursor(cursor, filters) if cursor else None
    warehouse = warehouse_of(request)
    table = warehouse.schema.for_topic(spec)
    stored_topic = request.app.state.settings.kafka.topic_prefix + spec.name
    with log_context(topic=stored_topic):
        page = warehouse.page_records(table, stored_topic, *window, symbols or None, after=after, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        total = None if after is not None else warehouse.count_records(table, stored_topic, *window, symbols or None)
    last = page[-1] if more else None
    return StoredRecordPage(
        topic=stored_topic,
        total=total,
        items=[
            StoredRecordItem(
                partition=item.partition,
                offset=item.offset,
                kafka_ts=item.kafka_ts.isoformat(),
                value=base64.b64encode(_CODEC.encode(stored_topic, item.record)).decode(),
            )
            for item in page
        ],
        next_cursor=encode_offset_cursor(last.partition, last.offset, filters) if last is not None else None,
    )
