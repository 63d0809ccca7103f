"""Operator commands on a compacted topic, keyed by command and target."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import ControlCommandKind, TradingState


class ControlCommand(Record):
    """An operator command; the latest record per key is the one in force."""

    schema_name: ClassVar[str] = "control_command"

    command_id: str
    command: ControlCommandKind
    target: str
    reason: str = Field(min_length=1)
    actor: str
    parameters: dict[str, str]
    issued_time: UtcDatetime
    # Per target, monotonic (see ibstream.trading_states): a replayed or late older command never overrides a newer.
    sequence: int = 0
    state: TradingState | None = None


def _control_key(command: ControlCommand) -> str:
    # kill_switch_on and kill_switch_off share one key so compaction keeps only the latest state of the switch.
    # A trading_state command has its own family: the kill switch and the trading state of one scope are resolved
    # together by sequence (ibstream.trading_states), whatever compaction kept of each.
    family = "kill_switch" if command.command.startswith("kill_switch") else command.command.value
    return f"{family}:{command.target}"


TOPIC = TopicSpec(
    name="control.v1",
    record=ControlCommand,
    key=_control_key,
    partitions=1,
    retention_ms=FOREVER,
    cleanup_policy="compact",
    doc="Trading states, kill switch and other operator commands, read by risk, execution and the API.",
)
