"""IB's message codes and what each means for us (TWS API message_codes; see shared/IB-NOTES.md §4.5).

Libraries disagree on which codes mean "connection lost" or "restored"; these tables are the one place that
decides it for ibstream, so producer and execution react the same way.
"""

from __future__ import annotations

from enum import StrEnum


class CodeKind(StrEnum):
    """How a deployable should react to an IB code."""

    CONNECTION_LOST = "connection_lost"
    RESTORED_DATA_LOST = "restored_data_lost"  # resubscribe everything, backfill
    RESTORED_DATA_MAINTAINED = "restored_data_maintained"  # subscriptions survive; still verify liveness
    FARM_BROKEN = "farm_broken"
    FARM_OK = "farm_ok"
    FARM_INACTIVE = "farm_inactive"  # informational: connects on demand
    PACING = "pacing"
    NO_DATA = "no_data"
    DELAYED_DATA = "delayed_data"
    NOT_SUBSCRIBED = "not_subscribed"
    COMPETING_SESSION = "competing_session"
    NO_SECURITY = "no_security"
    ORDER_REJECTED = "order_rejected"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_WARNING = "order_warning"
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    DUPLICATE_CLIENT_ID = "duplicate_client_id"
    RATE_EXCEEDED = "rate_exceeded"
    CLIENT_NOT_CONNECTED = "client_not_connected"
    INFO = "info"
    ERROR = "error"


_BY_CODE: dict[int, CodeKind] = {
    1100: CodeKind.CONNECTION_LOST,
    2110: CodeKind.CONNECTION_LOST,
    1300: CodeKind.CONNECTION_LOST,
    1101: CodeKind.RESTORED_DATA_LOST,
    1102: CodeKind.RESTORED_DATA_MAINTAINED,
    2103: CodeKind.FARM_BROKEN,
    2105: CodeKind.FARM_BROKEN,
    2157: CodeKind.FARM_BROKEN,
    2104: CodeKind.FARM_OK,
    2106: CodeKind.FARM_OK,
    2158: CodeKind.FARM_OK,
    2107: CodeKind.FARM_INACTIVE,
    2108: CodeKind.FARM_INACTIVE,
    10167: CodeKind.DELAYED_DATA,
    354: CodeKind.NOT_SUBSCRIBED,
    10197: CodeKind.COMPETING_SESSION,
    200: CodeKind.NO_SECURITY,
    201: CodeKind.ORDER_REJECTED,
    203: CodeKind.ORDER_REJECTED,
    321: CodeKind.ORDER_REJECTED,
    10289: CodeKind.ORDER_REJECTED,
    10293: CodeKind.ORDER_REJECTED,
    202: CodeKind.ORDER_CANCELLED,
    399: CodeKind.ORDER_WARNING,
    103: CodeKind.DUPLICATE_ORDER_ID,
    326: CodeKind.DUPLICATE_CLIENT_ID,
    100: CodeKind.RATE_EXCEEDED,
    502: CodeKind.CLIENT_NOT_CONNECTED,
    504: CodeKind.CLIENT_NOT_CONNECTED,
    10182: CodeKind.CLIENT_NOT_CONNECTED,
}


def classify(code: int, message: str = "") -> CodeKind:
    """What an IB code means. 162 is overloaded: only its pacing text is a pacing violation."""
    if code == 162:
        text = message.lower()
        if "pacing violation" in text:
            return CodeKind.PACING
        if "no data" in text:
            return CodeKind.NO_DATA
        return CodeKind.ERROR
    kind = _BY_CODE.get(code)
    if kind is not None:
        return kind
    if 2100 <= code <= 2199:
        return CodeKind.INFO
    return CodeKind.ERROR


#: Codes after which market-data subscriptions must be re-requested.
RESUBSCRIBE_KINDS = frozenset({CodeKind.RESTORED_DATA_LOST, CodeKind.FARM_OK})


def _codes(*kinds: CodeKind) -> frozenset[int]:
    return frozenset(code for code, kind in _BY_CODE.items() if kind in kinds)


#: The connectivity tables (NautilusTrader's ``CONNECTIVITY_LOST_CODES`` / ``CONNECTIVITY_RESTORED_CODES``), derived
#: from the one table above; ``ibstream.ib.connection`` is the one place that reacts to them.
CONNECTIVITY_LOST_CODES = _codes(CodeKind.CONNECTION_LOST)
CONNECTIVITY_RESTORED_CODES = _codes(CodeKind.RESTORED_DATA_LOST, CodeKind.RESTORED_DATA_MAINTAINED)
FARM_BROKEN_CODES = _codes(CodeKind.FARM_BROKEN)
FARM_RESTORED_CODES = _codes(CodeKind.FARM_OK)
#: Another session (TWS, another gateway) took the market-data line of this username.
COMPETING_SESSION_CODES = _codes(CodeKind.COMPETING_SESSION)
#: Another client connected with this client id; the gateway closes our socket.
CLIENT_ID_IN_USE_CODES = _codes(CodeKind.DUPLICATE_CLIENT_ID)
