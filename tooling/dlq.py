"""`ibstream dlq list|show|redrive`: read a topic's dead letters, and send them back once their cause is fixed.

A dead letter (``DeadLetter``, see ``ibstream.kafka.dead_letters``) holds the original record's key, value and headers
and where it came from. Redrive re-publishes exactly those bytes, key and headers to the original topic, adding
``ibstream.redrive.*`` headers naming the DLQ record it came from (so a record that fails again is recognisable in
its new dead letter). It is stamped with the time of the redrive: the original timestamp stays in the dead letter, and
an old timestamp could put the record straight past the topic's retention.

Never twice the same record. The redrive ledger (``REDRIVE_LEDGER``, compacted, keyed by DLQ topic/partition/offset)
records every dead letter sent back. The protocol:
1. A transactional producer with one id per DLQ topic registers (``init_transactions``): this fences a redrive of the
   same DLQ still running elsewhere and aborts the transaction it left open, so nothing in flight remains.
2. The ledger is read to its end (read_committed): what is in it was sent, what an aborted run wrote is not.
3. The DLQ is read to its end; the letters in the window (the DLQ record's time in [from, to), or the offsets asked
   for) that the ledger does not hold are the plan.
4. Per batch, one transaction carries the records sent back and their ledger entries: both are visible or neither.
   A crash before the commit leaves nothing (the next run's step 1 aborts it); after it, the ledger says sent.
A ledger entry counts only if it names the same original topic/partition/offset as the letter: a DLQ topic deleted and
created again starts its offsets at 0, and its new letters are not the ones redriven before.
Consumers reading read_committed (every confluent-kafka consumer here: execution, the sink) never see a redriven record
whose transaction aborted. Faust (streams) reads read_uncommitted: a redrive that fails at its commit may let streams
see the record although the ledger does not hold it, and the next redrive sends it again; streams' effects are
idempotent (deterministic ids), as for any re-delivery.

``--dry-run`` reads the ledger and the DLQ and reports the plan, without registering the producer (it fences no one);
like ``list`` and ``show`` it creates nothing (no ledger yet: nothing was redriven).
Only the original topic of the DLQ is ever written: a letter naming another topic (another prefix) is refused.
The consumers' own checks still apply to what comes back (execution still needs an approved decision for a routed
order, stale control commands are still ignored).
"""

from __future__ import annotations

import getpass
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ibstream.config import Settings
from ibstream.contracts import TOPICS, DeadLetter, TopicSpec, utc_now
from ibstream.contracts.dead_letters import REDRIVE_LEDGER, DlqRedrive, redrive_key
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.exceptions import IbstreamError
from ibstream.kafka.clients import (
    TransactionError,
    Transactions,
    create_admin,
    create_consumer,
    create_transactional_producer,
    partition_count,
)
from ibstream.kafka.dead_letters import (
    REDRIVE_DLQ_OFFSET,
    REDRIVE_DLQ_PARTITION,
    REDRIVE_DLQ_TOPIC,
    REDRIVE_HEADER_PREFIX,
    REDRIVE_TIME,
)
from ibstream.kafka.records import KafkaMessage, RecordProducer, codec_from_settings, consume_to_end
from ibstream.kafka.topics import TopicLayout, ensure_topics

log = logging.getLogger(__name__)

#: Records sent back per transaction (with as many ledger entries): well inside the transaction timeout.
BATCH = 500


class DlqError(IbstreamError):
    """A DLQ command could not be set up, or a redrive was not committed."""


def dlq_spec(name: str) -> TopicSpec[Any]:
    """The catalogue topic named ``name`` (without prefix), or the one whose DLQ is named so."""
    for spec in TOPICS:
        if name in (spec.name, spec.dlq_name):
            return spec
    known = ", ".join(spec.name for spec in TOPICS)
    raise DlqError(f"unknown topic {name!r}: give a catalogue topic or its DLQ (e.g. md.quotes.v1); known: {known}")


@dataclass(frozen=True)
class DlqEntry:
    """One record of a DLQ topic: where it is, its Kafka time, and the dead letter (None if it does not decode)."""

    topic: str
    partition: int
    offset: int
    time: datetime
    letter: DeadLetter | None
    problem: str = ""

    @property
    def key(self) -> str:
        return redrive_key(self.topic, self.partition, self.offset)


