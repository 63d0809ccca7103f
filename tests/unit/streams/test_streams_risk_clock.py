"""The risk agent judges every risk window in market time: a simulated session at 120x is throttled per market
minute, however few wall seconds that is."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from ibstream import risk
from ibstream.contracts import RiskDecision
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from streams.context import AgentContext
from streams.risk.decisions import decide_intents
from tests.unit.ibstream.test_risk import LIMITS, NOW, fresh_quote
from tests.unit.streams.test_streams_agents import RecordingDeadLetters, RecordingEmitter, make_intent


def market_clock(start: datetime, step: timedelta) -> Iterator[datetime]:
    at = start
    while True:
        yield at
        at += step


async def decide(intents: int, step: timedelta) -> list[RiskDecision]:
    emitter = RecordingEmitter()
    context = AgentContext(SingleObjectCodec(SchemaStore()), emitter, RecordingDeadLetters(), "unit.")
    view = risk.RiskView()
    view.apply_quote(fresh_quote(NOW))
    ticks = market_clock(NOW, step)
    # The quote ages with the market; this test is about the throttle alone.
    limits = dataclasses.replace(LIMITS, quote_max_age_seconds=1e9)
    decided: dict[str, str] = {}
    batch = [make_intent(f"o-{i}") for i in range(intents)]
    results = await decide_intents(
        context, batch, view, limits, decided, lambda: next(ticks), [None] * intents, lambda _i, order, decision: None
    )
    assert results == [True] * intents
    return emitter.of(RiskDecision)


@pytest.mark.asyncio
async def test_intents_a_market_minute_apart_are_not_throttled_within_a_wall_second() -> None:
    # One batch decides in milliseconds of wall time: ten intents one market minute apart, limit 3 a minute.
    decisions = await decide(10, timedelta(minutes=1))
    failed = [c.reason for d in decisions for c in d.checks if not c.passed]
    assert [d.approved for d in decisions] == [True] * 10, failed


@pytest.mark.asyncio
async def test_intents_within_a_market_second_are_throttled() -> None:
    decisions = await decide(5, timedelta(seconds=0.2))
    assert [d.approved for d in decisions] == [True, True, True, False, False]
    assert {c.name for d in decisions[3:] for c in d.checks if not c.passed} == {"order_rate"}


@pytest.mark.asyncio
async def test_decided_time_stays_on_the_wall_clock() -> None:
    # The market clock here is a fixed day, not the wall's: the intent→decision latency must stay wall time.
    before = datetime.now(NOW.tzinfo)
    decisions = await decide(1, timedelta(minutes=1))
    assert before <= decisions[0].decided_time <= datetime.now(NOW.tzinfo)
