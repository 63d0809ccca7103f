"""Risk's verdict on a ``modify_order`` command (issue #20 item 5; the protocol: ``ibstream.order_modifications``).

The command carries the order's complete new terms; they are judged by the same checks as any order
(``ibstream.risk.decide``), and the decision is written for the same order id with the decision id
``modify:<command id>`` and the digest of the new terms, plus a passed ``modification`` check naming the command and
what changed. Execution applies the modification only when that approval arrives with a matching digest.

Judged conservatively: the order's own working quantity still counts in the view while its new terms are judged, so
a modification that fits the limits only once the original's exposure is released is refused (fail closed). Terms
that do not read back as complete terms are a rejection (the ``modification`` check fails), not an error.
No Faust here: the agent (``streams.risk.agents.modification_agent``) decodes and emits.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import ValidationError

from ibstream import risk
from ibstream.contracts import ControlCommand, OrderIntent, RiskCheck, RiskDecision
from ibstream.contracts.enums import ControlCommandKind
from ibstream.contracts.order_terms import terms_digest
from ibstream.order_modifications import CHANGES, modification_decision_id, terms_from_parameters

log = logging.getLogger(__name__)


def modified_intent(command: ControlCommand) -> OrderIntent:
    """The order as the command would leave it, to be judged like an intent (raises ValidationError)."""
    terms = terms_from_parameters(command.parameters)
    return OrderIntent(
        order_id=command.target,
        **terms.terms(),
        requested_by=f"modify_order:{command.actor}",
        created_time=command.issued_time,
    )


def judge_modification(
    command: ControlCommand, view: risk.RiskView, limits: risk.RiskLimits, now: datetime, wall: datetime
) -> RiskDecision | None:
    """Risk's decision on a ``modify_order`` command; None for any other command."""
    if command.command is not ControlCommandKind.MODIFY_ORDER:
        return None
    changes = command.parameters.get(CHANGES, "")
    try:
        intent = modified_intent(command)
    except ValidationError as error:
        check = RiskCheck(
            name="modification", passed=False, reason=f"modify_order {command.command_id}: terms unreadable: {error}"
        )
        return RiskDecision(
            decision_id=modification_decision_id(command.command_id),
            order_id=command.target,
            symbol=command.parameters.get("symbol", ""),
            approved=False,
            checks=[check],
            intent_time=command.issued_time,
            decided_time=wall,
        )
    decision = risk.decide(intent, view, limits, now, wall=wall)
    note = RiskCheck(
        name="modification",
        passed=True,
        reason=f"modify_order {command.command_id} by {command.actor}: {changes or 'no change named'}",
    )
    return decision.model_copy(
        update={
            "decision_id": modification_decision_id(command.command_id),
            "checks": [*decision.checks, note],
            "terms_digest": terms_digest(intent),
        }
    )
