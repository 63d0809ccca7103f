"""Pure translation tables between IB and our contracts: statuses, sides, times, event ids (the order tickets of
a routed order: ``ibstream.ib.brackets``).

No I/O here: everything is a function of its arguments, unit-tested without a broker or a gateway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from enum import StrEnum
from zoneinfo import ZoneInfo

from ibstream.contracts.enums import OrderLeg, OrderStatus, Side
from ibstream.ib.codes import CodeKind

#: Namespace of every id this component derives (event ids, alert ids).
NAMESPACE = uuid.UUID("5d0c6a3e-3c1b-4d7e-9a51-6f1e2b9a0e61")
#: TWS reports execution times in the gateway's time zone without saying which; ours run in New York time.
TWS_TZ = ZoneInfo("America/New_York")
QTY_EPSILON = 1e-9

#: IB's order status strings → ours. PendingCancel says nothing final yet: the order may still fill.
IB_STATUS: dict[str, OrderStatus | None] = {
    "ApiPending": OrderStatus.SUBMITTED,
    "PendingSubmit": OrderStatus.SUBMITTED,
    "PreSubmitted": OrderStatus.SUBMITTED,
    "Submitted": OrderStatus.ACKNOWLEDGED,
    "PendingCancel": None,
    "ApiCancelled": OrderStatus.CANCELLED,
    "Cancelled": OrderStatus.CANCELLED,
    "Filled": OrderStatus.FILLED,
    "Inactive": OrderStatus.REJECTED,
}

#: IB's execution side → ours.
IB_SIDE: dict[str, Side] = {"BOT": Side.BUY, "SLD": Side.SELL, "BUY": Side.BUY, "SELL": Side.SELL}

#: Error codes about an order that end it, and the status they end it in. Anything else is a warning or info.
ERROR_KIND_STATUS: dict[CodeKind, OrderStatus] = {
    CodeKind.ORDER_REJECTED: OrderStatus.REJECTED,
    CodeKind.ORDER_CANCELLED: OrderStatus.CANCELLED,
    CodeKind.NO_SECURITY: OrderStatus.REJECTED,
    CodeKind.DUPLICATE_ORDER_ID: OrderStatus.ERROR,
}

#: IB's answers to a cancelOrder that has nothing to cancel: 10147 (IB does not know the id: never arrived, or lost
#: with a gateway restart) and 10148 (already filled or cancelled). They change nothing we record.
CANCEL_MOOT_CODES = frozenset({10147, 10148})

TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR})
_RANK = {
    OrderStatus.PENDING_SUBMIT: 0,
    OrderStatus.SUBMITTED: 1,
    OrderStatus.ACKNOWLEDGED: 2,
    OrderStatus.PARTIALLY_FILLED: 3,
}


def status_from_ib(broker_status: str, filled: float, remaining: float) -> OrderStatus | None:
    """Our status for an IB orderStatus; None when it decides nothing (PendingCancel, unknown strings)."""
    status = IB_STATUS.get(broker_status)
    if status is None:
        return None
    if status is OrderStatus.FILLED or (status not in TERMINAL and filled > 0 and remaining <= QTY_EPSILON):
        return OrderStatus.FILLED
    if status in (OrderStatus.SUBMITTED, OrderStatus.ACKNOWLEDGED) and filled > QTY_EPSILON:
        return OrderStatus.PARTIALLY_FILLED
    return status


class Verdict(StrEnum):
    """What to do with a reported status, given the one we hold."""

    APPLY = "apply"
    STALE = "stale"  # older news or a repeat (IB repeats statuses on every reqOpenOrders): nothing to record
    IMPOSSIBLE = "impossible"  # contradicts what we recorded: alert, do not apply


def judge(current: OrderStatus | None, new: OrderStatus, current_filled: float, new_filled: float) -> Verdict:
    """The order state machine: pending_submit → submitted → acknowledged → partially_filled → filled | cancelled |
    rejected | error. Terminal states are final; only ``error`` (our doubt, e.g. 103) may still learn IB's end."""
    if new_filled + QTY_EPSILON < current_filled:
        return Verdict.IMPOSSIBLE
    if current is None:
        return Verdict.APPLY
    if current in TERMINAL:
        if new == current:
            return Verdict.APPLY if new_filled > current_filled + QTY_EPSILON else Verdict.STALE
        if current is OrderStatus.ERROR and new in TERMINAL:
            return Verdict.APPLY
        return Verdict.IMPOSSIBLE
    if new in TERMINAL:
        return Verdict.APPLY
    if new == current:
        return Verdict.APPLY if new_filled > current_filled + QTY_EPSILON else Verdict.STALE
    return Verdict.APPLY if _RANK[new] > _RANK[current] else Verdict.STALE


def event_id(order_id: str, leg: OrderLeg, status: OrderStatus, filled: float, reconciliation: str | None) -> str:
    """Deterministic id of one order step: a re-emit after a crash carries the same id as the first attempt."""
    return str(uuid.uuid5(NAMESPACE, f"{order_id}|{leg.value}|{status.value}|{filled:.6f}|{reconciliation or ''}"))


def alert_id(kind: str, *parts: str) -> str:
    """Deterministic alert id: firing and resolved records of one condition share it."""
    return str(uuid.uuid5(NAMESPACE, "|".join((kind, *parts))))


def parse_exec_time(text: str, tz: ZoneInfo = TWS_TZ) -> dt.datetime:
    """TWS execution time (``20250106  09:30:05``, maybe followed by a zone name) → aware UTC datetime."""
    parts = text.split()
    if len(parts) >= 3:
        with contextlib.suppress(KeyError, ValueError):
            tz = ZoneInfo(parts[2])
    local = dt.datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S")
    return local.replace(tzinfo=tz).astimezone(dt.UTC)
