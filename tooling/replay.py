"""Replay: re-emit a topic's records from a time window, from Kafka or from the warehouse, to recover a gap.

The window is the Kafka record timestamp in [from, to) — the time Kafka indexes (``offsets_for_times``) and the
warehouse keeps as ``_kafka_ts`` — so both sources select the same records. Records whose ``source`` field is a
``MarketDataSource`` are re-emitted with ``source=replay``; every other record is re-emitted unchanged. Keys are
the topic's keys and records are emitted in (partition, offset) order, so per-key order is preserved. Downstream
treats replays idempotently: bars are identified by (symbol, start), orders by deterministic ids, and the
warehouse deduplicates by (topic, partition, offset).

From Kafka, a separate consumer is assigned partitions at explicit offsets: no group subscription, no commits, so
replaying never moves any group's position. From the warehouse, the directory is opened directly; while another
process holds the embedded directory (the API, in the embedded default), the same records are paged through the
running API (``ibstream.warehouse.remote``: ``GET /v1/topics/{topic}/records``, admin token in IBSTREAM_API_TOKEN).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal

from ibstream.config import Settings
from ibstream.contracts import TOPICS, Record, TopicSpec
from ibstream.contracts.base import MARKET_DATA_PREFIX, checks_only_avro_types
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import Codec, DecodeError
from ibstream.exceptions import IbstreamError
from ibstream.kafka.clients import (
    assign_at,
    create_consumer,
    create_producer,
    high_watermark,
    offsets_for_time,
    partition_count,
)
from ibstream.kafka.records import RecordProducer, codec_from_settings, decode_message

ReplaySource = Literal["kafka", "warehouse"]


class ReplayError(IbstreamError):
    """A replay could not be set up or did not deliver every record."""


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did."""

    topic: str
    target_topic: str
    source: ReplaySource
    read: int
    emitted: int
    undecodable: int
    seconds: float

    @property
    def rate(self) -> float:
        """Records emitted per second."""
        return self.emitted / self.seconds if self.seconds > 0 else 0.0


def topic_spec(name: str) -> TopicSpec[Any]:
    """The catalogue topic called ``name`` (without prefix)."""
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise ReplayError(f"unknown topic {name!r}; known: {', '.join(spec.name for spec in TOPICS)}")


def refuse_unless_market_data(topic: str, target: str) -> None:
    """ReplayError unless the source is a market-data topic (``md.*``) and the target is one too, or a topic outside
    the catalogue (a scratch topic to inspect a window): never a trading or control topic."""
    catalogue = {spec.name for spec in TOPICS}
    for name in (topic, *([target] if target in catalogue else [])):
        if not name.startswith(MARKET_DATA_PREFIX):
            raise ReplayError(
                f"replay re-emits market data only ({MARKET_DATA_PREFIX}* topics); refusing {name}: replaying "
                "control, order intents, risk decisions, routed orders, order events or executions would re-apply "
                "old commands or re-drive trading"
            )


def as_replay(record: Record) -> Record:
    """The record to re-emit: market records get ``source=replay``; records without one stay as they are."""
    if isinstance(getattr(record, "source", None), MarketDataSource):
        return record.model_copy(update={"source": MarketDataSource.REPLAY})
    return record


@dataclass(frozen=True)
class DecodedFields:
    """A consumed record as its fields (``Codec.decode_fields``) and its Kafka key: re-emitted without building
    its model, which cost replay half its time."""

    fields: dict[str, Any]
    key: bytes


def fields_as_replay(record_type: type[Record], fields: dict[str, Any]) -> dict[str, Any]:
    """``as_replay`` of a record given as its fields: ``source=replay`` where the field is a ``MarketDataSource``."""
    source = record_type.model_fields.get("source")
    if source is not None and source.annotation is MarketDataSource:
        return {**fields, "source": MarketDataSource.REPLAY.value}
    return fields


def _emitted(codec: Codec, spec: TopicSpec[Any], target: str, item: Record | DecodedFields) -> tuple[bytes, bytes, Any]:
    """Key, value and symbol (None: none) of one record to re-emit."""
    if isinstance(item, DecodedFields):
        value = codec.encode_fields(target, spec.record, fields_as_replay(spec.record, item.fields))
        return item.key, value, item.fields.get("symbol")
    replayed = as_replay(item)
    return spec.key_of(replayed).encode(), codec.encode(target, replayed), getattr(item, "symbol", None)


