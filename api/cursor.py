"""Opaque cursors for keyset pagination.

A cursor carries the sort key of the last item served (a time and an id: a stable total order) and a digest of
the filters it was issued for, so reusing it with other filters is a clear 400 instead of a silently wrong page.
It is not signed: tampering can only move the caller's own position within what its role may already read.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from api.errors import ApiError
from api.times import out_of_range


def filters_digest(filters: Mapping[str, Any]) -> str:
    """A short digest of the query's filters (None values ignored, order irrelevant)."""
    canonical = json.dumps(
        {key: str(value) for key, value in sorted(filters.items()) if value is not None}, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(time: datetime, item_id: str, filters: Mapping[str, Any]) -> str:
    """The cursor that continues after the item with this sort key."""
    payload = json.dumps({"t": time.isoformat(), "i": item_id, "f": filters_digest(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, filters: Mapping[str, Any]) -> tuple[datetime, str]:
    """The sort key a cursor continues after; 400 ``bad_cursor`` if it is malformed or for other filters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        time = datetime.fromisoformat(payload["t"])
        item_id = payload["i"]
        digest = payload["f"]
        if not isinstance(item_id, str) or not isinstance(digest, str) or time.tzinfo is None:
            raise ValueError("bad field types")
    except (ValueError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as error:
        raise ApiError(400, "bad_cursor", f"the cursor is not one this API issued ({error})") from None
    reason = out_of_range(time)
    if reason is not None:  # a hand-made cursor far in the past or future: no page of ours continues there
        raise ApiError(400, "bad_cursor", f"the cursor is not one this API issued ({reason})")
    if digest != filters_digest(filters):
        raise ApiError(400, "bad_cursor", "the cursor was issued for different filters; start again without it")
    return time, item_id