def select(
    entries: Iterable[DlqEntry],
    start: datetime | None = None,
    end: datetime | None = None,
    offsets: Sequence[int] = (),
) -> list[DlqEntry]:
    """The entries with a DLQ time in [start, end) (either bound optional) and, if ``offsets`` are given, at one
    of them; in DLQ order."""
    wanted = set(offsets)
    return [
        entry
        for entry in entries
        if (start is None or entry.time >= start)
        and (end is None or entry.time < end)
        and (not wanted or entry.offset in wanted)
    ]


def redriven(entry: DlqEntry, ledger: Mapping[str, DlqRedrive]) -> DlqRedrive | None:
    """The ledger's entry for this dead letter, if it was sent back (the same original coordinates, see above)."""
    found = ledger.get(entry.key)
    letter = entry.letter
    if found is None or letter is None:
        return None
    same = (found.original_topic, found.original_partition, found.original_offset) == (
        letter.original_topic,
        letter.partition,
        letter.offset,
    )
    return found if same else None


@dataclass
class RedrivePlan:
    """What a redrive sends, what it skips because the ledger has it, and what it refuses (with why)."""

    send: list[DlqEntry] = field(default_factory=list)
    already: list[tuple[DlqEntry, DlqRedrive]] = field(default_factory=list)
    refused: list[tuple[DlqEntry, str]] = field(default_factory=list)


def plan_redrive(entries: Iterable[DlqEntry], ledger: Mapping[str, DlqRedrive], original_topic: str) -> RedrivePlan:
    """Sort the selected entries: send (not in the ledger), already (in it) or refused (no letter to send, or a
    letter from a topic other than ``original_topic``, the full name of the DLQ's own topic)."""
    plan = RedrivePlan()
    for entry in entries:
        letter = entry.letter
        if letter is None:
            plan.refused.append((entry, f"the DLQ record does not decode: {entry.problem}"))
        elif letter.original_topic != original_topic:
            plan.refused.append((entry, f"it came from {letter.original_topic}, not {original_topic}"))
        elif (done := redriven(entry, ledger)) is not None:
            plan.already.append((entry, done))
        else:
            plan.send.append(entry)
    return plan


def redrive_headers(entry: DlqEntry, now: datetime) -> dict[str, bytes]:
    """The original headers, with the ``ibstream.redrive.*`` ones of this redrive (replacing an earlier one's)."""
    letter = entry.letter
    original = letter.headers if letter is not None else {}
    headers = {name: value for name, value in original.items() if not name.startswith(REDRIVE_HEADER_PREFIX)}
    headers |= {
        REDRIVE_DLQ_TOPIC: entry.topic.encode(),
        REDRIVE_DLQ_PARTITION: str(entry.partition).encode(),
        REDRIVE_DLQ_OFFSET: str(entry.offset).encode(),
        REDRIVE_TIME: now.isoformat().encode(),
    }
    return headers


def ledger_entry(entry: DlqEntry, letter: DeadLetter, by: str, now: datetime) -> DlqRedrive:
    return DlqRedrive(
        dlq_topic=entry.topic,
        dlq_partition=entry.partition,
        dlq_offset=entry.offset,
        original_topic=letter.original_topic,
        original_partition=letter.partition,
        original_offset=letter.offset,
        redriven_by=by,
        redriven_time=now,
    )


# --- rendering (pure) --------------------------------------------------------------------------------------------


def _preview(value: bytes | None, limit: int = 120) -> str:
    if value is None:
        return "null"
    shown = repr(value[:limit]) + ("…" if len(value) > limit else "")
    return f"{shown} ({len(value)} bytes)"


def render_list(entries: Sequence[DlqEntry], ledger: Mapping[str, DlqRedrive]) -> str:
    """One line per dead letter: where, when, what failed, and whether it was redriven."""
    lines = []
    for entry in entries:
        letter = entry.letter
        place = f"{entry.partition}@{entry.offset}"
        when = entry.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        if letter is None:
            lines.append(f"{place:>8}  {when}  undecodable dead letter: {entry.problem}")
            continue
        done = redriven(entry, ledger)
        status = f"redriven {done.redriven_time:%Y-%m-%dT%H:%M:%SZ}" if done else "not redriven"
        message = letter.error_message.splitlines()[0][:80] if letter.error_message else ""
        lines.append(
            f"{place:>8}  {when}  {letter.original_topic}[{letter.partition}]@{letter.offset}  {letter.error_kind}  "
            f"{letter.component}  {letter.exception_class or '-'}  {status}  {message}"
        )
    lines.append(f"{len(entries)} dead letter(s)")
    return "\n".join(lines)


