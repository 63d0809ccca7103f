"""Whether a plan may be executed, as a pure function of the plan and its run as orchestration recorded it.

Agent0 never writes ``orders.intents.v1``: orchestration is the one writer (ARCHITECTURE, "one road to orders"),
and it submits an approved run's one order itself (``order_id = uuid5(run_id)``), whoever approved it (an operator
through ``approve_run`` or the policy). ``POST /v1/execute`` therefore hands a plan over only when its run is
approved there and the run's plan is this plan with the same terms; every other case is a refusal that says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.agent0.models import ExecuteResponseV1, PlanResponseV1
from api.models import RunDetail
from ibstream import ids
from ibstream.contracts import Plan
from ibstream.contracts.enums import RunState

#: States of a run orchestration approved (manually or by policy): its order is submitted or about to be.
APPROVED_STATES = frozenset({RunState.APPROVED, RunState.SUBMITTED, RunState.COMPLETED})

#: The plan terms an order is made of; a plan whose terms differ from the run's is another order.
_TERMS = ("side", "quantity", "order_type", "limit_price", "stop_price", "stop_loss", "take_profit")


@dataclass(frozen=True)
class Refusal:
    """Why a plan is not executed: a stable code and a message (409 unless ``status`` says otherwise)."""

    code: str
    message: str
    status: int = 409


def term_differences(planned: Plan, recorded: Plan) -> list[str]:
    """The order terms in which Agent0's stored plan differs from the plan on the run's record."""
    return [
        f"{name} {getattr(planned, name)} ≠ {getattr(recorded, name)}"
        for name in _TERMS
        if getattr(planned, name) != getattr(recorded, name)
    ]


def _approver(run: RunDetail) -> str:
    approvals = [change for change in run.history if change.state is RunState.APPROVED]
    return approvals[-1].actor if approvals else run.actor


def verdict(planned: PlanResponseV1, run: RunDetail | None) -> ExecuteResponseV1 | Refusal:
    """Hand the plan to orchestration (the response) or refuse it (why)."""
    if run is None:
        return Refusal("run_unknown", f"orchestration has no run {planned.run_id} for plan {planned.plan_id}")
    if run.state not in APPROVED_STATES:
        hint = " (approve it: POST /v1/runs/{id}/approve)" if run.state is RunState.AWAITING_APPROVAL else ""
        return Refusal("not_approved", f"run {run.run_id} is {run.state.value}, not approved{hint}")
    if run.plan is None or run.plan.plan_id != planned.plan_id:
        recorded = "no plan" if run.plan is None else f"plan {run.plan.plan_id}"
        return Refusal("plan_mismatch", f"run {run.run_id} was approved with {recorded}, not {planned.plan_id}")
    differences = term_differences(planned.plan, run.plan)
    if differences:
        return Refusal("plan_mismatch", f"plan {planned.plan_id} differs from the run's: {'; '.join(differences)}")
    return ExecuteResponseV1(
        plan_id=planned.plan_id,
        run_id=run.run_id,
        order_id=ids.order_id(run.run_id),
        run_state=run.state,
        approval_mode=run.approval_mode,
        approved_by=_approver(run),
    )
