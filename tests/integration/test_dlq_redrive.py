"""DLQ redrive over the real broker with the real warehouse sink: a quote the warehouse refuses is dead-lettered with
every fact; once the cause is fixed, `dlq redrive` puts its original bytes, key and headers back on md.quotes.v1, the
sink stores it, and a second redrive sends nothing. A dry run sends nothing either, and a redrive that died before
its commit leaves nothing behind."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Message

from consumers.warehouse_sink import SinkThread, group_id
from ibstream import cli
from ibstream.config import Settings, get_settings
from ibstream.contracts import Quote, quotes, utc_now
from ibstream.contracts.dead_letters import REDRIVE_LEDGER
from ibstream.contracts.serde import DecodeError
from ibstream.kafka.clients import (
    TransactionError,
    Transactions,
    create_admin,
    create_consumer,
    create_producer,
    create_transactional_producer,
)
from ibstream.kafka.records import DeadLetterRouter, RecordProducer, consume_to_end, decode_message
from ibstream.kafka.topics import delete_topics
from ibstream.warehouse import Warehouse
from tests.integration.warehouse_helpers import CODEC, count_final, wait_for, warehouse_settings
from tooling.dlq import ledger_entry, read_ledger, redrive, redrive_headers, render_list, view

pytestmark = pytest.mark.integration

HEADERS = {"trace": b"abc-123", "desk": b"equities"}


def _committed(settings: Settings, topic: str, partitions: int) -> list[Message]:
    """Every committed record of ``topic`` (read_committed: an aborted redrive would not show)."""
    consumer = create_consumer(
        settings, f"test-dlq-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False, "enable.partition.eof": True}
    )
    found: list[Message] = []
    try:
        consume_to_end(consumer, {topic: partitions}, found.append)
    finally:
        consumer.close()
    return found


def test_a_refused_quote_is_dead_lettered_with_its_facts_and_redriven_once_after_the_fix(
    settings: Settings, tmp_path: Path, quote_sample: Quote
) -> None:
    wh_settings = warehouse_settings(settings, tmp_path / "wh", warehouse_batch_rows=100, warehouse_batch_seconds=0.5)
    prefix = wh_settings.kafka.topic_prefix
    producer = RecordProducer(create_producer(wh_settings), CODEC, prefix)
    topic, partitions = producer.topic(quotes.TOPIC), quotes.TOPIC.partitions
    poison = quote_sample.model_copy(update={"symbol": "POISON", "con_id": 666})
    poison_bytes = CODEC.encode(topic, poison)
    sent: list[Message] = []
    try:
        with Warehouse.open(wh_settings) as warehouse:
            table = warehouse.schema.for_topic(quotes.TOPIC).name
            warehouse.command(f"ALTER TABLE {warehouse.table(table)} ADD CONSTRAINT no_poison CHECK con_id != 666")
            for i in range(10):
                producer.send(quotes.TOPIC, quote_sample.model_copy(update={"symbol": f"S{i % 3}", "con_id": i}))
            producer.send_raw(
                topic, b"POISON", poison_bytes, headers=dict(HEADERS), on_delivery=lambda _, m: sent.append(m)
            )
            assert producer.flush(30) == 0 and producer.failed == 0
            [original] = sent
            thread = SinkThread(wh_settings, warehouse).start()
            try:
                wait_for(
                    lambda: count_final(warehouse, table) == 10 and count_final(warehouse, "dead_letters") == 1,
                    60,
                    "the good quotes stored and the refused one dead-lettered",
                )

                # 1. Every fact, in the record and in the headers.
                [entry] = view(wh_settings, quotes.TOPIC.name).entries
                letter = entry.letter
                assert letter is not None
                assert (letter.original_topic, letter.partition, letter.offset) == (
                    topic,
                    original.partition(),
                    original.offset(),
                )
                assert letter.original_timestamp is not None
                assert int(letter.original_timestamp.timestamp() * 1000) == original.timestamp()[1]
                assert letter.consumer_group == group_id(wh_settings)
                assert (letter.component, letter.error_kind) == ("warehouse_sink", "insert")
                assert "no_poison" in letter.error_message
                assert letter.exception_class and letter.stack_trace
                assert letter.exception_class.rsplit(".", 1)[-1] in letter.stack_trace
                assert (letter.key, letter.value, letter.headers) == (b"POISON", poison_bytes, HEADERS)
                [dead] = _committed(wh_settings, prefix + quotes.TOPIC.dlq_name, 1)
                dead_headers = dict(dead.headers() or [])
                assert dead_headers["ibstream.errors.offset"] == str(original.offset()).encode()
                assert dead_headers["ibstream.errors.consumer.group"] == group_id(wh_settings).encode()
                assert dead_headers["ibstream.errors.exception.class.name"] == letter.exception_class.encode()
                assert dead_headers["ibstream.errors.exception.stacktrace"] == letter.stack_trace.encode()

                # 2. A dry run lists it and publishes nothing.
                dry = redrive(wh_settings, quotes.TOPIC.name, dry_run=True)
                assert [e.offset for e in dry.plan.send] == [entry.offset] and dry.dry_run
                assert len(_committed(wh_settings, topic, partitions)) == 11
                assert read_ledger(wh_settings, CODEC) == {}

                # 3. The cause is fixed; the redrive sends the original back and the sink stores it.
                warehouse.command(f"ALTER TABLE {warehouse.table(table)} DROP CONSTRAINT no_poison")
                window = (entry.time - timedelta(seconds=1), entry.time + timedelta(seconds=1))
                done = redrive(wh_settings, quotes.TOPIC.name, start=window[0], end=window[1], operator="pytest")
                assert [e.offset for e in done.plan.send] == [entry.offset]
                assert not done.plan.refused and not done.plan.already
                wait_for(lambda: count_final(warehouse, table) == 11, 60, "the redriven quote stored")
                rows = warehouse.query(f"SELECT con_id FROM {warehouse.table(table)} FINAL").rows
                assert sorted(row[0] for row in rows) == [*range(10), 666]
            finally:
                thread.stop()

        records = _committed(wh_settings, topic, partitions)
        assert len(records) == 12
        [back] = [m for m in records if m.key() == b"POISON" and m.offset() != original.offset()]
        assert back.value() == poison_bytes
        back_headers = dict(back.headers() or [])
        assert {name: back_headers[name] for name in HEADERS} == HEADERS
        assert back_headers["ibstream.redrive.dlq.topic"] == (prefix + quotes.TOPIC.dlq_name).encode()
        assert back_headers["ibstream.redrive.dlq.offset"] == str(entry.offset).encode()
        ledger = read_ledger(wh_settings, CODEC)
        assert list(ledger) == [entry.key]
        assert (ledger[entry.key].original_offset, ledger[entry.key].redriven_by) == (original.offset(), "pytest")

        # 4. Never twice: a second redrive (no window: every dead letter) sends nothing.
        again = redrive(wh_settings, quotes.TOPIC.dlq_name)
        assert again.plan.send == [] and [e.offset for e, _ in again.plan.already] == [entry.offset]
        assert len(_committed(wh_settings, topic, partitions)) == 12
        listed = render_list(view(wh_settings, quotes.TOPIC.name).entries, ledger).splitlines()[0]
        assert (
            f"redriven {ledger[entry.key].redriven_time:%Y-%m-%dT%H:%M:%SZ}" in listed and "not redriven" not in listed
        )
    finally:
        delete_topics(create_admin(settings), [prefix + REDRIVE_LEDGER.name])


def _dead_letter_an_undecodable_quote(settings: Settings) -> tuple[str, int]:
    """Write bytes that are not Avro to md.quotes.v1 and dead-letter them as a reader would; the topic's full name and
    partition count."""
    prefix = settings.kafka.topic_prefix
    producer = RecordProducer(create_producer(settings), CODEC, prefix)
    topic, partitions = producer.topic(quotes.TOPIC), quotes.TOPIC.partitions
    producer.send_raw(topic, b"AAPL", b"\x00not avro", headers={"trace": b"t-1"})
    assert producer.flush(30) == 0
    router = DeadLetterRouter(producer, CODEC, "test", prefix, group="test-readers")
    for message in _committed(settings, topic, partitions):
        with pytest.raises(DecodeError) as refused:
            decode_message(CODEC, quotes.TOPIC, message)
        router.route(quotes.TOPIC, message, refused.value)
    assert producer.flush(30) == 0 and router.routed == 1
    return topic, partitions


def test_a_redrive_that_died_before_its_commit_sends_nothing_and_the_next_one_sends_once(
    settings: Settings, quote_sample: Quote
) -> None:
    prefix = settings.kafka.topic_prefix
    topic, partitions = _dead_letter_an_undecodable_quote(settings)
    try:
        [entry] = view(settings, quotes.TOPIC.name).entries
        assert entry.letter is not None and read_ledger(settings, CODEC, create=True) == {}
        # A redrive that died inside its transaction: the record and its ledger entry are on the broker, uncommitted.
        died = create_transactional_producer(settings, f"{prefix}ibstream-dlq-redrive-{quotes.TOPIC.dlq_name}")
        died_tx = Transactions(died, timeout=30.0)
        died_tx.init()
        died_tx.begin()
        died_sink = RecordProducer(died, CODEC, prefix)
        died_sink.send_raw(topic, b"AAPL", b"\x00not avro", headers=dict(redrive_headers(entry, utc_now())))
        died_sink.send(REDRIVE_LEDGER, ledger_entry(entry, entry.letter, "died", utc_now()))
        assert died_sink.flush(30) == 0 and died_sink.delivered == 2

        # The next redrive aborts what it left (it registers the same transactional id) and sends the record once.
        done = redrive(settings, quotes.TOPIC.name, operator="next")
        assert [e.offset for e in done.plan.send] == [entry.offset]
        records = _committed(settings, topic, partitions)
        assert [(m.key(), m.value()) for m in records] == [(b"AAPL", b"\x00not avro")] * 2
        assert [d.redriven_by for d in read_ledger(settings, CODEC).values()] == ["next"]
        # The one that died cannot commit afterwards: it is fenced.
        with pytest.raises(TransactionError) as fenced:
            died_tx.commit()
        assert fenced.value.fatal
        assert len(_committed(settings, topic, partitions)) == 2
    finally:
        delete_topics(create_admin(settings), [prefix + REDRIVE_LEDGER.name])


def test_the_cli_lists_shows_and_redrives_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = settings.kafka.topic_prefix
    topic, partitions = _dead_letter_an_undecodable_quote(settings)
    monkeypatch.setenv("IBSTREAM_KAFKA_BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("IBSTREAM_KAFKA_TOPIC_PREFIX", prefix)
    get_settings.cache_clear()

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["dlq", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    try:
        code, listed, _ = run("list", "--topic", "md.quotes.v1")
        assert code == 0 and listed.splitlines()[-1] == "1 dead letter(s)"
        assert f"{topic}[" in listed and "DecodeError" in listed and "not redriven" in listed
        code, shown, _ = run("show", "--topic", "md.quotes.dlq.v1", "--offset", "0")
        assert code == 0
        assert (
            "consumer group    test-readers" in shown
            and "exception class   ibstream.contracts.serde.DecodeError" in shown
        )
        assert "  trace: b't-1' (3 bytes)" in shown and "in decode_message" in shown
        assert run("show", "--topic", "md.quotes.v1")[0] == 2  # show needs one offset
        assert run("show", "--topic", "md.quotes.v1", "--offset", "9")[0] == 1  # none there

        code, dry, _ = run("redrive", "--topic", "md.quotes.v1", "--dry-run")
        assert code == 0 and dry.splitlines()[-1].startswith("would redrive 1 dead letter(s)")
        assert len(_committed(settings, topic, partitions)) == 1
        # Reading (list, show, a dry run) creates nothing: the ledger topic comes with the first real redrive.
        assert prefix + REDRIVE_LEDGER.name not in create_admin(settings).list_topics(timeout=10).topics
        code, done, _ = run("redrive", "--topic", "md.quotes.v1")
        assert code == 0 and done.splitlines()[-1].startswith("redrove 1 dead letter(s)")
        code, again, _ = run("redrive", "--topic", "md.quotes.v1")
        assert (
            code == 0
            and again.splitlines()[-1] == f"redrove 0 dead letter(s) to {topic}; 1 already redriven, 0 refused"
        )
        assert len(_committed(settings, topic, partitions)) == 2

        code, _, err = run("list", "--topic", "md.nothing.v1")
        assert code == 1 and "unknown topic 'md.nothing.v1'" in err
    finally:
        get_settings.cache_clear()
        delete_topics(create_admin(settings), [prefix + REDRIVE_LEDGER.name])