def render_show(entry: DlqEntry, ledger: Mapping[str, DlqRedrive]) -> str:
    """Every fact of one dead letter, its original key, value and headers, and its stack trace."""
    letter = entry.letter
    head = [f"dlq record        {entry.topic}[{entry.partition}]@{entry.offset} at {entry.time.isoformat()}"]
    if letter is None:
        return "\n".join([*head, f"undecodable       {entry.problem}"])
    done = redriven(entry, ledger)
    facts = {
        "original          ": f"{letter.original_topic}[{letter.partition}]@{letter.offset}",
        "original time     ": letter.original_timestamp.isoformat() if letter.original_timestamp else "unknown",
        "consumer group    ": letter.consumer_group or "unknown",
        "component         ": letter.component,
        "error kind        ": letter.error_kind,
        "exception class   ": letter.exception_class or "unknown",
        "exception message ": letter.error_message,
        "failed time       ": letter.failed_time.isoformat(),
        "redriven          ": f"{done.redriven_time.isoformat()} by {done.redriven_by}" if done else "no",
        "key               ": _preview(letter.key),
        "value             ": _preview(letter.value),
    }
    lines = head + [f"{name}{value}" for name, value in facts.items()]
    lines += ["headers"] + [f"  {name}: {_preview(value)}" for name, value in sorted(letter.headers.items())]
    lines += ["stack trace", *(f"  {line}" for line in (letter.stack_trace or "not recorded").splitlines())]
    return "\n".join(lines)


def render_plan(plan: RedrivePlan, target: str, *, dry_run: bool) -> str:
    verb = "would redrive" if dry_run else "redrove"
    lines = [f"{verb} {entry.partition}@{entry.offset} → {target}" for entry in plan.send]
    lines += [f"skipped {e.partition}@{e.offset}: redriven {d.redriven_time.isoformat()}" for e, d in plan.already]
    lines += [f"refused {entry.partition}@{entry.offset}: {why}" for entry, why in plan.refused]
    lines.append(
        f"{verb} {len(plan.send)} dead letter(s) to {target}; {len(plan.already)} already redriven, "
        f"{len(plan.refused)} refused"
    )
    return "\n".join(lines)


# --- Kafka --------------------------------------------------------------------------------------------------------


def _reader(settings: Settings) -> Any:
    # A throwaway group that never commits: reading a DLQ or the ledger moves no one's position.
    group = f"ibstream-dlq-{uuid.uuid4().hex[:12]}"
    return create_consumer(settings, group, **{"enable.auto.commit": False, "enable.partition.eof": True})


def _entry(codec: Codec, message: KafkaMessage) -> DlqEntry:
    topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
    when = datetime.fromtimestamp(max(message.timestamp()[1], 0) / 1000, UTC)
    try:
        letter = codec.decode(topic, DeadLetter, message.value(), partition, offset)
    except DecodeError as error:
        return DlqEntry(topic, partition, offset, when, None, str(error))
    return DlqEntry(topic, partition, offset, when, letter)


def read_dlq(settings: Settings, codec: Codec, dlq_topic: str) -> list[DlqEntry]:
    """Every record of ``dlq_topic`` (the full name), in partition and offset order."""
    consumer = _reader(settings)
    entries: list[DlqEntry] = []
    try:
        partitions = partition_count(consumer, dlq_topic)
        consume_to_end(consumer, {dlq_topic: partitions}, lambda message: entries.append(_entry(codec, message)))
    finally:
        consumer.close()
    return sorted(entries, key=lambda entry: (entry.partition, entry.offset))


def ledger_layout(prefix: str) -> TopicLayout:
    spec = REDRIVE_LEDGER
    return TopicLayout(prefix + spec.name, spec.partitions, spec.retention_ms, spec.cleanup_policy)


def read_ledger(settings: Settings, codec: Codec, *, create: bool = False) -> dict[str, DlqRedrive]:
    """The ledger as it stands: the latest committed entry per key. A missing ledger is empty; ``create`` (a real
    redrive) creates it first, so that reading it never creates a topic (list, show, a dry run: read-only)."""
    layout = ledger_layout(settings.kafka.topic_prefix)
    admin = create_admin(settings)
    if create:
        report = ensure_topics(admin, [layout])
        if not report.ok:
            raise DlqError(f"the redrive ledger {layout.name} is not as expected: {report.drift}")
    elif layout.name not in admin.list_topics(timeout=10).topics:
        return {}
    ledger: dict[str, DlqRedrive] = {}

    def keep(message: KafkaMessage) -> None:
        key = (message.key() or b"").decode()
        if message.value() is None:
            ledger.pop(key, None)
            return
        ledger[key] = codec.decode(layout.name, DlqRedrive, message.value(), message.partition(), message.offset())

    consumer = _reader(settings)
    try:
        consume_to_end(consumer, {layout.name: layout.partitions}, keep)
    finally:
        consumer.close()
    return ledger


