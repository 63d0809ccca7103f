"""The warehouse sink: every catalogue topic and every DLQ → one ClickHouse table per topic, in batches.

Commit point: offsets are committed only after the batch's inserts succeeded and its dead letters were delivered.
A crash anywhere before the commit re-delivers the batch; the tables are ReplacingMergeTree on (topic, partition,
offset), so the second copy replaces the first and deduplicated reads (FINAL) never see it twice.

Bad data never stops the sink: a record that does not decode, or whose row cannot be built, goes to its topic's DLQ
when consumed; a batch the warehouse refuses (after retries) while it still answers queries is split in halves
(``splitting.insert_bisecting``) until each refused row stands alone, and each of those goes to the DLQ with the
warehouse's error (``error_kind`` "insert"). Only a warehouse that stops answering, or dead letters Kafka will not
take, stop the sink: those are outages, which liveness (``SinkThread.alive``, the API's /health) reports.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.warehouse_sink.batching import Batch
from consumers.warehouse_sink.lag import LagWatch
from consumers.warehouse_sink.splitting import insert_bisecting
from ibstream.config import Settings
from ibstream.contracts import TOPICS, DeadLetter, Record, TopicSpec
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.exceptions import IbstreamError
from ibstream.kafka.clients import (
    OffsetError,
    commit_offsets,
    create_admin,
    create_consumer,
    create_producer,
    end_offsets,
    is_fatal,
)
from ibstream.kafka.records import DeadLetterRouter, RecordProducer, codec_from_settings, decode_message
from ibstream.telemetry import record_error
from ibstream.warehouse import TableSpec, Warehouse, WarehouseError
from ibstream.warehouse.metrics import NullMetrics, SinkMetrics
from ibstream.warehouse.schema import kafka_ms

log = logging.getLogger(__name__)

COMPONENT = "warehouse_sink"
#: How often consumer lag is measured (a broker round trip per partition).
PROGRESS_INTERVAL_S = 5.0
INSERT_ATTEMPTS = 5


class WarehouseUnreachableError(IbstreamError):
    """An insert failed and the warehouse does not answer a query either: an outage, not a bad row."""


def group_id(settings: Settings) -> str:
    """The sink's consumer group; the topic prefix isolates tenants and tests sharing a cluster."""
    return f"{settings.kafka.topic_prefix}ibstream.warehouse-sink"


@dataclass(frozen=True)
class Route:
    """Where a topic's messages go: its contract and its table (DLQ topics: the dead-letter table)."""

    spec: TopicSpec[Any]
    table: TableSpec
    is_dlq: bool


