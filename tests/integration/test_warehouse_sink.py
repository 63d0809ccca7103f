"""The sink against a real broker and chDB: every topic lands typed in its table, bad records go to the DLQ and
its table, re-delivery does not duplicate, and a SIGKILLed sink loses and duplicates nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consumers.warehouse_sink import SinkThread, group_id
from ibstream.config import Settings
from ibstream.contracts import TOPICS, DeadLetter, Quote, Record, TopicSpec, quotes
from ibstream.kafka.clients import committed_offsets, consumer_config, create_admin, create_producer
from ibstream.kafka.records import RecordProducer
from ibstream.warehouse import Warehouse
from tests.integration.warehouse_helpers import ALL_TIME, CODEC, count_final, wait_for, warehouse_settings
from tests.strategies import records

pytestmark = pytest.mark.integration


def _draw(spec: TopicSpec[Record], low: int, high: int) -> list[Record]:
    drawn: list[Record] = []

    @hypothesis_settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(records(spec.record), min_size=low, max_size=high))
    def draw(batch: list[Record]) -> None:
        drawn[:] = batch

    draw()
    return drawn


def test_every_topic_lands_in_its_table_with_its_values(settings: Settings, tmp_path: Path) -> None:
    wh_settings = warehouse_settings(settings, tmp_path / "wh")
    producer = RecordProducer(create_producer(wh_settings), CODEC, wh_settings.kafka.topic_prefix)
    sent: dict[str, list[Record]] = {}
    for spec in TOPICS:
        sent[spec.name] = _draw(spec, 3, 8)
        for record in sent[spec.name]:
            producer.send(spec, record)
    quote_topic = producer.topic(quotes.TOPIC)
    bad_at: list[tuple[int, int]] = []
    producer.send_raw(
        quote_topic,
        b"BAD",
        b"\xc3\x01 not a fingerprint we know",
        on_delivery=lambda error, message: bad_at.append((message.partition(), message.offset())),
    )
    assert producer.flush(30) == 0 and producer.failed == 0

    with Warehouse.open(wh_settings) as warehouse:
        sink = SinkThread(wh_settings, warehouse).start()
        try:
            wait_for(
                lambda: (
                    all(
                        count_final(warehouse, warehouse.schema.for_topic(spec).name) == len(sent[spec.name])
                        for spec in TOPICS
                    )
                    and count_final(warehouse, "dead_letters") == 1
                ),
                60,
                "every record in the warehouse",
            )
        finally:
            sink.stop()

        for spec in TOPICS:
            table = warehouse.schema.for_topic(spec)
            stored = list(warehouse.stream_records(table, producer.topic(spec), *ALL_TIME))
            # Values round-trip through ClickHouse types; order per key is Kafka's (partition, offset) order.
            assert Counter(map(repr, (s.record for s in stored))) == Counter(map(repr, sent[spec.name])), spec.name
            for key in {spec.key_of(r) for r in sent[spec.name]}:
                assert [s.record for s in stored if spec.key_of(s.record) == key] == [
                    r for r in sent[spec.name] if spec.key_of(r) == key
                ]
            assert all(s.topic == producer.topic(spec) for s in stored)

        [letter] = list(
            warehouse.stream_records(
                warehouse.schema.dead_letters, wh_settings.kafka.topic_prefix + quotes.TOPIC.dlq_name, *ALL_TIME
            )
        )
        assert isinstance(letter.record, DeadLetter)
        assert letter.record.original_topic == quote_topic
        assert [(letter.record.partition, letter.record.offset)] == bad_at
        assert letter.record.value == b"\xc3\x01 not a fingerprint we know"
        assert letter.record.key == b"BAD"
        assert letter.record.error_kind == "decode"

        # Sink lag and consumer lag are queryable as views.
        lags = warehouse.query("SELECT count(), min(lag_ms) FROM sink_lag").rows[0]
        assert lags[0] == sum(len(v) for v in sent.values()) + 1 and lags[1] >= 0
        consumer_lag = warehouse.query(
            "SELECT sum(lag) FROM consumer_lag WHERE group_id = {g:String}", {"g": group_id(wh_settings)}
        ).rows
        assert consumer_lag == [(0,)]


def test_redelivered_batch_is_not_duplicated_in_reads(settings: Settings, tmp_path: Path, quote_sample: Quote) -> None:
    wh_settings = warehouse_settings(settings, tmp_path / "wh")
    topic = wh_settings.kafka.topic_prefix + quotes.TOPIC.name
    with Warehouse.open(wh_settings) as warehouse:
        table = warehouse.schema.for_topic(quotes.TOPIC)
        batch = [(quote_sample.model_copy(update={"con_id": i}), i % 2, i, datetime.now(UTC)) for i in range(10)]
        warehouse.insert_records(table, topic, batch)
        warehouse.insert_records(table, topic, batch[4:])  # a crash after insert, before commit: same offsets again
        raw = warehouse.query(f"SELECT count() FROM {warehouse.table(table.name)}").rows[0][0]
        assert raw == 16  # the duplicate really is stored until a merge...
        assert count_final(warehouse, table.name) == 10  # ...and deduplicated reads never see it
        assert [s.record.con_id for s in warehouse.stream_records(table, topic, *ALL_TIME)] == [
            0,
            2,
            4,
            6,
            8,
            1,
            3,
            5,
            7,
            9,
        ]


def _sink_process(wh_settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS": wh_settings.kafka.bootstrap_servers,
        "IBSTREAM_KAFKA_TOPIC_PREFIX": wh_settings.kafka.topic_prefix,
        "IBSTREAM_WAREHOUSE_DIR": str(wh_settings.warehouse_path),
        "IBSTREAM_WAREHOUSE_BATCH_ROWS": str(wh_settings.warehouse.batch_rows),
        "IBSTREAM_WAREHOUSE_BATCH_SECONDS": str(wh_settings.warehouse.batch_seconds),
        "IBSTREAM_SINK_HEALTH_PORT": "0",  # any free port: tests may run several sinks at once
    }
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "ibstream.cli", "run", "sink"], env=env, stdout=log, stderr=log)


def test_sink_killed_mid_batch_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path, quote_sample: Quote
) -> None:
    # Small batches so the kill lands while batches are being inserted and committed.
    wh_settings = warehouse_settings(settings, tmp_path / "wh", warehouse_batch_rows=200, warehouse_batch_seconds=0.5)
    spec = quotes.TOPIC
    topic = wh_settings.kafka.topic_prefix + spec.name
    total = 6000
    producer = RecordProducer(create_producer(wh_settings, "bulk"), CODEC, wh_settings.kafka.topic_prefix)
    symbols = [f"S{i:02d}" for i in range(24)]
    for i in range(total):
        producer.send(spec, quote_sample.model_copy(update={"symbol": symbols[i % len(symbols)], "con_id": i}))
    assert producer.flush(60) == 0 and producer.failed == 0

    reader = Consumer(consumer_config(wh_settings, group_id(wh_settings)))
    log_path = tmp_path / "sink.log"

    def committed() -> int:
        return sum(committed_offsets(reader, {topic: spec.partitions}, timeout=5).values())

    try:
        first = _sink_process(wh_settings, log_path)
        try:
            wait_for(lambda: committed() > 0, 60, "the first committed batch", interval=0.05)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        at_kill = committed()
        assert 0 < at_kill < total, f"kill came too late to be mid-stream ({at_kill} of {total} committed)"

        second = _sink_process(wh_settings, log_path)
        try:
            wait_for(lambda: committed() == total, 90, "every offset committed after the restart")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, log_path.read_text()[-3000:]
    finally:
        reader.close()

    with Warehouse.open(wh_settings) as warehouse:
        table = warehouse.table(warehouse.schema.for_topic(spec).name)
        rows = warehouse.query(
            f"SELECT _partition, _offset, con_id FROM {table} FINAL WHERE _topic = {{t:String}}", {"t": topic}
        ).rows
        offsets = Counter((p, o) for p, o, _ in rows)
        assert len(rows) == total and max(offsets.values()) == 1  # no duplicates...
        per_partition = Counter(p for p, _ in offsets)
        for partition, count in per_partition.items():  # ...and no holes: offsets 0..n-1 in every partition
            assert {o for p, o in offsets if p == partition} == set(range(count))
        assert sorted(c for _, _, c in rows) == list(range(total))
        raw = warehouse.query(f"SELECT count() FROM {table}").rows[0][0]
        print(
            f"\nkilled at {at_kill}/{total} committed; raw rows {raw} "
            f"(re-delivered duplicates before merge: {raw - total})"
        )


def test_fenced_sink_consumer_is_replaced_and_sinking_goes_on(
    settings: Settings, tmp_path: Path, quote_sample: Quote
) -> None:
    """A static member fenced for good (what librdkafka does to it after a session timeout during a broker restart)
    must not stall the sink: it joins again as a new consumer and every record still lands, once."""
    wh_settings = warehouse_settings(settings, tmp_path / "wh", warehouse_batch_rows=50, warehouse_batch_seconds=0.2)
    producer = RecordProducer(create_producer(wh_settings), CODEC, wh_settings.kafka.topic_prefix)
    table_name = "md_quotes_v1"

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            producer.send(quotes.TOPIC, quote_sample.model_copy(update={"symbol": f"S{i % 7}", "con_id": i}))
        assert producer.flush(30) == 0 and producer.failed == 0

    with Warehouse.open(wh_settings) as warehouse:
        thread = SinkThread(wh_settings, warehouse).start()
        try:
            send(0, 100)
            wait_for(lambda: count_final(warehouse, table_name) == 100, 60, "the first 100 quotes")
            # Another consumer with the sink's group.instance.id joins: the broker fences the sink's consumer.
            intruder = Consumer(
                consumer_config(
                    wh_settings,
                    group_id(wh_settings),
                    **{
                        "group.instance.id": f"{group_id(wh_settings)}-{socket.gethostname()}",
                        "enable.auto.commit": False,
                    },
                )
            )
            intruder.subscribe(list(thread.sink.routes))
            try:

                def replaced() -> bool:
                    intruder.poll(0.1)  # joins the group (and so fences the sink's consumer)
                    return thread.sink.consumers_replaced >= 1

                wait_for(replaced, 60, "the fenced consumer replaced")
            finally:
                with contextlib.suppress(Exception):  # the sink's new consumer fences the intruder in turn
                    intruder.close()
            send(100, 100)
            wait_for(lambda: count_final(warehouse, table_name) == 200, 60, "the next 100 quotes after replacing")
            assert thread.alive
        finally:
            thread.stop()
        rows = warehouse.query(f"SELECT con_id FROM {warehouse.table(table_name)} FINAL").rows
        assert sorted(r[0] for r in rows) == list(range(200))


def test_a_row_the_warehouse_refuses_goes_to_the_dlq_and_the_rest_of_its_batch_lands(
    settings: Settings, tmp_path: Path, quote_sample: Quote
) -> None:
    """One poison row among good ones (here: a row violating a table constraint, refused by ClickHouse itself) used
    to fail its whole batch on every retry until the sink thread died; now the batch is split, the good rows land,
    the refused row is in the DLQ with the warehouse's error, and the sink keeps running."""
    wh_settings = warehouse_settings(settings, tmp_path / "wh", warehouse_batch_rows=100, warehouse_batch_seconds=0.5)
    producer = RecordProducer(create_producer(wh_settings), CODEC, wh_settings.kafka.topic_prefix)
    topic = producer.topic(quotes.TOPIC)
    poison = quote_sample.model_copy(update={"symbol": "POISON", "con_id": 666})
    poison_at: list[tuple[int, int]] = []

    def send(con_ids: range) -> None:
        for i in con_ids:
            producer.send(quotes.TOPIC, quote_sample.model_copy(update={"symbol": f"S{i % 5}", "con_id": i}))
        assert producer.flush(30) == 0 and producer.failed == 0

    with Warehouse.open(wh_settings) as warehouse:
        table = warehouse.schema.for_topic(quotes.TOPIC).name
        warehouse.command(f"ALTER TABLE {warehouse.table(table)} ADD CONSTRAINT no_poison CHECK con_id != 666")
        send(range(0, 20))
        producer.send(
            quotes.TOPIC,
            poison,
            on_delivery=lambda error, message: poison_at.append((message.partition(), message.offset())),
        )
        send(range(20, 40))
        thread = SinkThread(wh_settings, warehouse).start()
        try:
            wait_for(
                lambda: count_final(warehouse, table) == 40 and count_final(warehouse, "dead_letters") == 1,
                60,
                "the 40 good quotes in their table and the poison one in the dead letters",
            )
            assert thread.alive
            send(range(40, 50))  # the sink goes on with the next batches
            wait_for(lambda: count_final(warehouse, table) == 50, 60, "the next 10 quotes")
            assert thread.alive
        finally:
            thread.stop()

        stored = warehouse.query(f"SELECT con_id FROM {warehouse.table(table)} FINAL").rows
        assert sorted(row[0] for row in stored) == list(range(50))
        [letter] = [
            s.record
            for s in warehouse.stream_records(
                warehouse.schema.dead_letters, wh_settings.kafka.topic_prefix + quotes.TOPIC.dlq_name, *ALL_TIME
            )
        ]
        assert isinstance(letter, DeadLetter)
        assert (letter.original_topic, [(letter.partition, letter.offset)]) == (topic, poison_at)
        assert letter.error_kind == "insert"
        assert "no_poison" in letter.error_message
        assert letter.value == CODEC.encode(topic, poison)
        assert letter.component == "warehouse_sink"