@dataclass(frozen=True)
class DlqView:
    """A DLQ's selected entries and the ledger, for ``list`` and ``show``."""

    topic: str
    entries: list[DlqEntry]
    ledger: dict[str, DlqRedrive]


def view(
    settings: Settings,
    topic: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    offsets: Sequence[int] = (),
) -> DlqView:
    """The dead letters of ``topic`` (a catalogue topic or its DLQ) in the window, with the ledger."""
    spec = dlq_spec(topic)
    codec = codec_from_settings(settings)
    dlq_topic = settings.kafka.topic_prefix + spec.dlq_name
    ledger = read_ledger(settings, codec)
    return DlqView(dlq_topic, select(read_dlq(settings, codec, dlq_topic), start, end, offsets), ledger)


@dataclass(frozen=True)
class RedriveReport:
    """What a redrive did (``dry_run``: would do)."""

    dlq_topic: str
    target_topic: str
    plan: RedrivePlan
    dry_run: bool
    seconds: float

    def render(self) -> str:
        return render_plan(self.plan, self.target_topic, dry_run=self.dry_run)


def redrive(
    settings: Settings,
    topic: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    offsets: Sequence[int] = (),
    dry_run: bool = False,
    operator: str | None = None,
) -> RedriveReport:
    """Send the dead letters of ``topic`` selected by the window and offsets back to it, each at most once ever
    (the protocol in the module docstring)."""
    began = time.monotonic()
    spec = dlq_spec(topic)
    codec = codec_from_settings(settings)
    prefix = settings.kafka.topic_prefix
    dlq_topic, target = prefix + spec.dlq_name, prefix + spec.name
    tx: Transactions | None = None
    producer = None
    if not dry_run:
        producer = create_transactional_producer(settings, f"{prefix}ibstream-dlq-redrive-{spec.dlq_name}")
        tx = Transactions(producer, timeout=30.0)
        _call(tx.init, "register the redrive producer")
    ledger = read_ledger(settings, codec, create=not dry_run)
    plan = plan_redrive(select(read_dlq(settings, codec, dlq_topic), start, end, offsets), ledger, target)
    if tx is not None and producer is not None and plan.send:
        sink = RecordProducer(producer, codec, prefix)
        by = operator or _operator()
        for first in range(0, len(plan.send), BATCH):
            _send_batch(tx, sink, plan.send[first : first + BATCH], target, by)
        log.info(
            "dead letters redriven",
            extra={"dlq": dlq_topic, "topic": target, "records": len(plan.send), "by": by},
        )
    return RedriveReport(dlq_topic, target, plan, dry_run, time.monotonic() - began)


def _send_batch(tx: Transactions, sink: RecordProducer, batch: Sequence[DlqEntry], target: str, by: str) -> None:
    """One transaction: the batch's records back on ``target`` and their ledger entries."""
    now = utc_now()
    _call(tx.begin, "begin the redrive transaction")
    try:
        for entry in batch:
            letter = entry.letter
            if letter is None:  # plan_redrive refuses these; never reached
                raise DlqError(f"{entry.key}: no dead letter to send back")
            sink.send_raw(target, letter.key, letter.value, headers=dict(redrive_headers(entry, now)))
            sink.send(REDRIVE_LEDGER, ledger_entry(entry, letter, by, now))
        _call(tx.commit, "commit the redrive")
    except BaseException:
        if tx.open:
            try:
                tx.abort()
            except TransactionError as error:
                log.warning("redrive abort failed", extra={"error": str(error)})
        raise
    if sink.failed:
        raise DlqError(f"{sink.failed} records of the redrive were not delivered: {sink.last_error}")


def _call(step: Any, what: str) -> None:
    try:
        step()
    except TransactionError as error:
        hint = " (another redrive of this DLQ took over)" if error.fenced else ""
        raise DlqError(f"could not {what}{hint}: {error}") from None


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
