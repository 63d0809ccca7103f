"""Agent0's request and response bodies (version ``v1``). Errors are the API's ``ErrorBody`` (``api.errors``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models import ID_PATTERN, SYMBOL_PATTERN
from ibstream.contracts import Plan
from ibstream.contracts.enums import ApprovalMode, RunState, Side


class SignalIn(BaseModel):
    """The signal to plan (the fields of ``signals.v1`` a plan needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    signal_id: str = Field(pattern=ID_PATTERN)
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    strategy: str = Field(pattern=ID_PATTERN)
    side: Side
    confidence: float = Field(ge=0, le=1)
    entry: float = Field(gt=0, lt=1e9)
    stop: float = Field(gt=0, lt=1e9)
    take_profit: float = Field(gt=0, lt=1e9)
    expiry_time: datetime | None = None


class PlanRequestV1(BaseModel):
    """``POST /v1/plan``. ``equity`` is the account's NetLiquidation from the newest ``account.v1`` record, which
    orchestration passes; without it Agent0 sizes by ``IBSTREAM_ACCOUNT_EQUITY`` and logs a warning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal: SignalIn
    #: The entry: a limit at the signal's entry, a market order, or one in the closing auction (MOC, or LOC limited
    #: at the signal's entry).
    entry_type: Literal["LMT", "MKT", "MOC", "LOC"] = "LMT"
    equity: float | None = Field(default=None, gt=0, lt=1e12)


class PlanResponseV1(BaseModel):
    """A plan for one signal; ``plan`` mirrors the ``Plan`` contract."""

    version: Literal["v1"] = "v1"
    plan_id: str
    run_id: str
    signal_id: str
    symbol: str
    plan: Plan


class ExecuteRequestV1(BaseModel):
    """``POST /v1/execute``: execute one plan. Who asks is the token's subject; whether it may go is the approval
    of its run in orchestration, never this request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = Field(pattern=ID_PATTERN)


class ExecuteResponseV1(BaseModel):
    """The plan's run is approved in orchestration, which submits its one order (``order_id = uuid5(run_id)``) on
    ``orders.intents.v1``; Agent0 writes nothing there."""

    version: Literal["v1"] = "v1"
    plan_id: str
    run_id: str
    order_id: str
    run_state: RunState
    approval_mode: ApprovalMode | None
    approved_by: str