def test_a_message_stamped_beyond_year_9999_goes_to_the_dlq_and_the_sink_goes_on(
    settings: Settings, tmp_path: Path, quote_sample: Quote
) -> None:
    """A topic that accepts any future timestamp (message.timestamp.after.max.ms raised) can hold a message whose
    Kafka timestamp no datetime can represent: its row cannot be built, so it is dead-lettered instead of stopping
    the sink."""
    wh_settings = warehouse_settings(settings, tmp_path / "wh")
    topic = wh_settings.kafka.topic_prefix + quotes.TOPIC.name
    admin = create_admin(wh_settings)
    unlimited = ConfigEntry(
        "message.timestamp.after.max.ms", str(2**63 - 1), incremental_operation=AlterConfigOpType.SET
    )
    for done in admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[unlimited])]
    ).values():
        done.result()

    def config_applied() -> bool:
        described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        entries = next(iter(described.values())).result()
        return entries["message.timestamp.after.max.ms"].value == str(2**63 - 1)

    # A produce the broker refuses (config not applied yet) makes confluent-kafka fail while building the delivery
    # report of a year-10000 message (TypeError inside its C code, surfacing later as SystemError): under load the
    # first attempt raced the config. Produce only once the broker describes the new limit.
    wait_for(config_applied, 30, "the broker to describe the raised message.timestamp.after.max.ms", interval=0.2)
    far = quote_sample.model_copy(update={"symbol": "FAR", "con_id": 10_000})
    far_ms = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000) + 2 * 86_400_000  # 2 January 10000

    def produce_far() -> bool:
        outcome: list[Any] = []
        raw = create_producer(wh_settings)
        raw.produce(
            topic, CODEC.encode(topic, far), b"FAR", timestamp=far_ms, on_delivery=lambda e, m: outcome.append(e)
        )
        raw.flush(10)
        return outcome == [None]

    wait_for(produce_far, 30, "the broker to accept a timestamp in year 10000 (topic config applied)", interval=0.5)
    producer = RecordProducer(create_producer(wh_settings), CODEC, wh_settings.kafka.topic_prefix)
    for i in range(10):
        producer.send(quotes.TOPIC, quote_sample.model_copy(update={"symbol": f"S{i}", "con_id": i}))
    assert producer.flush(30) == 0 and producer.failed == 0

    with Warehouse.open(wh_settings) as warehouse:
        thread = SinkThread(wh_settings, warehouse).start()
        try:
            wait_for(
                lambda: count_final(warehouse, "md_quotes_v1") == 10 and count_final(warehouse, "dead_letters") >= 1,
                60,
                "the 10 quotes in their table and the far-future one in the dead letters",
            )
            assert thread.alive
        finally:
            thread.stop()
        letters = [
            s.record
            for s in warehouse.stream_records(
                warehouse.schema.dead_letters, wh_settings.kafka.topic_prefix + quotes.TOPIC.dlq_name, *ALL_TIME
            )
        ]
        assert letters and all(isinstance(letter, DeadLetter) for letter in letters)
        assert {(letter.key, letter.error_kind) for letter in letters} == {(b"FAR", "processing")}
        assert "year" in letters[0].error_message