class _Pacer:
    """At most ``rate`` records per second (none: unbounded)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
        self._next = max(self._next, now) + self._interval


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def kafka_records(
    settings: Settings,
    codec: Codec,
    spec: TopicSpec[Any],
    topic: str,
    start: datetime,
    end: datetime,
    *,
    models: bool = False,
) -> tuple[int, Iterator[Record | DecodedFields | None]]:
    """How many records of ``topic`` have a Kafka timestamp in [start, end), and those records in (partition,
    offset) order (None for one that does not decode), read by a consumer of its own (no group, no commits).
    A check-free record comes as its decoded fields (re-emitted without a model) unless ``models`` (a reader that
    needs the records themselves, such as the backtest)."""
    consumer = create_consumer(settings, f"ibstream-replay-{uuid.uuid4().hex[:12]}", **{"enable.auto.commit": False})
    try:
        partitions = partition_count(consumer, topic)
        first = offsets_for_time(consumer, topic, partitions, _ms(start))
        last = offsets_for_time(consumer, topic, partitions, _ms(end))
        ends = {p: min(last[p], high_watermark(consumer, topic, p)) for p in range(partitions)}
    except BaseException:
        consumer.close()
        raise
    todo = {p: first[p] for p in range(partitions) if first[p] < ends[p]}
    total = sum(ends[p] - first[p] for p in todo)

    def generate() -> Iterator[Record | DecodedFields | None]:
        try:
            if not todo:
                return
            assign_at(consumer, topic, todo)
            remaining = dict(todo)
            idle_deadline = time.monotonic() + 30
            while remaining:
                batch = consumer.consume(num_messages=1000, timeout=0.5)
                if not batch and time.monotonic() > idle_deadline:
                    raise ReplayError(f"{topic}: no records for 30 s before reaching the window's end offsets")
                for message in batch:
                    if message.error() is not None:
                        continue
                    idle_deadline = time.monotonic() + 30
                    partition, offset = message.partition() or 0, message.offset() or 0
                    if partition not in remaining or offset >= ends[partition]:
                        continue
                    if offset + 1 >= ends[partition]:
                        del remaining[partition]
                    try:
                        fields = (
                            None
                            if models
                            else codec.decode_fields(topic, spec.record, message.value(), partition, offset)
                        )
                        key = message.key()
                        if fields is not None and key is not None:
                            yield DecodedFields(fields, key)  # keyed by the topic's key already
                        else:
                            yield decode_message(codec, spec, message)
                    except DecodeError:
                        yield None  # counted; the sink has already routed it to the DLQ
        finally:
            consumer.close()

    return total, generate()


def _warehouse_records(
    settings: Settings, spec: TopicSpec[Any], topic: str, start: datetime, end: datetime, symbols: Sequence[str]
) -> tuple[int, Iterator[Record | DecodedFields | None], AbstractContextManager[Any]]:
    # Imported here so Kafka-only replays never load ClickHouse.
    from ibstream.warehouse import Warehouse, WarehouseLockedError
    from ibstream.warehouse.remote import through_api

    try:
        warehouse = Warehouse.open(settings)
    except WarehouseLockedError as locked:
        # The embedded directory is held (by the API, in the embedded default): the same records, paged through it.
        reader = through_api(settings, locked)
        try:
            total, remote = reader.records(spec, topic, start, end, symbols)
        except BaseException:
            reader.close()
            raise
        return total, remote, closing(reader)
    table = warehouse.schema.for_topic(spec)
    total = warehouse.count_records(table, topic, start, end, symbols or None)
    records: Iterator[Record | DecodedFields | None]
    record_type: type[Record] = spec.record
    if checks_only_avro_types(record_type):
        # Straight from the columns to the bytes, as from Kafka: no model per record.
        stored = warehouse.stream_fields(table, topic, start, end, symbols or None)
        records = (DecodedFields(fields, key_of_fields(spec, fields)) for fields in stored)
    else:
        records = (stored.record for stored in warehouse.stream_records(table, topic, start, end, symbols or None))
    return total, records, warehouse


def key_of_fields(spec: TopicSpec[Any], fields: dict[str, Any]) -> bytes:
    """The topic's key of a record given as its fields. Market-data keys read a text field (symbol, component),
    which the fields hold as the model does; a test checks every ``md.*`` topic."""
    return spec.key_of(SimpleNamespace(**fields)).encode()


def replay(
    settings: Settings,
    topic: str,
    start: datetime,
    end: datetime,
    *,
    symbols: Sequence[str] = (),
    target_topic: str | None = None,
    source: ReplaySource = "kafka",
    rate: float | None = None,
    progress: bool = False,
) -> ReplayReport:
    """Re-emit ``topic``'s records with a Kafka timestamp in [start, end) to ``target_topic`` (default: the same
    topic). Topic names are catalogue names; the settings' topic prefix is applied to both."""
    if end <= start:
        raise ReplayError("--to must be after --from")
    spec = topic_spec(topic)
    refuse_unless_market_data(spec.name, target_topic or spec.name)
    if symbols and "symbol" not in spec.record.model_fields:
        raise ReplayError(f"{topic} records have no symbol; --symbols does not apply")
    codec = codec_from_settings(settings)
    prefix = settings.kafka.topic_prefix
    source_topic = prefix + spec.name
    target = prefix + (target_topic or spec.name)
    wanted = set(symbols)
    began = time.monotonic()
    closer: AbstractContextManager[Any] = nullcontext()
    records: Iterator[Record | DecodedFields | None]
    if source == "kafka":
        total, records = kafka_records(settings, codec, spec, source_topic, start, end)
    else:
        total, records, closer = _warehouse_records(settings, spec, source_topic, start, end, symbols)
    producer = RecordProducer(create_producer(settings, "bulk"), codec, prefix)
    pacer = _Pacer(rate)
    read = emitted = undecodable = 0
    with closer, _progress(progress, f"replay {spec.name} from {source}", total) as advance:
        for record in records:
            read += 1
            advance()
            if record is None:
                undecodable += 1
                continue
            key, value, symbol = _emitted(codec, spec, target, record)
            if wanted and symbol not in wanted:
                continue
            pacer.wait()
            producer.send_raw(target, key, value, headers={"ibstream.replay.of": source_topic.encode()})
            emitted += 1
        if producer.flush(60) != 0 or producer.failed:
            raise ReplayError(f"{producer.failed} replayed records were not delivered to {target}")
    return ReplayReport(spec.name, target, source, read, emitted, undecodable, time.monotonic() - began)


class _NoProgress:
    def __enter__(self) -> Any:
        return lambda: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, description: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        )
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self) -> Any:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def _progress(enabled: bool, description: str, total: int) -> AbstractContextManager[Any]:
    return _RichProgress(description, total) if enabled else _NoProgress()


def parse_symbols(values: Iterable[str]) -> list[str]:
    """``--symbols AAPL MSFT`` or ``--symbols AAPL,MSFT``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
