"""The internal command topic ``<prefix>orchestration-commands``: what goes on it, keyed how.

Inputs arrive keyed three ways: signals by symbol, control by "family:target", decisions and order events by
order_id. The router agent re-keys each one by ``command_key`` onto ``<prefix>orchestration-commands`` so every
input of one run lands on one partition, hence one worker and one table partition. The key is the run's
``order_id`` (uuid5 of the run_id, so one-to-one with runs) rather than the run_id itself because order events
carry only the order_id and a uuid5 cannot be inverted; every other input can compute it.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from ibstream import ids
from ibstream.contracts import ControlCommand, OrderEvent, Record, RiskDecision, Signal
from ibstream.contracts.enums import ControlCommandKind

#: The internal topic (topic prefix prepended) and its partition count, the same as the runs topic's.
COMMANDS_TOPIC = "orchestration-commands"
COMMANDS_PARTITIONS = 3


class CommandKind(StrEnum):
    """What an internal command carries."""

    SIGNAL = "signal"
    CONTROL = "control"
    DECISION = "decision"
    ORDER_EVENT = "order_event"
    TICK = "tick"


RUN_COMMANDS = frozenset(
    {ControlCommandKind.APPROVE_RUN, ControlCommandKind.REJECT_RUN, ControlCommandKind.TRIGGER_RUN}
)


def command_key(record: Record) -> str | None:
    """The partition key of an input on the command topic; None when orchestration has no use for it."""
    if isinstance(record, Signal):
        return ids.order_id(ids.run_id(record.signal_id))
    if isinstance(record, ControlCommand):
        if record.command is ControlCommandKind.TRIGGER_RUN:
            return ids.order_id(ids.run_id(record.target))
        if record.command in RUN_COMMANDS:
            return ids.order_id(record.target)
        if record.command is ControlCommandKind.FLATTEN:
            return f"flatten:{record.command_id}"  # no run: any partition will do, one command on one
        return None  # the kill switch and trading states are risk's and execution's business
    if isinstance(record, RiskDecision | OrderEvent):
        return record.order_id
    return None


_KINDS: dict[type[Record], CommandKind] = {
    Signal: CommandKind.SIGNAL,
    ControlCommand: CommandKind.CONTROL,
    RiskDecision: CommandKind.DECISION,
    OrderEvent: CommandKind.ORDER_EVENT,
}
_RECORDS: dict[CommandKind, type[Record]] = {kind: record for record, kind in _KINDS.items()}


def encode_command(record: Record) -> bytes:
    """An input as an internal command (JSON: the topic is ours and short-lived, no Avro contract needed)."""
    return json.dumps({"kind": _KINDS[type(record)].value, "record": record.model_dump(mode="json")}).encode()


def encode_tick(run_id: str | None, signal_id: str | None) -> bytes:
    """A sweep request for one run and/or one signal slot (both live on the same partition)."""
    return json.dumps({"kind": CommandKind.TICK.value, "run_id": run_id, "signal_id": signal_id}).encode()


def tick_key(run_id: str | None, signal_id: str | None) -> str:
    """The partition key of a tick: the run's order_id, as for every other input of that run."""
    if run_id is None:
        if signal_id is None:
            raise ValueError("a tick needs a run_id or a signal_id")
        run_id = ids.run_id(signal_id)
    return ids.order_id(run_id)


def decode_command(raw: bytes) -> tuple[CommandKind, Record | None, dict[str, Any]]:
    """(kind, record or None for a tick, the raw envelope); ValueError on anything else."""
    data = json.loads(raw)
    kind = CommandKind(data["kind"])
    if kind is CommandKind.TICK:
        return kind, None, data
    return kind, _RECORDS[kind].model_validate(data["record"]), data
