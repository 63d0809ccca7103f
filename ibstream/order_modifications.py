"""Modifying a working order (issue #20 item 5): how the ``modify_order`` command, risk's decision on it and
execution agree on the new terms, without a schema change.

* The command (control.v1, target: the order id) carries the order's **complete new terms** in ``parameters``, each
  term that has a value as a string (``terms_parameters``), plus ``changes`` (the names the operator changed, for
  people). The API builds them: the order's current terms (the intent's, or those of the latest modification risk
  approved) with the requested changes applied.
* Risk judges those terms as an order (``ibstream.risk.decide``) and writes a decision for the **same order id**
  whose ``decision_id`` is ``modification_decision_id(command_id)`` (``modify:<command id>``): that names the command
  it judged, and tells every reader it is not the order's original decision (``is_modification``). Its
  ``terms_digest`` is the digest of the new terms, as for any decision.
* Execution applies the command only when that approving decision arrives with the digest of the command's terms
  (``terms_from_parameters``): IB modifies by placeOrder with the same order ids and new terms.

Readers of risk decisions that judge the order itself (its risk verdict in the API, orchestration's run) skip
modification decisions: a rejected modification leaves the order as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from ibstream.contracts import RiskDecision
from ibstream.contracts.order_terms import TERM_FIELDS, OrderTerms

#: ``decision_id`` prefix of a decision on a modification.
MODIFICATION_PREFIX = "modify:"
#: Parameter of a ``modify_order`` command listing the terms the operator changed (comma-separated).
CHANGES = "changes"
#: The terms an operator may change: prices and the quantity (never the symbol, side, type or bracket shape).
MODIFIABLE = ("quantity", "limit_price", "stop_price", "stop_loss", "take_profit")


def modification_decision_id(command_id: str) -> str:
    """The decision id of risk's verdict on one ``modify_order`` command."""
    return MODIFICATION_PREFIX + command_id


def is_modification(decision: RiskDecision) -> bool:
    """Whether a decision judges a modification rather than the order as first requested."""
    return decision.decision_id.startswith(MODIFICATION_PREFIX)


def command_of(decision: RiskDecision) -> str | None:
    """The ``modify_order`` command id a modification decision judged; None for an order's own decision."""
    return decision.decision_id[len(MODIFICATION_PREFIX) :] if is_modification(decision) else None


def terms_parameters(terms: OrderTerms, changes: list[str]) -> dict[str, str]:
    """A command's parameters for complete terms: every term with a value, as text (enums by value, numbers by
    ``repr`` so they read back exactly), and the changed names."""
    parameters: dict[str, str] = {}
    for name in TERM_FIELDS:
        value = getattr(terms, name)
        if value is None:
            continue
        parameters[name] = (
            value.value if isinstance(value, Enum) else repr(value) if isinstance(value, float) else str(value)
        )
    parameters[CHANGES] = ",".join(changes)
    return parameters


def terms_from_parameters(parameters: Mapping[str, str]) -> OrderTerms:
    """The complete terms a ``modify_order`` command carries (pydantic validates and converts each); raises
    ``pydantic.ValidationError`` when they are not complete terms."""
    return OrderTerms.model_validate({name: parameters[name] for name in TERM_FIELDS if name in parameters})
