"""Every signal scored from the bars after it, traded or not; keyed by symbol, one record per signal."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ibstream.contracts.base import DAY_MS, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import OutcomeKind, Side


class SignalOutcome(Record):
    """How one signal would have done: target, stop or expiry, its excursions, R multiple and hypothetical P&L."""

    schema_name: ClassVar[str] = "signal_outcome"

    signal_id: str
    symbol: str
    strategy: str
    side: Side
    confidence: float = Field(ge=0.0, le=1.0)
    outcome: OutcomeKind
    entry: float
    stop: float
    take_profit: float
    exit_price: float
    mfe: float = Field(ge=0.0)
    mae: float = Field(ge=0.0)
    r_multiple: float
    quantity: float = Field(ge=0.0)
    pnl: float
    bars_to_outcome: int = Field(ge=0)
    ambiguous: bool
    signal_time: UtcDatetime
    bar_start: UtcDatetime
    outcome_time: UtcDatetime
    scored_time: UtcDatetime


TOPIC = TopicSpec(
    name="signals.outcomes.v1",
    record=SignalOutcome,
    key=lambda outcome: outcome.symbol,
    partitions=6,
    retention_ms=365 * DAY_MS,
    doc="Every signal scored: hit target / hit stop / expired, MFE, MAE, R, hypothetical P&L.",
)
