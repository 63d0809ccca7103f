"""Operator commands on a compacted topic, keyed by command and target."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ibstream.contracts.base import FOREVER, Record, TopicSpec, UtcDatetime
from ibstream.contracts.enums import ControlCommandKind


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


def _control_key(command: ControlCommand) -> str:
    # kill_switch_on and kill_switch_off share one key so compaction keeps only the latest state of the switch.
    family = "kill_switch" if command.command.startswith("kill_switch") else command.command.value
    return f"{family}:{command.target}"


TOPIC = TopicSpec(
    name="control.v1",
    record=ControlCommand,
    key=_control_key,
    partitions=1,
    retention_ms=FOREVER,
    cleanup_policy="compact",
    doc="Kill switch and other operator commands, read by risk and execution.",
)
