"""The decision check: a routed order is placed only after execution has seen risk's approved decision for its order
id, with the same terms (one road to orders: a record written straight to ``orders.routed.v1`` places nothing).

Risk stamps every decision with ``order_terms.terms_digest`` of the terms it judged; here the same function runs
over the routed order's terms (``check_order``, pure). Outcomes:

* PLACE: an approved decision for the order id, same decision id, same terms digest;
* WAIT: no approved decision seen yet. Decisions (``risk.decisions.v1``, 3 partitions) and routed orders are
  different topics read by different consumers, so the routed order can arrive first even though risk had its
  decision acknowledged before routing it. The order is held at the head of the routed partition (nothing is
  consumed past it) for up to ``execution.decision_wait_seconds`` of our clock, while the decisions reader catches up;
* REFUSE: waited in vain, or the decision says otherwise (other decision id, other terms, no digest — a decision
  written before digests existed is not trusted). The routed record goes to ``orders.routed.v1.dlq`` with the
  reason (error kind ``unapproved``), the critical alert ``unapproved_order`` is raised for the order and the counter
  ``ibstream_execution_unapproved_orders{reason}`` counts it; nothing is placed and nothing enters the book. The DLQ
  record leaves in the outbox's transaction and the offset is committed after it, like a placement's events.

Restarts: nothing is persisted. The decisions topic is read back from its beginning in the pass that rebuilds the book
(``intake``), then followed; once the book is complete, the approvals of orders it holds are dropped. A routed order
re-delivered after a crash meets its decision again; an order the book already holds (and the journal does not hold
in doubt) passes unchecked, since placement skips it as a duplicate, so the crash-safety protocol (``placement``) is
unchanged. Only approved decisions are kept, and each is dropped once its order has been handled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from consumers.execution.context import Context
from consumers.execution.exceptions import UnapprovedOrderError
from consumers.execution.outbox import COMPONENT, Outbox
from consumers.execution.reporting import Reporter
from ibstream.contracts import RiskDecision, RoutedOrder, risk_decisions
from ibstream.contracts.enums import Severity
from ibstream.contracts.order_terms import terms_digest
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.kafka.records import KafkaMessage, decode_message
from ibstream.order_modifications import is_modification
from ibstream.telemetry import meter, record_error

log = logging.getLogger(__name__)

#: The DLQ error kind of a routed order refused here.
DLQ_KIND = "unapproved"


class Verdict(StrEnum):
    PLACE = "place"
    WAIT = "wait"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Approval:
    """What execution keeps of one approved decision."""

    decision_id: str
    terms_digest: str | None


@dataclass(frozen=True)
class Check:
    """The verdict on one routed order; for REFUSE, why (``reason``: a metric label, ``detail``: for people)."""

    verdict: Verdict
    reason: str = ""
    detail: str = ""


def approval_of(decision: RiskDecision) -> Approval | None:
    """What to keep of a decision: only an approval can let an order through."""
    return Approval(decision.decision_id, decision.terms_digest) if decision.approved else None


def check_order(order: RoutedOrder, approval: Approval | None, waited_seconds: float, wait_seconds: float) -> Check:
    """Whether ``order`` may be placed given the approval seen for its order id (None: none seen yet) and how long it
    has waited for one."""
    if approval is None:
        if waited_seconds < wait_seconds:
            return Check(Verdict.WAIT)
        return Check(
            Verdict.REFUSE,
            "no_decision",
            f"no approved risk decision for order {order.order_id} seen within {wait_seconds:g}s",
        )
    if approval.decision_id != order.decision_id:
        return Check(
            Verdict.REFUSE,
            "decision_mismatch",
            f"routed order names decision {order.decision_id}, risk approved the order in {approval.decision_id}",
        )
    if approval.terms_digest is None:
        return Check(
            Verdict.REFUSE,
            "no_terms_digest",
            f"risk decision {approval.decision_id} carries no terms digest: its approved terms cannot be checked",
        )
    digest = terms_digest(order)
    if digest != approval.terms_digest:
        return Check(
            Verdict.REFUSE,
            "terms_mismatch",
            f"routed order terms differ from those risk approved in {approval.decision_id} "
            f"(digest {digest}, approved {approval.terms_digest})",
        )
    return Check(Verdict.PLACE)


class DecisionGate:
    """The approved decisions execution has seen, and the routed orders waiting for theirs."""

    def __init__(self, ctx: Context, reporter: Reporter, outbox: Outbox, codec: Codec) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.outbox = outbox
        self.codec = codec
        self.approvals: dict[str, Approval] = {}
        #: Where risk's decisions on modify_order commands go (``operator_orders.OperatorOrders.on_decision``).
        self.modifications: Callable[[RiskDecision], None] = lambda decision: None
        #: order id → when (our clock) its routed order first waited for a decision.
        self.waiting_since: dict[str, float] = {}
        self.m_refused = meter("consumers.execution").create_counter(
            "ibstream_execution_unapproved_orders",
            description="Routed orders refused unplaced: no approved risk decision with the same terms",
        )

    def on_message(self, message: KafkaMessage) -> None:
        """One record of ``risk.decisions.v1`` (read back at startup, then followed)."""
        try:
            decision = decode_message(self.codec, risk_decisions.TOPIC, message)
        except DecodeError as error:
            # Risk dead-letters nothing it writes; an undecodable decision approves nothing (its order, if routed,
            # waits and is refused).
            log.error("undecodable risk decision ignored", extra={"error": str(error)})
            record_error("decode", COMPONENT)
            return
        self.on_decision(decision)

    def on_decision(self, decision: RiskDecision) -> None:
        if is_modification(decision):
            self.modifications(decision)  # a modify_order's verdict, not the order's own (operator_orders)
            return
        if self.handled(decision.order_id):
            return  # read back at startup for an order placed or refused long ago
        approval = approval_of(decision)
        if approval is None:
            self.approvals.pop(decision.order_id, None)
        else:
            self.approvals[decision.order_id] = approval

    def forget_handled(self) -> None:
        """After the rebuild (the book complete): drop the approvals of orders handled before the restart."""
        read = len(self.approvals)
        for order_id in [order_id for order_id in self.approvals if self.handled(order_id)]:
            del self.approvals[order_id]
        log.info(
            "risk approvals read back", extra={"approvals": read, "kept_for_unhandled_orders": len(self.approvals)}
        )

    def handled(self, order_id: str) -> bool:
        """The book holds the order and it is not in doubt: placement skips its re-delivery, no check needed."""
        return order_id in self.ctx.book.orders and order_id not in self.ctx.journal.in_doubt

    def screen(self, order: RoutedOrder, message: KafkaMessage) -> Verdict:
        """The verdict on a routed order; a refusal is dead-lettered, alerted and counted here."""
        if self.handled(order.order_id):
            return Verdict.PLACE
        now = self.ctx.wall()
        since = self.waiting_since.setdefault(order.order_id, now)
        wait_seconds = self.ctx.settings.execution.decision_wait_seconds
        check = check_order(order, self.approvals.get(order.order_id), now - since, wait_seconds)
        if check.verdict is Verdict.WAIT:
            if since == now:
                log.info("routed order waits for its risk decision", extra={"wait_seconds": wait_seconds})
            return check.verdict
        if check.verdict is Verdict.REFUSE:
            self.refuse(order, message, check)
        return check.verdict

    def refuse(self, order: RoutedOrder, message: KafkaMessage, check: Check) -> None:
        log.error("routed order refused unplaced: %s", check.detail, extra={"reason": check.reason})
        self.outbox.dead_letter(message, UnapprovedOrderError(check.detail), DLQ_KIND)
        self.m_refused.add(1, {"reason": check.reason})
        self.reporter.alert(
            "unapproved_order",
            Severity.CRITICAL,
            f"routed order {order.order_id} ({order.side.value} {order.quantity:g} {order.symbol}) not placed: "
            f"{check.detail}",
            {"reason": check.reason, "decision_id": order.decision_id},
            order_id=order.order_id,
            symbol=order.symbol,
            key=(order.order_id,),
        )
        self.done(order.order_id)

    def done(self, order_id: str) -> None:
        """The order is handled (placed, adopted, rejected or refused): its decision is needed no more."""
        self.approvals.pop(order_id, None)
        self.waiting_since.pop(order_id, None)
