"""Avro enums shared by several contracts. Values equal the schema's symbols (a test proves it)."""

from __future__ import annotations

from enum import StrEnum


class MarketDataSource(StrEnum):
    LIVE = "live"
    DELAYED = "delayed"
    BACKFILL = "backfill"
    REPLAY = "replay"
    SIM = "sim"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MKT = "MKT"
    LMT = "LMT"
    STP = "STP"
    STP_LMT = "STP_LMT"
    #: Market on close, limit on close: trade only in the closing auction, at the closing price.
    MOC = "MOC"
    LOC = "LOC"


class AdaptivePriority(StrEnum):
    """IB's Adaptive algo priority (algoParams ``adaptivePriority``: ``Urgent``, ``Normal``, ``Patient``)."""

    URGENT = "URGENT"
    NORMAL = "NORMAL"
    PATIENT = "PATIENT"


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"


class GapState(StrEnum):
    OPEN = "open"
    BACKFILLING = "backfilling"
    BACKFILLED = "backfilled"
    UNRECOVERABLE = "unrecoverable"


class SignalStatus(StrEnum):
    NEW = "new"
    PLANNED = "planned"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    ORDERED = "ordered"
    FILLED = "filled"
    CLOSED = "closed"


class RunState(StrEnum):
    TRIGGERED = "triggered"
    PLANNING = "planning"
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"


class ApprovalMode(StrEnum):
    MANUAL = "manual"
    POLICY = "policy"


class OrderStatus(StrEnum):
    PENDING_SUBMIT = "pending_submit"
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    ERROR = "error"


class OrderLeg(StrEnum):
    PARENT = "parent"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


class ExecutionSource(StrEnum):
    LIVE = "live"
    RECONCILIATION = "reconciliation"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class ControlCommandKind(StrEnum):
    KILL_SWITCH_ON = "kill_switch_on"
    KILL_SWITCH_OFF = "kill_switch_off"
    APPROVE_RUN = "approve_run"
    REJECT_RUN = "reject_run"
    TRIGGER_RUN = "trigger_run"
    TRADING_STATE = "trading_state"
    # Operator commands on positions and orders (issue #20): flatten a scope; cancel one order, every order in a
    # scope, or modify a working order's price or quantity (re-judged by risk).
    FLATTEN = "flatten"
    CANCEL_ORDER = "cancel_order"
    CANCEL_ALL = "cancel_all"
    MODIFY_ORDER = "modify_order"


class TradingState(StrEnum):
    """What a scope (the account or one symbol) may trade: everything, only position-reducing intents, nothing."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class OutcomeKind(StrEnum):
    """How a scored signal ended (``signals.outcomes.v1``)."""

    HIT_TARGET = "hit_target"
    HIT_STOP = "hit_stop"
    EXPIRED = "expired"
