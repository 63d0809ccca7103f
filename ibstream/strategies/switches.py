"""Enabling and disabling strategy instances at runtime through ``control.v1``: one pure fold the signals worker
and the API both use, so they agree on what runs.

Wire format: a ``trading_state`` command whose target is ``strategy:<instance>``: state ``active`` enables the
instance, ``halted`` (or ``reducing``: no new signals either) disables it. Why not new command kinds: the
``ControlCommandKind`` enum of control.v1 has no default, so a reader from before the new symbols would fail to
decode such a record, and every control reader fails closed on an unreadable record by halting the scope its key
names (``ibstream.trading_states``): the whole account for a key like ``strategy_disable:x``. A ``trading_state``
record every version reads, and the scope an older reader files it under (``strategy:<instance>``) is no symbol
anyone trades, so it restricts nothing; ``ibstream.trading_states`` now leaves these targets out of the trading
scopes. The record key is ``trading_state:strategy:<instance>``: compaction keeps the newest per instance, so the
state survives every restart (readers fold the topic from its beginning).

Ordering as for trading states: the command with the highest ``(sequence, command_id)`` per instance is in force,
an older one read later is stale. Failing closed: an unreadable record whose key names an instance disables it
until a newer command for it. Without any command an instance is as configured (``enabled`` in the strategies
file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ibstream.contracts import ControlCommand
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.trading_states import STRATEGY_TARGET_PREFIX, UNDECODABLE, sequence_of

#: The target prefix of a strategy instance's switch.
TARGET_PREFIX = STRATEGY_TARGET_PREFIX


def target_of(instance: str) -> str:
    """The control.v1 target of an instance's switch."""
    return TARGET_PREFIX + instance


def instance_of_target(target: str) -> str | None:
    """The instance a command target names; None for any other target."""
    cleaned = target.strip()
    if not cleaned.startswith(TARGET_PREFIX):
        return None
    return cleaned[len(TARGET_PREFIX) :] or None


def is_strategy_target(target: str) -> bool:
    return instance_of_target(target) is not None


def instance_of_key(key: bytes | str | None) -> str | None:
    """The instance an (unreadable) record's key ``trading_state:strategy:<instance>`` names, else None."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if not text:
        return None
    family, _, target = text.partition(":")
    return instance_of_target(target) if family == ControlCommandKind.TRADING_STATE.value else None


@dataclass(frozen=True)
class Switch:
    """The command in force for one instance: on or off, and who, when, why."""

    instance: str
    enabled: bool
    sequence: int
    command_id: str
    actor: str
    reason: str
    since: datetime


@dataclass
class StrategySwitches:
    """Every instance's switch, folded from control records in any order. Not thread-safe: callers lock."""

    switches: dict[str, Switch] = field(default_factory=dict)
    stale: int = 0

    def apply(self, command: ControlCommand) -> Switch | None:
        """Fold in a command; the instance's new switch if it changed what is in force, None if ignored."""
        instance = instance_of_target(command.target)
        if command.command is not ControlCommandKind.TRADING_STATE or instance is None:
            return None
        sequence = sequence_of(command)
        current = self.switches.get(instance)
        if current is not None and not _newer(sequence, command.command_id, current):
            if command.command_id != current.command_id:
                self.stale += 1
            return None
        new = Switch(
            instance=instance,
            enabled=command.state is TradingState.ACTIVE,  # reducing, halted or no state: off (fail closed)
            sequence=sequence,
            command_id=command.command_id,
            actor=command.actor,
            reason=command.reason,
            since=command.issued_time,
        )
        self.switches[instance] = new
        return new

    def apply_undecodable(self, key: bytes | str | None, error: str, at: datetime) -> Switch | None:
        """Disable the instance an unreadable record names (None: the key names no instance)."""
        instance = instance_of_key(key)
        if instance is None:
            return None
        current = self.switches.get(instance)
        off = Switch(
            instance=instance,
            enabled=False,
            sequence=current.sequence if current is not None else 0,
            command_id=UNDECODABLE,
            actor="ibstream",
            reason=f"an unreadable control record disables {instance} until a newer command for it: {error}",
            since=at,
        )
        self.switches[instance] = off
        return off

    def enabled(self, instance: str, configured: bool) -> bool:
        """Whether the instance runs: its newest command, else its configuration."""
        switch = self.switches.get(instance)
        return configured if switch is None else switch.enabled

    def sequence(self, instance: str) -> int:
        switch = self.switches.get(instance)
        return 0 if switch is None else switch.sequence


def _newer(sequence: int, command_id: str, current: Switch) -> bool:
    if current.command_id == UNDECODABLE:
        return sequence > current.sequence
    return (sequence, command_id) > (current.sequence, current.command_id)
