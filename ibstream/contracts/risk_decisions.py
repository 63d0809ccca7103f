"""Risk decisions with every check, keyed by order_id."""

from __future__ import annotations

from typing import ClassVar

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime


class RiskCheck(Record):
    """One pre-trade check's verdict."""

    schema_name: ClassVar[str] = "risk_decision.RiskCheck"

    name: str
    value: float | None = None
    limit: float | None = None
    passed: bool
    reason: str


class RiskDecision(Record):
    """The risk gate's verdict on one order intent, with every check."""

    schema_name: ClassVar[str] = "risk_decision"

    decision_id: str
    order_id: str
    run_id: str | None = None
    symbol: str
    approved: bool
    checks: list[RiskCheck]
    intent_time: UtcDatetime
    decided_time: UtcDatetime
    #: ``order_terms.terms_digest`` of the terms approved; execution places a routed order only when they match.
    terms_digest: str | None = None


TOPIC = TopicSpec(
    name="risk.decisions.v1",
    record=RiskDecision,
    key=lambda decision: decision.order_id,
    partitions=3,
    retention_ms=FOREVER,
    doc="One decision per order intent; no order without one.",
)
