"""The pure parts of the audit and stored-record routes: output negotiation, filter checks as API errors, the
(partition, offset) cursor, and which topics may be read raw. No I/O here; the routes are in ``api.routes.audits``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

from api.cursor import filters_digest
from api.errors import ApiError
from api.times import EARLIEST, LATEST
from ibstream.contracts import TOPICS, TopicSpec
from ibstream.contracts.base import MARKET_DATA_PREFIX
from ibstream.warehouse import AuditParameterError, QueryResult, UnknownAuditError
from ibstream.warehouse.audits import Audit, AuditFilters, audit_parameters, find_audit, jsonable

AuditFormat = Literal["json", "csv"]
CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"
#: The media type each format is served as (the first is preferred when the Accept header does not choose).
_MEDIA: dict[AuditFormat, str] = {"json": JSON_TYPE, "csv": CSV_TYPE}

#: Raw stored records are served for market-data topics only: replay (their one reader) re-emits nothing else, and
#: the trading topics' history is served by the resource routes, with their own roles.
READABLE_PREFIX = MARKET_DATA_PREFIX


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality))
    return ranges


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> float:
    """The quality the header gives ``media_type``: that of its most specific matching range (RFC 9110), else 0."""
    kind = media_type.split("/")[0]
    by_specificity = {media_type: 2, f"{kind}/*": 1, "*/*": 0}
    matching = [(by_specificity[media], quality) for media, quality in ranges if media in by_specificity]
    return max(matching)[1] if matching else 0.0


def negotiate(format_: AuditFormat | None, accept: str | None) -> AuditFormat:
    """The output format: ``format`` when given; else the one the Accept header prefers (JSON on a tie, or without a
    header); 406 when the header accepts neither."""
    if format_ is not None:
        return format_
    if not accept:
        return "json"
    ranges = _media_ranges(accept)
    quality, _, name = max((_quality(media, ranges), -rank, name) for rank, (name, media) in enumerate(_MEDIA.items()))
    if quality <= 0:
        raise ApiError(406, "not_acceptable", f"audits are served as {JSON_TYPE} or {CSV_TYPE}; Accept: {accept}")
    return name


def checked_audit(name: str, filters: AuditFilters) -> Audit:
    """The audit, with its filters checked: 404 ``audit_not_found`` naming the known audits, 422 ``invalid_filter``
    naming the filter it cannot take (or a required one missing, or an empty window)."""
    try:
        audit = find_audit(name)
        audit_parameters(audit, filters)
    except UnknownAuditError as error:
        raise ApiError(404, "audit_not_found", str(error)) from None
    except AuditParameterError as error:
        raise ApiError(422, "invalid_filter", str(error)) from None
    return audit


def day_problem(day: date | None) -> str | None:
    """Why ``day`` is not one the API accepts (outside 1970–2200, as every API time), or None."""
    if day is None or EARLIEST.date() <= day < LATEST.date():
        return None
    return f"day must lie between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()} (got {day})"


def audit_json(name: str, result: QueryResult) -> str:
    """The JSON body: the audit's name, its columns in order, and its rows as objects (JSON values only)."""
    rows = jsonable(result)
    return json.dumps({"audit": name, "columns": rows.columns, "rows": rows.dicts()}, allow_nan=False)


def readable_topic(name: str) -> TopicSpec[Any]:
    """The catalogue topic whose stored records may be read raw: 404 ``topic_not_found`` for an unknown name, 422
    ``topic_not_readable`` for one outside market data."""
    spec = next((spec for spec in TOPICS if spec.name == name), None)
    if spec is None:
        known = ", ".join(spec.name for spec in TOPICS if spec.name.startswith(READABLE_PREFIX))
        raise ApiError(404, "topic_not_found", f"no catalogue topic {name!r}; readable: {known}")
    if not spec.name.startswith(READABLE_PREFIX):
        raise ApiError(
            422,
            "topic_not_readable",
            f"stored records are served for market-data topics ({READABLE_PREFIX}*) only, as replay re-emits only "
            f"those; {name} is not one",
        )
    return spec


def records_window_problem(
    spec: TopicSpec[Any], start: datetime, end: datetime, symbols: Sequence[str]
) -> ApiError | None:
    """A 422 for a window that is empty or symbols on a topic whose records have none; None when the request holds."""
    if end <= start:
        return ApiError(422, "invalid_window", f"to ({end.isoformat()}) must be after from ({start.isoformat()})")
    if symbols and "symbol" not in spec.record.model_fields:
        return ApiError(422, "invalid_filter", f"{spec.name} records have no symbol; the symbol filter does not apply")
    return None


def encode_offset_cursor(partition: int, offset: int, filters: Mapping[str, Any]) -> str:
    """The cursor that continues after the record at (partition, offset)."""
    payload = json.dumps({"p": partition, "o": offset, "f": filters_digest(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_offset_cursor(cursor: str, filters: Mapping[str, Any]) -> tuple[int, int]:
    """The (partition, offset) a cursor continues after; 400 ``bad_cursor`` if malformed or for other filters."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        partition, offset, digest = payload["p"], payload["o"], payload["f"]
        valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (partition, offset))
        if not valid or not isinstance(digest, str) or not (0 <= partition < 2**31 and 0 <= offset < 2**63):
            raise ValueError("bad field types or ranges")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ApiError(400, "bad_cursor", f"the cursor is not one this API issued ({error})") from None
    if digest != filters_digest(filters):
        raise ApiError(400, "bad_cursor", "the cursor was issued for different filters; start again without it")
    return partition, offset
