"""Agent0's request and response bodies (version ``v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ibstream.contracts import OrderIntent, Plan
from ibstream.contracts.enums import Side


class SignalIn(BaseModel):
    """The signal to plan (the fields of ``signals.v1`` a plan needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    signal_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    strategy: str
    side: Side
    confidence: float = Field(ge=0, le=1)
    entry: float = Field(gt=0)
    stop: float = Field(gt=0)
    take_profit: float = Field(gt=0)
    expiry_time: datetime | None = None


class PlanRequestV1(BaseModel):
    """``POST /v1/plan``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal: SignalIn
    entry_type: Literal["LMT", "MKT"] = "LMT"


class PlanResponseV1(BaseModel):
    """A plan for one signal; ``plan`` mirrors the ``Plan`` contract."""

    version: Literal["v1"] = "v1"
    plan_id: str
    run_id: str
    signal_id: str
    symbol: str
    plan: Plan


class ExecuteRequestV1(BaseModel):
    """``POST /v1/execute``: the approval of one plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = Field(min_length=1)
    approved: bool
    approved_by: str = Field(min_length=1)


class ExecuteResponseV1(BaseModel):
    version: Literal["v1"] = "v1"
    plan_id: str
    order_id: str
    intent: OrderIntent


class ErrorV1(BaseModel):
    """Every error body: a machine-readable code and a message."""

    version: Literal["v1"] = "v1"
    code: Literal["bad_request", "unknown_plan", "already_executed", "not_approved", "dependency_down"]
    message: str
