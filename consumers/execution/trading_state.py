"""The kill switch: per account or symbol, engaged and released by ``control.v1`` commands.

``control.v1`` is compacted and read from its beginning at startup, so a kill switch engaged while the executor was
down holds. Engaged, it cancels the working *entries* we own in its scope (a parent's cancel takes its untriggered
children with it) and keeps the protective legs (stop loss, take profit) of entries that have filled: a kill switch
stops new exposure, it must not leave an open position without its stop. Routed orders in its scope are rejected
locally; it is applied again after every reconciliation.

A partly filled entry is the case it cannot fully protect: cancelling the remainder cancels its children too (at IB as
at ibsim), so the filled part is left without a stop; the kill switch still cancels the remainder (new exposure must
stop) and raises a critical alert naming the order, so an operator flattens or protects that position.
"""

from __future__ import annotations

import logging

from consumers.execution.context import Context
from consumers.execution.reporting import Reporter
from consumers.execution.state import LegState
from ibstream.contracts import ControlCommand
from ibstream.contracts.enums import ControlCommandKind, OrderLeg, Severity

log = logging.getLogger(__name__)

#: Kill-switch targets that stop every symbol (the same set the risk gate honours); the account id does too.
GLOBAL_TARGETS = frozenset({"*", "all", "global", "account"})


class KillSwitch:
    """The kill switches in force, by target."""

    def __init__(self, ctx: Context, reporter: Reporter) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.switches: dict[str, ControlCommand] = {}

    def on_command(self, command: ControlCommand, *, trading: bool) -> None:
        """Apply a control command; cancel in scope at once when ``trading`` (else after the next reconciliation)."""
        if command.command not in (ControlCommandKind.KILL_SWITCH_ON, ControlCommandKind.KILL_SWITCH_OFF):
            return
        target = command.target.strip()
        target = target.lower() if target.lower() in GLOBAL_TARGETS else target
        if command.command is ControlCommandKind.KILL_SWITCH_ON:
            self.switches[target] = command
            log.warning("kill switch on", extra={"target": target, "actor": command.actor, "reason": command.reason})
            self.reporter.alert(
                "kill_switch",
                Severity.CRITICAL,
                f"kill switch on for {target} by {command.actor}: {command.reason}; execution cancels and holds",
                {"target": target, "actor": command.actor, "command_id": command.command_id},
                key=(target,),
            )
            if trading:
                self.cancel_scope(target)
        elif self.switches.pop(target, None) is not None:
            log.warning("kill switch off", extra={"target": target, "actor": command.actor})
            self.reporter.resolve("kill_switch", (target,), f"kill switch off for {target}")

    def scope(self, symbol: str) -> str | None:
        """The kill switch that stops ``symbol``, if any."""
        for target in self.switches:
            if target in GLOBAL_TARGETS or target == symbol or target == self.ctx.account:
                return target
        return None

    def cancel_all(self) -> None:
        for target in list(self.switches):
            self.cancel_scope(target)

    def cancel_scope(self, target: str) -> None:
        """Cancel the working entries we own in the kill switch's scope; keep the protective legs of filled ones."""
        everything = target in GLOBAL_TARGETS or target == self.ctx.account
        cancelled = kept = 0
        for order_id, order in self.ctx.book.orders.items():
            if not everything and order.symbol != target:
                continue
            parent = order.legs.get(OrderLeg.PARENT)
            for leg in order.open_legs():
                if leg.leg is not OrderLeg.PARENT and not stray_child(parent):
                    kept += 1  # a protective leg: of a filled entry (kept), or of a working one (goes with it)
                    continue
                if leg.leg is OrderLeg.PARENT and leg.filled > 0 and len(order.legs) > 1:
                    self._unprotected(target, order_id, order.symbol, leg.filled)
                if leg.ib_order_id is not None and self.ctx.session.cancel_order(leg.ib_order_id):
                    cancelled += 1
        log.warning(
            "kill switch: cancel requested",
            extra={"target": target, "cancel_requests": cancelled, "protective_legs_kept": kept},
        )

    def _unprotected(self, target: str, order_id: str, symbol: str, filled: float) -> None:
        self.reporter.alert(
            "kill_switch_unprotected",
            Severity.CRITICAL,
            f"kill switch on {target}: entry {order_id} of {symbol} was partly filled ({filled:g}); cancelling its "
            "remainder cancels its stop and target too: flatten or protect this position",
            {"target": target, "order_id": order_id, "symbol": symbol, "filled": f"{filled:g}"},
            key=(order_id,),
        )


def stray_child(parent: LegState | None) -> bool:
    """Whether a child leg protects nothing: its entry never existed for us, or ended without filling anything.

    A child of a working entry goes with the entry's cancel; a child of a (partly) filled entry protects a position.
    """
    return parent is None or (not parent.is_open and parent.filled <= 0)
