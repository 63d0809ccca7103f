"""The strategy instances a signals worker runs, which of them are on, and the isolation of a failing one.

* What runs: the configured instances (``ibstream.strategies.instances``) switched on by their newest control.v1
  command (``ibstream.strategies.switches``, folded by ``streams.signals.control_feed`` from a thread), else by
  their configuration.
* Isolation: each instance is evaluated through a guard. A strategy that raises, or proposes something a signal
  cannot carry (``check_proposal``), yields nothing for that bar, and its instance is disabled in this worker with
  a ``strategy_failed`` alert on ops.alerts.v1; every other instance goes on. The fault holds until an operator
  enables the instance again (a command newer than the one in force when it failed), which resolves the alert; a
  restarted worker starts without faults (the code may have been fixed) and fails again if it was not.
* Window sizes: per timeframe the longest warm-up of the instances that declared it (the 5-second window keeps at
  least ``WINDOW`` bars, as it did before instances).

Thread safety: the control feed's thread calls ``apply``; the agent calls the rest from the event loop; one lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from ibstream.alerting import AlertBook
from ibstream.contracts import Alert, ControlCommand, utc_now
from ibstream.contracts.enums import Severity
from ibstream.strategies.instances import StrategyInstance
from ibstream.strategies.lifecycle import WINDOW
from ibstream.strategies.sdk import TIMEFRAMES, Bars, Proposal, check_proposal
from ibstream.strategies.switches import StrategySwitches, Switch

log = logging.getLogger(__name__)

#: The alert kind of an instance disabled because its strategy failed.
STRATEGY_FAILED = "strategy_failed"

Guarded = Callable[[Bars], Proposal | None]


class StrategyRuntime:
    """The instances, their switches and faults; hands the lifecycle the evaluators of one bar."""

    def __init__(self, instances: Sequence[StrategyInstance], book: AlertBook | None = None) -> None:
        self.instances = {instance.name: instance for instance in instances}
        self.switches = StrategySwitches()
        self._faults: dict[str, int] = {}  # instance → the sequence of its switch when it failed
        #: Counts the changes of the faults (an instance failing or enabled again): a caller caching ``evaluators``
        #: rebuilds them when it moved, without copying the faults on every bar.
        self.fault_generation = 0
        self._book = book if book is not None else AlertBook("streams")
        self._alerts: list[Alert] = []
        self._lock = threading.Lock()
        #: Set once the switches are folded from control.v1 (no feed: at once); bars wait for it (fail closed).
        self.ready = threading.Event()

    def timeframes(self) -> list[str]:
        """Every timeframe a configured instance declared, shortest first (the bar topics to read)."""
        declared = {tf for instance in self.instances.values() for tf in instance.strategy.timeframes}
        return [tf for tf in TIMEFRAMES if tf in declared]

    def window(self, timeframe: str) -> int:
        """Bars of ``timeframe`` to keep per symbol: the longest warm-up of the instances declaring it."""
        warmups = [i.strategy.warmup for i in self.instances.values() if timeframe in i.strategy.timeframes]
        return max([WINDOW if timeframe == "5s" else 1, *warmups])

    def enabled(self, name: str) -> bool:
        """Whether the instance runs now: switched on and not failed since."""
        instance = self.instances.get(name)
        if instance is None:
            return False
        with self._lock:
            return name not in self._faults and self.switches.enabled(name, instance.enabled)

    def faulted(self) -> set[str]:
        with self._lock:
            return set(self._faults)

    def evaluators(self, symbol: str, timeframe: str) -> dict[str, Guarded]:
        """The guarded evaluators of the enabled instances trading ``symbol`` whose first timeframe is
        ``timeframe``, by instance name."""
        return {
            name: self._guard(instance)
            for name, instance in self.instances.items()
            if instance.timeframe == timeframe and instance.covers(symbol) and self.enabled(name)
        }

    def _guard(self, instance: StrategyInstance) -> Guarded:
        warmup = instance.strategy.warmup  # fixed by the instance's frozen params: read once, not on every bar

        def evaluate(bars: Bars) -> Proposal | None:
            if len(bars) < warmup:
                return None
            try:
                proposal = instance.strategy.on_bar(bars)
                return None if proposal is None else check_proposal(proposal)
            except Exception as error:  # isolation: whatever a strategy does wrong stops only its instance
                self.fail(instance.name, bars.symbol, error)
                return None

        return evaluate

    def fail(self, name: str, symbol: str, error: BaseException) -> None:
        """Disable the instance in this worker and raise its alert."""
        detail = f"{type(error).__name__}: {error}"
        log.error(
            "strategy failed: instance disabled",
            exc_info=error,
            extra={"instance": name, "symbol": symbol, "error": detail},
        )
        instance = self.instances[name]
        with self._lock:
            self._faults[name] = self.switches.sequence(name)
            self.fault_generation += 1
            alert = self._book.fire(
                STRATEGY_FAILED,
                name,
                Severity.WARNING,
                f"strategy instance {name} ({instance.strategy_name} {instance.version}) failed on {symbol} and is "
                f"disabled until it is enabled again: {detail}",
                symbol=symbol,
                details={"instance": name, "strategy": instance.strategy_name, "version": instance.version},
            )
            if alert is not None:
                self._alerts.append(alert)

    def apply(self, command: ControlCommand) -> Switch | None:
        """Fold a control.v1 command; an enable newer than an instance's failure clears it (and its alert)."""
        with self._lock:
            switch = self.switches.apply(command)
            if switch is not None:
                self._clear_fault(switch)
        if switch is not None:
            log.warning(
                "strategy switched",
                extra={"instance": switch.instance, "enabled": switch.enabled, "actor": switch.actor},
            )
        return switch

    def apply_undecodable(self, key: bytes | str | None, error: str, at: datetime | None = None) -> Switch | None:
        with self._lock:
            return self.switches.apply_undecodable(key, error, at or utc_now())

    def _clear_fault(self, switch: Switch) -> None:
        failed_at = self._faults.get(switch.instance)
        if failed_at is None or not switch.enabled or switch.sequence <= failed_at:
            return
        del self._faults[switch.instance]
        self.fault_generation += 1
        resolved = self._book.resolve(
            STRATEGY_FAILED, switch.instance, f"strategy instance {switch.instance} enabled again by {switch.actor}"
        )
        if resolved is not None:
            self._alerts.append(resolved)

    def drain_alerts(self) -> list[Alert]:
        """The alert records raised or resolved since the last call (the agent emits them)."""
        with self._lock:
            alerts, self._alerts = self._alerts, []
        return alerts
