"""Times the API accepts from callers (query parameters, cursors): ISO 8601 only, between 1970 and 2200.

Outside that range a time is no filter anyone means, and converting it (to UTC, to epoch microseconds for SQL) can
overflow Python's datetime: a 500 for what is the caller's mistake. So it is refused up front with a reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """A naive time read as UTC; an aware one unchanged."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def out_of_range(value: datetime) -> str | None:
    """Why ``value`` is not a time the API accepts, or None when it is."""
    try:
        within = EARLIEST <= as_utc(value) < LATEST
    except OverflowError:  # an offset that pushes year 1 or 9999 out of datetime's own range
        within = False
    if within:
        return None
    return f"times must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()} (got {value.isoformat()})"


def _iso_only(value: Any) -> Any:
    # pydantic reads a bare number as a Unix timestamp; the documented format is ISO 8601, so refuse the rest.
    if isinstance(value, str) and not any(c in value for c in "-:T"):
        raise ValueError("expected an ISO 8601 time such as 2026-03-02T14:30:00Z")
    return value


def _in_range(value: datetime) -> datetime:
    reason = out_of_range(value)
    if reason is not None:
        raise ValueError(reason)
    return value


#: A query-parameter time: ISO 8601 (naive = UTC) between 1970 and 2200, else a 422 saying so.
IsoTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_range)]
