"""Risk's verdict on modify_order commands: the agent under ``test_context()`` and the pure judgement."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibstream.config import load_settings
from ibstream.contracts import ControlCommand, RiskDecision, control
from ibstream.contracts.enums import ControlCommandKind
from ibstream.contracts.order_terms import OrderTerms, terms_digest
from ibstream.order_modifications import command_of, is_modification, terms_parameters
from streams.app import build_app
from tests.unit.ibstream.test_risk import NOW, quote
from tests.unit.streams.test_streams_agents import CODEC, RecordingDeadLetters, RecordingEmitter, make_intent


def modify(command_id: str, order_id: str, changes: list[str], **terms: object) -> ControlCommand:
    new = OrderTerms(**make_intent(order_id, **terms).terms())
    return ControlCommand(
        command_id=command_id,
        command=ControlCommandKind.MODIFY_ORDER,
        target=order_id,
        reason="tighter",
        actor="tom",
        parameters=terms_parameters(new, changes),
        issued_time=NOW,
    )


@pytest.mark.asyncio
async def test_each_modify_order_gets_a_decision_on_its_new_terms_named_after_the_command(tmp_path: Path) -> None:
    emitter, letters = RecordingEmitter(), RecordingDeadLetters()
    settings = load_settings(kafka_topic_prefix="unit.", risk_quote_max_age_seconds=1e9)
    built = build_app(
        settings, enabled=("risk",), data_dir=tmp_path, emitter=emitter, dead_letters=letters, with_feed=False
    )
    assert built.view is not None
    built.view.apply_quote(quote())
    built.view.ready.set()
    built.app.finalize()
    built.app.flow_control.resume()
    topic = "unit." + control.TOPIC.name
    fine = modify("c-fine", "o1", ["limit_price"], limit_price=100.5)
    wide = modify("c-wide", "o2", ["stop_loss"], stop_loss=50.0)  # a stop too far from the entry
    other = ControlCommand(
        command_id="k1",
        command=ControlCommandKind.KILL_SWITCH_OFF,
        target="global",
        reason="r",
        actor="a",
        parameters={},
        issued_time=NOW,
    )
    async with built.agents["risk-modifications"].test_context() as agent:
        for command in (fine, other, wide):
            await agent.put(key=command.target.encode(), value=CODEC.encode(topic, command))
        await agent.put(key=b"junk", value=b"not avro")

    decisions = emitter.of(RiskDecision)
    assert [(d.decision_id, d.order_id, d.approved) for d in decisions] == [
        ("modify:c-fine", "o1", True),
        ("modify:c-wide", "o2", False),
    ]
    first = decisions[0]
    assert is_modification(first) and command_of(first) == "c-fine"
    assert first.terms_digest == terms_digest(make_intent("o1", limit_price=100.5))
    note = next(c for c in first.checks if c.name == "modification")
    assert note.passed and note.reason == "modify_order c-fine by tom: limit_price"
    assert [c.name for c in decisions[1].checks if not c.passed] == ["stop_distance"]
    assert letters.routed == []  # an unreadable control record is the view feed's (it halts its scope)


def test_terms_that_do_not_read_back_are_a_rejection_not_an_error() -> None:
    from ibstream import risk
    from streams.risk.modifications import judge_modification

    broken = modify("c-bad", "o1", ["quantity"])
    broken.parameters["quantity"] = "-3"
    decision = judge_modification(broken, risk.RiskView(), risk.RiskLimits.from_settings(load_settings()), NOW, NOW)
    assert decision is not None and not decision.approved and decision.decision_id == "modify:c-bad"
    assert decision.checks[0].name == "modification" and "terms unreadable" in decision.checks[0].reason
