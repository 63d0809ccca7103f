"""The transactional outbox: everything execution publishes leaves in one Kafka transaction per flush.

Records (order events, executions, positions, alerts) are queued with the span they were produced under; poison
routed orders are queued for the dead-letter topic; the routed consumer's position advances with them. One flush:

1. begin; send every queued record and dead letter;                     [crash: after_event, after a placement]
2. commit the transaction — the commit point: the placement's events are now visible (read_committed);
3. after the commit, never inside it: the routed consumer's offsets (asynchronously); a crash between 2 and 3
   re-delivers the order, and the book rebuilt from the committed events skips it;
4. the journal settles the intents whose events just committed.

A failed transaction is aborted and everything stays queued for the next flush; a fenced producer (another
executor took over the account) raises ``FencedError``.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.trace import SpanContext

from consumers.execution.crash import CrashPoints
from consumers.execution.exceptions import FencedError
from consumers.execution.journal import Journal
from ibstream.contracts import Record, TopicSpec, routed_orders
from ibstream.kafka.clients import OffsetError, TransactionError, Transactions, commit_offsets
from ibstream.kafka.records import DeadLetterRouter, KafkaMessage, RecordProducer
from ibstream.telemetry import as_current, current_span_context, record_error

log = logging.getLogger(__name__)

COMPONENT = "execution"


class Outbox:
    """Records waiting for the next transaction, and the routed consumer's offsets that follow its commit."""

    def __init__(self, journal: Journal, crash: CrashPoints) -> None:
        self.journal = journal
        self.crash = crash
        self.records: list[tuple[TopicSpec[Any], Record, SpanContext | None]] = []
        self.dead: list[tuple[KafkaMessage, BaseException, str]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.offsets_dirty = False
        self.settling: list[str] = []
        #: The orders placed in the open batch (the ``after_event`` crash point fires for them).
        self.crash_batch: list[str] = []
        # Bound once the account is known (the transactional id names it).
        self.tx: Transactions | None = None
        self.sink: RecordProducer | None = None
        self.dlq: DeadLetterRouter | None = None

    def bind(self, tx: Transactions, sink: RecordProducer, dlq: DeadLetterRouter) -> None:
        self.tx, self.sink, self.dlq = tx, sink, dlq

    def enqueue(self, spec: TopicSpec[Any], record: Record) -> None:
        """Queue a record for the next transaction, with the span it belongs to."""
        self.records.append((spec, record, current_span_context()))

    def dead_letter(self, message: KafkaMessage, error: BaseException, kind: str = "") -> None:
        """Queue a routed record for its DLQ (``kind``: the DLQ error kind; default decode or processing)."""
        self.dead.append((message, error, kind))

    def advance(self, position: tuple[str, int], offset: int) -> None:
        """The routed record at ``offset`` is handled: commit past it after the next transaction."""
        self.offsets[position] = offset + 1
        self.offsets_dirty = True

    def settle_after_commit(self, order_id: str, *, placed: bool) -> None:
        """The intent leaves the journal once its events are committed."""
        if placed:
            self.crash_batch.append(order_id)
        self.settling.append(order_id)

    def flush(self, routed: Any) -> None:
        """One transaction: every record produced since the last flush, then the routed consumer's offsets."""
        if not (self.records or self.dead or self.offsets_dirty):
            return
        if self.tx is None or self.sink is None or self.dlq is None:
            return  # not connected yet: records wait for the producer
        if not self._transact(self.tx, self.sink, self.dlq):
            return
        if self.offsets_dirty and routed is not None:
            # After the events are committed, never with them (Transactions.commit says why): a crash in between
            # re-delivers the order, and step 1 finds it in the book rebuilt from those events.
            try:
                commit_offsets(routed, self.offsets, asynchronous=True)
            except OffsetError as error:
                log.warning("routed offset commit failed; the book skips the re-delivery", extra={"error": str(error)})
        self.records.clear()
        self.dead.clear()
        self.offsets_dirty = False
        self.crash_batch = []
        settled, self.settling = self.settling, []
        self.journal.settle(settled)

    def _transact(self, tx: Transactions, sink: RecordProducer, dlq: DeadLetterRouter) -> bool:
        try:
            tx.begin()
            for spec, record, context in self.records:
                with as_current(context):
                    sink.send(spec, record)
            for message, error, kind in self.dead:
                dlq.route(routed_orders.TOPIC, message, error, kind)
            if self.crash_batch:
                sink.flush(10)  # the records really are on the broker, inside the open transaction
                for order_id in self.crash_batch:
                    self.crash.hit("after_event", order_id)
            tx.commit()
        except Exception as error:  # TransactionError, or librdkafka refusing a produce in a broken transaction
            if isinstance(error, TransactionError) and error.fatal:
                raise FencedError(f"execution producer fenced or broken: {error}") from None
            log.warning("transaction failed; retrying", extra={"error": str(error), "records": len(self.records)})
            record_error("transaction", COMPONENT)
            try:
                tx.abort()
            except TransactionError as abort_error:
                if abort_error.fatal:
                    raise FencedError(str(abort_error)) from None
            return False
        return True
