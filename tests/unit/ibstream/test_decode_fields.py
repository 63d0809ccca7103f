"""The bulk readers' fast path: ``Codec.decode_fields`` and the sink's rows built from it without a model.

Each row built straight from the decoded fields must equal the row built from the model (``tick_row``), for every
topic whose model checks nothing Avro has not; everywhere else, and for records by an older writer, there is no
fast path (None) and the model decides.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibstream.contracts import TOPICS, Bar, Quote, Record, Signal, TopicSpec
from ibstream.contracts.base import checks_only_avro_types
from ibstream.contracts.enums import MarketDataSource
from ibstream.contracts.serde import ConfluentCodec, DecodeError, SchemaStore, SingleObjectCodec
from ibstream.warehouse.schema import WarehouseSchema, kafka_ms
from tests.strategies import records
from tests.unit.ibstream.test_serde import InMemoryRegistry, _evolve, quote
from tooling.replay import as_replay, fields_as_replay, key_of_fields

STORE = SchemaStore()
CODEC = SingleObjectCodec(STORE)
SCHEMA = WarehouseSchema.build(STORE)
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
FAST_TOPICS = [spec for spec in TOPICS if checks_only_avro_types(spec.record)]


def test_only_models_that_check_nothing_beyond_avro_take_the_fast_path() -> None:
    assert checks_only_avro_types(Quote) and checks_only_avro_types(Bar)
    assert not checks_only_avro_types(Signal)  # confidence: Field(ge=0, le=1), which Avro cannot express
    assert {spec.name for spec in FAST_TOPICS} >= {"md.quotes.v1", "md.bars.5s.v1", "md.bars.1d.v1"}


@pytest.mark.parametrize("spec", FAST_TOPICS, ids=lambda spec: spec.name)
def test_a_row_from_the_fields_is_the_row_from_the_model(spec: TopicSpec[Record]) -> None:
    table = SCHEMA.for_topic(spec)
    codecs = [CODEC, ConfluentCodec(STORE, InMemoryRegistry())]

    @settings(max_examples=20, deadline=None)
    @given(records(spec.record), st.sampled_from(codecs))
    def check(record: Record, codec: Any) -> None:
        encoded = codec.encode("t", record)
        fields = codec.decode_fields("t", spec.record, encoded, 3, 7)
        assert fields is not None
        from_fields = table.fields_row(fields, "t", 3, 7, 1_700_000_000_123, 42)
        from_model = table.tick_row(codec.decode("t", spec.record, encoded, 3, 7), "t", 3, 7, 1_700_000_000_123, 42)
        assert from_fields == from_model
        # Timestamps are integer µs: the model's datetimes, exactly.
        for name, value in record.__dict__.items():
            if isinstance(value, datetime):
                assert fields[name] == (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

    check()


def test_tick_row_holds_the_timestamps_as_integer_microseconds() -> None:
    table = SCHEMA.for_topic(next(spec for spec in TOPICS if spec.name == "md.quotes.v1"))
    row = table.tick_row(quote(), "t", 1, 42, 1_700_000_000_123, 5)
    assert row[table.column_names.index("event_time")] == int(NOW.timestamp()) * 1_000_000
    assert row[-5:] == ["t", 1, 42, 1_700_000_000_123, 5]


def test_no_fast_path_for_models_with_checks_or_older_writers(tmp_path: Any) -> None:
    signal = next(spec for spec in TOPICS if spec.record is Signal)
    drawn: list[Record] = []

    @settings(max_examples=1, deadline=None, database=None)
    @given(records(Signal))
    def draw(record: Record) -> None:
        drawn[:] = [record]

    draw()
    assert CODEC.decode_fields("t", signal.record, CODEC.encode("t", drawn[0]), 0, 0) is None

    old_bytes = CODEC.encode("md.quotes.v1", quote())
    evolved = _evolve(tmp_path, lambda s: s["fields"].append({"name": "exchange", "type": "string", "default": "X"}))

    class QuoteV2(Quote):
        exchange: str = "X"

    # The old writer's record needs schema resolution (the new field's default): the model path does it.
    assert SingleObjectCodec(SchemaStore(evolved)).decode_fields("md.quotes.v1", QuoteV2, old_bytes, 0, 0) is None


def test_decode_fields_refuses_what_decode_refuses() -> None:
    encoded = CODEC.encode("t", quote())
    for bad, reason in [
        (None, "tombstone"),
        (b"\x00\x01", "single-object"),
        (encoded[:-3], "corrupt Avro body"),
        (encoded + b"\x00", "trailing bytes"),
    ]:
        with pytest.raises(DecodeError, match=reason):
            CODEC.decode("t", Quote, bad, 0, 0)
        with pytest.raises(DecodeError, match=reason):
            CODEC.decode_fields("t", Quote, bad, 0, 0)


def test_a_timestamp_no_datetime_holds_is_refused_like_decode_refuses_it() -> None:
    raw = json.loads(STORE.current("quote").text)
    for field in raw["fields"]:
        if isinstance(field["type"], dict):
            field["type"] = {key: value for key, value in field["type"].items() if key != "logicalType"}
    body = io.BytesIO()
    values = {**quote().to_avro(), "event_time": 10**18, "ingest_time": 0, "source": MarketDataSource.LIVE.value}
    fastavro.schemaless_writer(body, fastavro.parse_schema(raw, named_schemas={}), values)
    encoded = CODEC.encode("t", quote())[:10] + body.getvalue()
    with pytest.raises(DecodeError):
        CODEC.decode("t", Quote, encoded, 0, 0)
    with pytest.raises(DecodeError, match=r"event_time .* out of range"):
        CODEC.decode_fields("t", Quote, encoded, 0, 0)


def test_kafka_timestamps_past_year_9999_cannot_make_a_row() -> None:
    assert kafka_ms(1_700_000_000_123, 5) == 1_700_000_000_123
    assert kafka_ms(-1, 5) == 5  # no timestamp: the fallback
    with pytest.raises(ValueError, match="year 9999"):
        kafka_ms(int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000) + 2 * 86_400_000, 5)


@pytest.mark.parametrize("spec", FAST_TOPICS, ids=lambda spec: spec.name)
def test_replay_re_emits_the_fields_as_it_would_re_emit_the_model(spec: TopicSpec[Record]) -> None:
    codecs = [CODEC, ConfluentCodec(STORE, InMemoryRegistry())]

    @settings(max_examples=15, deadline=None)
    @given(records(spec.record), st.sampled_from(codecs))
    def check(record: Record, codec: Any) -> None:
        encoded = codec.encode("t", record)
        fields = codec.decode_fields("t", spec.record, encoded, 0, 0)
        assert codec.encode_fields("t", spec.record, fields) == encoded
        replayed = codec.encode_fields("t", spec.record, fields_as_replay(spec.record, fields))
        assert replayed == codec.encode("t", as_replay(record))
        if isinstance(getattr(record, "source", None), MarketDataSource):
            assert codec.decode("t", spec.record, replayed, 0, 0).source == MarketDataSource.REPLAY  # type: ignore[attr-defined]

    check()


@pytest.mark.parametrize("spec", [s for s in FAST_TOPICS if s.name.startswith("md.")], ids=lambda spec: spec.name)
def test_a_market_record_is_keyed_alike_from_its_fields(spec: TopicSpec[Record]) -> None:
    @settings(max_examples=20, deadline=None)
    @given(records(spec.record))
    def check(record: Record) -> None:
        fields = CODEC.decode_fields("t", spec.record, CODEC.encode("t", record), 0, 0)
        assert key_of_fields(spec, fields or {}) == spec.key_of(record).encode()

    check()


def test_tick_select_reads_the_timestamps_as_ticks() -> None:
    table = SCHEMA.for_topic(next(spec for spec in TOPICS if spec.name == "md.quotes.v1"))
    assert "toUnixTimestamp64Micro(`event_time`)" in table.tick_select()
    assert table.tick_select().startswith("`symbol`, `con_id`")