class WarehouseSink:
    """Consumes every topic and writes batches to the warehouse; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        warehouse: Warehouse,
        *,
        codec: Codec | None = None,
        metrics: SinkMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.codec = codec or codec_from_settings(settings)
        self.metrics = metrics or NullMetrics()
        self.group_id = group_id(settings)
        prefix = settings.kafka.topic_prefix
        self.routes: dict[str, Route] = {}
        for spec in TOPICS:
            self.routes[prefix + spec.name] = Route(spec, warehouse.schema.for_topic(spec), False)
            self.routes[prefix + spec.dlq_name] = Route(spec, warehouse.schema.dead_letters, True)
        self.consumer = self._create_consumer()
        self.consumers_replaced = 0
        self.producer = RecordProducer(create_producer(settings, "bulk"), self.codec, prefix)
        self.router = DeadLetterRouter(self.producer, self.codec, COMPONENT, prefix, group=self.group_id)
        self.batch = Batch(settings.warehouse.batch_rows, settings.warehouse.batch_seconds, clock)
        self.inserted = 0
        self.committed_batches = 0
        self._last_progress = 0.0
        self.last_poll = time.monotonic()
        self._partitions_seen: set[tuple[str, int]] = set()
        self._lag_watch = LagWatch()
        # Lag lookups on a client of their own: on the consumer's connection they would wait behind its fetches.
        self._offsets_client = create_admin(settings)

    def _create_consumer(self) -> Any:
        return create_consumer(
            self.settings,
            self.group_id,
            **{
                "enable.auto.commit": False,
                # Static membership: a restarted sink takes its partitions back at once instead of waiting for the
                # dead member's session to time out.
                "group.instance.id": f"{self.group_id}-{self.settings.sink.instance_id or socket.gethostname()}",
                "session.timeout.ms": 10_000,
            },
        )

    def _subscribe(self) -> None:
        self.consumer.subscribe(list(self.routes), on_revoke=self._on_revoke)

    # -- main loop ---------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume and sink until ``stop`` is set; the last batch is flushed before returning."""
        self._subscribe()
        log.info("warehouse sink started", extra={"group_id": self.group_id, "topics": len(self.routes)})
        try:
            while not stop.is_set():
                self.poll_once()
            self.flush()
        finally:
            self.close()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """For /ready: the loop is polling (not stuck in an insert or commit) and the warehouse answers."""
        stalled_for = time.monotonic() - self.last_poll
        try:
            self.warehouse.query("SELECT 1")
            warehouse_ok = True
        except Exception:
            warehouse_ok = False
        details = {
            "rows_inserted": self.inserted,
            "batches_committed": self.committed_batches,
            "seconds_since_poll": round(stalled_for, 1),
            "warehouse_reachable": warehouse_ok,
            "consumers_replaced": self.consumers_replaced,
        }
        return stalled_for < 60 and warehouse_ok, details

    def poll_once(self, timeout: float = 0.2) -> None:
        """Consume what is available (up to one batch) and flush if the batch is due."""
        self.last_poll = time.monotonic()
        room = max(1, min(self.batch.max_rows - self.batch.messages, 5_000))
        for message in self.consumer.consume(num_messages=room, timeout=timeout):
            error = message.error()
            if is_fatal(error):
                self._replace_consumer(str(error))
                return
            if error is not None:
                log.warning("consumer error", extra={"topic": message.topic(), "error": str(error)})
                continue
            self._handle(message)
        if self.batch.due():
            self.flush()
        elif self.batch.messages == 0:
            self._record_progress()  # idle: partitions still behind at the last measurement are measured again

    def _handle(self, message: Any) -> None:
        topic: str = message.topic()
        partition: int = message.partition()
        offset: int = message.offset()
        route = self.routes.get(topic)
        if route is None:  # not ours (cannot happen with an explicit subscription list, but never crash on it)
            return
        record: Record | None = None
        fields: dict[str, Any] | None = None
        try:
            if route.is_dlq:
                record = self.codec.decode(topic, DeadLetter, message.value(), partition, offset)
            else:
                # Straight to the row where the model would check nothing Avro has not (most records, all quotes
                # and bars): building it cost the sink a third of its time.
                fields = self.codec.decode_fields(topic, route.spec.record, message.value(), partition, offset)
                if fields is None:
                    record = decode_message(self.codec, route.spec, message)
        except DecodeError as error:
            if route.is_dlq:
                # A broken dead letter has nowhere further to go: log it with its coordinates and move on.
                log.error(
                    "undecodable dead letter skipped",
                    extra={"topic": topic, "partition": partition, "offset": offset, "error": str(error)},
                )
            else:
                self.router.route(route.spec, message, error)
                record_error("decode", COMPONENT)
            self.batch.add(None, None, topic, partition, offset)
            return
        try:
            _, timestamp_ms = message.timestamp()
            at_ms = kafka_ms(timestamp_ms, int(time.time() * 1000))
            if record is not None:
                row = route.table.tick_row(record, topic, partition, offset, at_ms, 0)
            else:
                row = route.table.fields_row(fields or {}, topic, partition, offset, at_ms, 0)
        except (ValueError, OverflowError, TypeError) as error:  # e.g. a Kafka timestamp beyond year 9999
            self._dead_letter(route, message, error, "processing")
            self.batch.add(None, None, topic, partition, offset)
            return
        self.batch.add(route.table, row, topic, partition, offset, message)
        self._feed_lag(route, fields if fields is not None else getattr(record, "__dict__", {}))

    def _feed_lag(self, route: Route, fields: Mapping[str, Any]) -> None:
        """Feed lag (ingest − event time) of a record with both, whether its times are datetimes or µs ticks."""
        event_time, ingest_time = fields.get("event_time"), fields.get("ingest_time")
        if isinstance(event_time, int) and isinstance(ingest_time, int):
            self.metrics.feed_lag(route.spec.name, (ingest_time - event_time) / 1_000_000)
        elif isinstance(event_time, datetime) and isinstance(ingest_time, datetime):
            self.metrics.feed_lag(route.spec.name, (ingest_time - event_time).total_seconds())

    # -- commit point --------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Insert the batch, make sure its dead letters are delivered, then commit its offsets (in that order)."""
        if self.batch.messages == 0:
            return
        inserted_us = time.time_ns() // 1000
        for table, rows in self.batch.rows.values():
            # The insert time is the flush time: sink lag measures how long a record waited for its batch.
            for row in rows:
                row[-1] = inserted_us
            inserted = self._insert_table(table, rows, self.batch.sources.get(table.name, []))
            self.metrics.rows_inserted(table.name, inserted)
            step = max(1, len(rows) // 64)
            for row in rows[::step]:
                self.metrics.sink_lag(table.name, (inserted_us - row[-2] * 1000) / 1_000_000)
            self.inserted += inserted
        if self.router.routed:
            failed_before = self.producer.failed
            if self.producer.flush(30) != 0 or self.producer.failed != failed_before:
                # Not committing keeps the undelivered dead letters' source records for the next attempt.
                raise IbstreamError("dead letters could not be delivered; offsets not committed")
        try:
            commit_offsets(self.consumer, self.batch.next_offsets)
        except OffsetError as error:
            # The rows are in; a re-delivery after a failed commit is deduplicated by (topic, partition, offset).
            log.warning("offset commit failed after insert", extra={"error": str(error)})
        else:
            self.committed_batches += 1
        self._partitions_seen.update(self.batch.next_offsets)
        self._lag_watch.committed(self.batch.next_offsets)
        self._record_progress()
        log.debug("batch committed", extra={"messages": self.batch.messages, "tables": len(self.batch.rows)})
        self.batch.clear()

    def _insert_table(self, table: TableSpec, rows: list[list[Any]], sources: Sequence[Any]) -> int:
        """Insert one table's rows; rows the warehouse refuses go to the DLQ. Returns how many rows are in."""
        try:
            self._insert_with_retry(table, rows)
            return len(rows)
        except WarehouseError as error:
            if not self._warehouse_answers():
                raise  # an outage, not bad data: nothing is committed, the batch is re-delivered after a restart
            first_error = error
        log.warning("warehouse refused a batch; splitting it", extra={"table": table.name, "rows": len(rows)})

        def insert(part: Sequence[list[Any]]) -> None:
            try:
                self.warehouse.insert(table, part)
            except WarehouseError as part_error:
                # Before blaming a single row, make sure the warehouse did not just go away mid-split.
                if len(part) == 1 and not self._warehouse_answers():
                    raise WarehouseUnreachableError(f"the warehouse stopped answering: {part_error}") from None
                raise

        failed = insert_bisecting(rows, insert, first_error)
        for index, refusal in failed:
            source = sources[index]
            self._dead_letter(self.routes[source.topic()], source, refusal, "insert")
        return len(rows) - len(failed)

    def _dead_letter(self, route: Route, message: Any, error: BaseException, kind: str) -> None:
        record_error(f"row_{kind}", COMPONENT)
        if route.is_dlq:
            # A dead letter that cannot be stored has nowhere further to go: log it with its coordinates.
            log.error(
                "dead letter dropped",
                extra={
                    "topic": message.topic(),
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "error": str(error),
                },
            )
            return
        self.router.route(route.spec, message, error, kind)

    def _warehouse_answers(self) -> bool:
        try:
            self.warehouse.query("SELECT 1")
        except WarehouseError:
            return False
        return True

    def _insert_with_retry(self, table: TableSpec, rows: list[list[Any]]) -> None:
        delay = 0.2
        for attempt in range(1, INSERT_ATTEMPTS + 1):
            try:
                self.warehouse.insert(table, rows)
                return
            except WarehouseError as error:
                first = rows[0]
                log.error(
                    "warehouse insert failed",
                    extra={
                        "table": table.name,
                        "attempt": attempt,
                        "rows": len(rows),
                        "error": str(error),
                        "topic": first[-5],
                        "partition": first[-4],
                        "offset": first[-3],
                    },
                )
                record_error("warehouse_insert", COMPONENT)
                if attempt == INSERT_ATTEMPTS:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _record_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        due = self._lag_watch.take()
        try:
            highs = end_offsets(self._offsets_client, due, timeout=2.0)
        except Exception as error:  # lag is observability: never let it stop the sink
            log.warning("end offset lookup failed", extra={"partitions": len(due), "error": str(error)})
            highs = {}
        else:
            if len(highs) < len(due):
                log.warning(
                    "end offsets not found; those partitions are measured next time",
                    extra={"partitions": len(due) - len(highs)},
                )
        rows = []
        for (topic, partition), next_offset in due.items():
            high = highs.get((topic, partition))
            if high is None:
                self._lag_watch.measured((topic, partition), next_offset, None)
                continue
            lag = max(high - next_offset, 0)
            self._lag_watch.measured((topic, partition), next_offset, lag)
            rows.append((topic, partition, next_offset, high))
            self.metrics.consumer_lag(topic, partition, lag)
        if not rows:
            return
        try:
            self.warehouse.record_progress(self.group_id, rows)
        except WarehouseError as error:
            log.warning("recording sink progress failed", extra={"error": str(error)})

    def _replace_consumer(self, reason: str) -> None:
        """A fenced consumer never consumes again (``is_fatal``): sink what it delivered, then join as a new one.

        The batch's offsets cannot be committed by a fenced member, so the new consumer re-reads from the last commit;
        the re-delivered rows replace their first copies (ReplacingMergeTree on topic, partition, offset).
        """
        log.error("sink consumer fenced; replacing it", extra={"group_id": self.group_id, "error": reason})
        record_error("consumer_fenced", COMPONENT)
        try:
            self.flush()
        except Exception:
            log.exception("flush before replacing the consumer failed; the batch will be re-delivered")
            self.batch.clear()
        try:
            self.consumer.close()
        except Exception as error:  # a fenced consumer may refuse to leave politely; it is dropped either way
            log.warning("closing the fenced consumer failed", extra={"error": str(error)})
        self.consumer = self._create_consumer()
        self._subscribe()
        self.consumers_replaced += 1

    def _on_revoke(self, consumer: Any, partitions: Any) -> None:
        # Commit what we hold before the partitions move, so the next owner does not redo (harmless) work.
        try:
            self.flush()
        except Exception:
            log.exception("flush on partition revoke failed; the batch will be re-delivered")
            self.batch.clear()
        self._lag_watch.revoked((p.topic, p.partition) for p in partitions)

    def close(self) -> None:
        """Leave the group politely and flush the DLQ producer."""
        self.producer.flush(10)
        self.consumer.close()


class SinkThread:
    """The sink on a background thread, sharing the caller's ``Warehouse`` (embedded chDB: one process per
    directory, so the API's readers and the sink live together — ``ibstream run api --with-sink``)."""

    def __init__(self, settings: Settings, warehouse: Warehouse, metrics: SinkMetrics | None = None) -> None:
        self.sink = WarehouseSink(settings, warehouse, metrics=metrics)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="warehouse-sink", daemon=True)

    def _run(self) -> None:
        try:
            self.sink.run(self._stop)
        except BaseException as error:
            self.error = error
            log.exception("warehouse sink stopped on an error")

    def start(self) -> SinkThread:
        """Start consuming."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Flush, commit and leave; re-raises an error that stopped the sink."""
        self._stop.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()
