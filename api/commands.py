"""Operator commands to ``control.v1``, acknowledged to the HTTP caller only once Kafka acknowledged them.

A 503 means Kafka did not confirm the write within ``api_command_timeout_seconds``. The producer's own delivery
timeout is set to the same value so librdkafka gives up too, rather than delivering the command minutes later
behind the caller's back. A write can still land after a timeout (the broker wrote it, the ack was lost); every
command is safe to repeat — it is keyed by kind and target on a compacted topic and consumers apply it
idempotently — so the 503 says "retry".
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError, Message

from api.errors import ApiError
from ibstream.config import Settings
from ibstream.contracts import ControlCommand, control, utc_now
from ibstream.contracts.enums import ControlCommandKind, TradingState
from ibstream.kafka.clients import create_producer
from ibstream.kafka.records import RecordProducer, codec_from_settings
from ibstream.telemetry import log_context, meter
from ibstream.trading_states import next_sequence

log = logging.getLogger(__name__)

_commands = meter("api.commands").create_counter(
    "ibstream_api_commands_total", description="operator commands by kind and outcome (accepted, unavailable)"
)


@dataclass(frozen=True)
class Delivered:
    """Where Kafka stored an acknowledged command."""

    topic: str
    partition: int
    offset: int


class CommandSink(Protocol):
    """Something that durably publishes a command or raises ApiError(503)."""

    def publish(self, command: ControlCommand) -> Delivered:
        """Publish and wait for the acknowledgement."""
        ...

    def reachable(self) -> bool:
        """Whether the cluster answers now (readiness)."""
        ...

    def close(self) -> None:
        """Flush and release the client."""
        ...


class SequenceClock:
    """Issues command sequences from a hybrid clock (``ibstream.trading_states.next_sequence``): the wall time in
    microseconds, and always above the last one this process issued. Monotonic per target because it is monotonic
    for the whole process; replicas need no coordination (see ``ibstream.trading_states``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self, seen: int = 0) -> int:
        """The next sequence: above ``seen`` (the highest this API can see recorded) and every one issued here."""
        with self._lock:
            self._last = next_sequence(utc_now(), max(self._last, seen))
            return self._last


SEQUENCES = SequenceClock()


def build_command(
    kind: ControlCommandKind,
    target: str,
    reason: str,
    actor: str,
    parameters: dict[str, str] | None = None,
    state: TradingState | None = None,
    seen: int = 0,
) -> ControlCommand:
    """A new command with a fresh id and sequence, issued now by ``actor`` (the token subject)."""
    return ControlCommand(
        command_id=str(uuid.uuid4()),
        command=kind,
        target=target,
        reason=reason,
        actor=actor,
        parameters=parameters or {},
        issued_time=utc_now(),
        sequence=SEQUENCES.next(seen),
        state=state,
    )


def correlation_ids(command: ControlCommand) -> dict[str, str | None]:
    """The log correlation id a command's target is: a run, a signal, or a symbol (kill switch)."""
    if command.command in (ControlCommandKind.APPROVE_RUN, ControlCommandKind.REJECT_RUN):
        return {"run_id": command.target}
    if command.command is ControlCommandKind.TRIGGER_RUN:
        return {"signal_id": command.target}
    if command.command in (ControlCommandKind.CANCEL_ORDER, ControlCommandKind.MODIFY_ORDER):
        return {"order_id": command.target}
    return {"symbol": None if command.target in ("global", "account") else command.target}


def unavailable(detail: str) -> ApiError:
    """The stable 503 for a command Kafka did not acknowledge."""
    return ApiError(
        503,
        "kafka_unavailable",
        f"the command was not acknowledged by Kafka ({detail}); it is safe to retry",
        {"Retry-After": "5"},
    )


class KafkaCommandSink:
    """Publishes commands with an idempotent ``acks=all`` producer and waits for each delivery report."""

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.api.command_timeout_seconds
        timeout_ms = int(self._timeout * 1000)
        producer = create_producer(
            settings,
            "events",
            **{
                "linger.ms": 0,
                "delivery.timeout.ms": timeout_ms,
                "request.timeout.ms": min(timeout_ms, 30_000),
                # Fail fast on a dead cluster instead of retrying metadata for the default minutes.
                "socket.connection.setup.timeout.ms": min(timeout_ms, 30_000),
            },
        )
        self._records = RecordProducer(producer, codec_from_settings(settings), settings.kafka.topic_prefix)

    def publish(self, command: ControlCommand) -> Delivered:
        """Send and block until Kafka acknowledged it; ApiError 503 ``kafka_unavailable`` otherwise."""
        done = threading.Event()
        failures: list[KafkaError] = []
        where: list[Delivered] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(error)
            else:
                where.append(Delivered(str(message.topic()), int(message.partition() or 0), int(message.offset() or 0)))
            done.set()

        with log_context(**correlation_ids(command)):
            try:
                self._records.send(control.TOPIC, command, on_delivery=on_delivery)
            except Exception as error:  # encoding or a local queue failure: nothing was written
                log.exception("command not queued", extra={"command_id": command.command_id})
                raise unavailable(f"not queued: {error}") from None
            # Several request threads may poll concurrently; each report sets the event of its own command.
            deadline = time.monotonic() + self._timeout + 2.0
            while not done.is_set() and time.monotonic() < deadline:
                self._records.poll(0.05)
            if not where:
                detail = str(failures[0]) if failures else "no delivery report in time"
                _commands.add(1, {"kind": command.command.value, "outcome": "unavailable"})
                log.error(
                    "command not acknowledged",
                    extra={"command_id": command.command_id, "command": command.command.value, "error": detail},
                )
                raise unavailable(detail)
            delivered = where[0]
            _commands.add(1, {"kind": command.command.value, "outcome": "accepted"})
            log.info(
                "command acknowledged",
                extra={
                    "command_id": command.command_id,
                    "command": command.command.value,
                    "target": command.target,
                    "actor": command.actor,
                    "partition": delivered.partition,
                    "offset": delivered.offset,
                },
            )
            return delivered

    def reachable(self) -> bool:
        """Whether a broker answers a metadata request."""
        return self._records.reachable(timeout=2.0)

    def close(self) -> None:
        """Deliver anything still queued (bounded), then drop the client."""
        self._records.flush(self._timeout)
