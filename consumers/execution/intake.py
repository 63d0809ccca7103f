"""Execution's Kafka clients: the transactional producer behind the outbox, and three consumers.

* control (``control.v1``, compacted): read from its beginning at startup, then polled every step;
* rebuild: reads ``orders.events.v1`` and ``executions.v1`` to their end (read_committed) once, after the
  transactional producer fenced its predecessors, to rebuild the book; in the same pass ``risk.decisions.v1``, whose
  approvals routed orders are checked against (``decisions``). The reader then stays on the decisions alone and is
  polled every step;
* routed (``orders.routed.v1``): the consumer group with static membership per account. While the executor is not
  ready its partitions are paused (membership kept, nothing taken); a record fetched before a pause took effect is
  held, in order, never dropped. A consumer fenced for good is replaced by a new one.
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from consumers.execution.context import Context
from consumers.execution.exceptions import FencedError
from consumers.execution.outbox import COMPONENT, Outbox
from ibstream.contracts import control, executions, order_events, risk_decisions, routed_orders
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.kafka.clients import (
    TransactionError,
    Transactions,
    create_consumer,
    create_transactional_producer,
    is_fatal,
)
from ibstream.kafka.records import DeadLetterRouter, KafkaMessage, RecordProducer, consume_to_end, decode_message
from ibstream.telemetry import record_error

log = logging.getLogger(__name__)


class Intake:
    """The Kafka clients of one executor."""

    def __init__(self, ctx: Context, codec: Codec, outbox: Outbox) -> None:
        self.ctx = ctx
        self.codec = codec
        self.outbox = outbox
        self.prefix = ctx.settings.kafka.topic_prefix
        self.group = f"{self.prefix}{ctx.settings.execution.group_id}"
        self.producer: Any = None
        self.routed: Any = None
        self.control: Any = None
        self.decisions: Any = None
        self.held: collections.deque[KafkaMessage] = collections.deque()
        self.paused = False
        self.routed_consumers_replaced = 0

    # --- control ------------------------------------------------------------------------------------------------

    def start_control(self, on_control: Callable[[KafkaMessage], None]) -> int:
        """Read control.v1 (compacted) from its beginning, so a kill switch engaged while we were down holds."""
        self.control = create_consumer(
            self.ctx.settings,
            f"{self.group}-control-{uuid.uuid4().hex[:8]}",
            **{"enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 100},
        )
        return consume_to_end(self.control, {self.prefix + control.TOPIC.name: control.TOPIC.partitions}, on_control)

    def poll_control(self, on_control: Callable[[KafkaMessage], None]) -> None:
        poll_some(self.control, on_control, 100)

    def poll_decisions(self, on_decision: Callable[[KafkaMessage], None]) -> None:
        poll_some(self.decisions, on_decision, 1000)

    # --- producer, rebuild, routed --------------------------------------------------------------------------------

    def start(self, account: str, on_decision: Callable[[KafkaMessage], None]) -> None:
        """First connection: fence older executors of this account, rebuild the book, join the routed group."""
        transactional_id = f"{self.group}-{account}"
        self.producer = create_transactional_producer(self.ctx.settings, transactional_id)
        tx = Transactions(self.producer, timeout=30.0)
        try:
            # Fences any older producer with this id and aborts the transaction a crashed one left open; only then
            # can a read_committed rebuild reach the end of the event topics.
            tx.init()
        except TransactionError as error:
            raise FencedError(str(error)) from None
        sink = RecordProducer(self.producer, self.codec, self.prefix)
        self.outbox.bind(tx, sink, DeadLetterRouter(sink, self.codec, COMPONENT, self.prefix, group=self.group))
        self.rebuild(on_decision)
        self.join_routed(account)
        log.info("kafka ready", extra={"transactional_id": transactional_id})

    def rebuild(self, on_decision: Callable[[KafkaMessage], None]) -> None:
        """The book from the event topics, and every risk decision handed to ``on_decision``; the reader is kept
        for the decisions that follow."""
        reader = create_consumer(
            self.ctx.settings,
            f"{self.group}-rebuild-{uuid.uuid4().hex[:8]}",
            **{"enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 10},
        )
        book, journal = self.ctx.book, self.ctx.journal
        events_topic = self.prefix + order_events.TOPIC.name
        exec_topic = self.prefix + executions.TOPIC.name
        decisions_topic = self.prefix + risk_decisions.TOPIC.name

        def handle(message: KafkaMessage) -> None:
            try:
                if message.topic() == decisions_topic:
                    on_decision(message)
                elif message.topic() == events_topic:
                    book.rebuild_event(decode_message(self.codec, order_events.TOPIC, message))
                else:
                    book.rebuild_execution(decode_message(self.codec, executions.TOPIC, message))
            except DecodeError as error:
                log.error("undecodable record skipped in rebuild", extra={"error": str(error)})
                record_error("decode", COMPONENT)

        topics = {
            events_topic: order_events.TOPIC.partitions,
            exec_topic: executions.TOPIC.partitions,
            decisions_topic: risk_decisions.TOPIC.partitions,
        }
        try:
            count = consume_to_end(reader, topics, handle)
            follow_from_here(reader, decisions_topic, risk_decisions.TOPIC.partitions)
        except BaseException:
            reader.close()
            raise
        self.decisions = reader
        # Intents whose events did commit (a crash after the commit, before the journal write) are settled.
        journal.settle([order_id for order_id in journal.in_doubt if order_id in book.orders])
        log.info(
            "book rebuilt",
            extra={
                "records": count,
                "orders": len(book.orders),
                "in_doubt": len(journal.in_doubt),
                "max_ib_order_id": book.max_ib_order_id,
            },
        )

    def join_routed(self, account: str) -> None:
        self.routed = create_consumer(
            self.ctx.settings,
            self.group,
            **{
                "enable.auto.commit": False,
                # Static membership: a restarted executor takes its partition back at once instead of waiting for
                # the dead member's session to time out; a second live instance with the same id is fenced.
                "group.instance.id": f"{self.group}-{account}",
                "session.timeout.ms": 10_000,
            },
        )
        self.routed.subscribe([self.prefix + routed_orders.TOPIC.name])
        self.paused = False

    def replace_routed(self, reason: str) -> None:
        """The routed consumer was fenced for good (``is_fatal``, e.g. its session ran out while the broker
        restarted): join again as a new consumer. Records it fetched but we have not committed are re-delivered
        from the last committed offset; the book recognises the ones already handled, so none is placed twice."""
        log.error("routed consumer fenced; replacing it", extra={"error": reason})
        record_error("consumer_fenced", COMPONENT)
        try:
            self.routed.close()
        except Exception as error:  # a fenced consumer may refuse to leave politely; it is dropped either way
            log.warning("closing the fenced routed consumer failed", extra={"error": str(error)})
        self.held.clear()
        assert self.ctx.account is not None  # the routed consumer exists only once an account is bound
        self.join_routed(self.ctx.account)
        self.routed_consumers_replaced += 1

    def poll_routed(self, ready: bool) -> KafkaMessage | None:
        """The next routed record to handle, only when ``ready``; otherwise keep membership without taking any."""
        if self.routed is None:
            return None
        if not ready:
            # Keep the group membership alive without taking records: paused partitions return nothing.
            self.pause_routed()
        elif self.paused:
            self.routed.resume(self.routed.assignment())
            self.paused = False
        message = self.routed.poll(0)
        if message is not None:
            if is_fatal(message.error()):
                self.replace_routed(str(message.error()))
                return None
            if message.error() is not None:
                log.warning("routed consumer error", extra={"error": str(message.error())})
            else:
                # A record fetched before a pause took effect is held, in order, never dropped: its offset must not
                # be committed past before it is handled.
                self.held.append(message)
        if ready and self.held:
            return self.held.popleft()
        return None

    def pause_routed(self) -> None:
        if self.routed is not None and not self.paused:
            assignment = self.routed.assignment()
            if assignment:
                self.routed.pause(assignment)
                self.paused = True

    def close(self) -> None:
        for consumer in (self.routed, self.control, self.decisions):
            if consumer is not None:
                try:
                    consumer.close()
                except Exception as error:  # closing is best effort on the way out
                    log.warning("consumer close failed", extra={"error": str(error)})


def follow_from_here(consumer: Any, topic: str, partitions: int) -> None:
    """Keep only ``topic`` assigned, each partition at the position reached (from its beginning where nothing was
    read: the partition was empty at its end, so whatever it holds now is new)."""
    reached = consumer.position([TopicPartition(topic, partition) for partition in range(partitions)])
    consumer.assign(
        [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in reached]
    )


def poll_some(consumer: Any, handle: Callable[[KafkaMessage], None], most: int) -> None:
    """Hand up to ``most`` waiting records of an assigned consumer to ``handle``, without blocking."""
    if consumer is None:
        return
    for _ in range(most):
        message = consumer.poll(0)
        if message is None:
            return
        if message.error() is not None:
            continue  # partition EOF and transient errors: nothing to apply
        handle(message)
