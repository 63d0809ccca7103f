"""Trading states and the kill switch: per account or symbol, set by ``control.v1`` commands.

The states are folded by ``ibstream.trading_states`` exactly as risk folds them: per scope the command with the
highest sequence is in force, a stale one (a replayed old ``kill_switch_off``) is ignored, and a control record that
does not decode halts its scope (alert ``control_undecodable``) until a newer command for it. A halted scope
(by the kill switch, a ``trading_state`` command or an unreadable record) refuses routed orders locally; only the
kill switch also cancels working entries, as below. ``reducing`` is risk's to enforce (it knows the positions).

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
from ibstream.contracts import ControlCommand, utc_now
from ibstream.contracts.enums import OrderLeg, Severity, TradingState
from ibstream.trading_states import ACCOUNT_TARGETS, UNDECODABLE, TradingStates, scope_of, state_set_by

log = logging.getLogger(__name__)

#: Kill-switch targets that stop every symbol (the same set the risk gate honours); the account id does too.
GLOBAL_TARGETS = ACCOUNT_TARGETS


class KillSwitch:
    """The trading states in force (``ibstream.trading_states``, as risk folds them) and the kill switches among
    them, by scope."""

    def __init__(self, ctx: Context, reporter: Reporter) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.states = TradingStates()
        # The kill-switch command in force per scope ("account" or a symbol).
        self.switches: dict[str, ControlCommand] = {}

    def on_command(self, command: ControlCommand, *, trading: bool) -> None:
        """Apply a control command; cancel in scope at once when ``trading`` (else after the next reconciliation).

        A command at or below the sequence in force in its scope is stale (a replay, a late duplicate): ignored.
        """
        self.states.account = self.ctx.account
        before = self.states.scopes.get(scope_of(command.target, self.ctx.account))
        changed = self.states.apply(command)
        if changed is None:
            if state_set_by(command) is not None and before is not None and command.command_id != before.command_id:
                log.warning(
                    "stale control command ignored",
                    extra={"command_id": command.command_id, "target": command.target, "in_force": before.command_id},
                )
            return
        target = changed.scope
        if before is not None and before.source == UNDECODABLE:
            self.reporter.resolve("control_undecodable", (target,), f"a newer command for {target} was read")
        if changed.kill_switch:
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
            return
        log.warning("trading state", extra={"target": target, "state": changed.state.value, "actor": command.actor})
        if self.switches.pop(target, None) is not None:
            log.warning("kill switch off", extra={"target": target, "actor": command.actor})
            self.reporter.resolve("kill_switch", (target,), f"kill switch off for {target}")

    def on_undecodable(self, key: bytes | None, error: str) -> None:
        """Fail closed: a control record that does not decode halts its scope until a newer command for it."""
        self.states.account = self.ctx.account
        halt = self.states.apply_undecodable(key, error, utc_now())
        self.switches.pop(halt.scope, None)
        log.error("undecodable control record halts trading", extra={"scope": halt.scope, "error": error})
        self.reporter.alert(
            "control_undecodable",
            Severity.CRITICAL,
            f"an unreadable control record halts {halt.scope}: execution places nothing there until a newer "
            f"command for it ({error})",
            {"target": halt.scope, "error": error[:200]},
            key=(halt.scope,),
        )

    def scope(self, symbol: str) -> str | None:
        """The kill switch that stops ``symbol``, if any."""
        for target in self.switches:
            if target in GLOBAL_TARGETS or target == symbol or target == self.ctx.account:
                return target
        return None

    def refusal(self, symbol: str) -> str | None:
        """Why a routed order for ``symbol`` may not be placed now (its scope is halted), None if it may."""
        scope = self.scope(symbol)
        if scope is not None:
            return f"kill switch on ({scope}): {self.switches[scope].reason}"
        state = self.states.for_symbol(symbol)
        if state is not None and state.state is TradingState.HALTED:
            return f"trading state {state.describe()}"
        return None

    def cancel_all(self) -> None:
        for target in list(self.switches):
            self.cancel_scope(target)

    def cancel_scope(self, target: str) -> None:
        """Cancel the working entries we own in the kill switch's scope; keep the protective legs of filled ones."""
        everything = target in GLOBAL_TARGETS or target == self.ctx.account
        cancelled = kept = 0
        for order_id, order in self.ctx.book.orders.items():
            if (not everything and order.symbol != target) or order_id in self.ctx.flatten_orders:
                continue  # out of scope, or a flatten: it closes a position, the kill switch lets it work
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
