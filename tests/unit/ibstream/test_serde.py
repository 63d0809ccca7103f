"""Serde: property-based round trips for every schema, clear errors for bad bytes, schema evolution rules."""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibstream.contracts import RECORD_TYPES, TERM_FIELDS, Bar, OrderIntent, Quote, Record
from ibstream.contracts.enums import MarketDataSource, OrderType, Side
from ibstream.contracts.serde import (
    AVRO_DIR,
    ConfluentCodec,
    DecodeError,
    IncompatibleSchemaError,
    SchemaStore,
    SerdeError,
    SingleObjectCodec,
    read_schema,
)
from tests.strategies import records

STORE = SchemaStore()
CODEC = SingleObjectCodec(STORE)
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)


def quote(**overrides: Any) -> Quote:
    values: dict[str, Any] = dict(
        symbol="AAPL",
        con_id=265598,
        bid=189.1,
        ask=189.12,
        last=189.11,
        bid_size=300.0,
        ask_size=200.0,
        last_size=100.0,
        event_time=NOW,
        ingest_time=NOW,
        source=MarketDataSource.LIVE,
    )
    values.update(overrides)
    return Quote(**values)


class InMemoryRegistry:
    """Registry fake for unit tests: ids by schema text, as a real registry assigns them."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def register(self, subject: str, schema_text: str) -> int:
        return self.ids.setdefault(schema_text, len(self.ids) + 1)

    def schema_text(self, schema_id: int) -> str:
        return next(text for text, known in self.ids.items() if known == schema_id)


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_round_trip_every_schema_single_object(record_type: type[Record]) -> None:
    @settings(max_examples=60, deadline=None)
    @given(records(record_type))
    def check(record: Record) -> None:
        encoded = CODEC.encode("topic", record)
        assert encoded[:2] == b"\xc3\x01"
        assert CODEC.decode("topic", record_type, encoded, 0, 0) == record

    check()


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda t: t.__name__)
def test_round_trip_every_schema_confluent_framing(record_type: type[Record]) -> None:
    codec = ConfluentCodec(STORE, InMemoryRegistry())

    @settings(max_examples=30, deadline=None)
    @given(records(record_type))
    def check(record: Record) -> None:
        encoded = codec.encode("topic", record)
        assert encoded[0] == 0
        assert codec.decode("topic", record_type, encoded, 0, 0) == record

    check()


def test_decode_error_names_topic_partition_offset_and_reason() -> None:
    with pytest.raises(DecodeError) as caught:
        CODEC.decode("md.quotes.v1", Quote, b"garbage-bytes-here", 3, 1234)
    assert caught.value.topic == "md.quotes.v1"
    assert caught.value.partition == 3
    assert caught.value.offset == 1234
    assert "md.quotes.v1[3]@1234" in str(caught.value)
    assert "C3 01" in caught.value.reason


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b[:2] + b"\x00" * 8 + b[10:], "unknown writer schema fingerprint"),
        (lambda b: b[:-4], "corrupt Avro body"),
        (lambda b: b + b"\x00\x01", "trailing bytes"),
        (lambda b: b"", "missing C3 01"),
    ],
    ids=["unknown-fingerprint", "truncated", "trailing", "empty"],
)
def test_corrupt_or_unknown_bytes_are_refused(mangle: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        CODEC.decode("md.quotes.v1", Quote, mangle(CODEC.encode("md.quotes.v1", quote())), 0, 7)


def test_record_of_another_type_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"this topic carries io\.ibstream\.Bar"):
        CODEC.decode("md.bars.5s.v1", Bar, CODEC.encode("md.quotes.v1", quote()), 0, 0)


def test_tombstone_is_refused() -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        CODEC.decode("md.quotes.v1", Quote, None, 0, 0)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quote(event_time=datetime(2026, 1, 1, 12, 0))


def test_a_utc_timestamp_is_kept_as_given_and_another_zone_becomes_utc() -> None:
    from datetime import timedelta, timezone

    at = datetime(2026, 1, 1, 14, 30, tzinfo=UTC)
    assert quote(event_time=at).event_time is at  # what astimezone(UTC) gives it: itself
    eastern = quote(event_time=datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))).event_time
    assert eastern == at and eastern.tzinfo is UTC


def test_timestamps_are_normalised_to_utc() -> None:
    from datetime import timedelta, timezone

    eastern = timezone(timedelta(hours=-5))
    encoded = CODEC.encode("t", quote(event_time=datetime(2026, 1, 1, 9, 30, tzinfo=eastern)))
    decoded = CODEC.decode("t", Quote, encoded, 0, 0)
    assert decoded.event_time == datetime(2026, 1, 1, 14, 30, tzinfo=UTC)
    assert decoded.event_time.utcoffset() == timedelta(0)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    # Whatever arrives, the decoder either decodes a valid record or raises DecodeError (then: DLQ), nothing else.
    with contextlib.suppress(DecodeError):
        CODEC.decode("md.quotes.v1", Quote, data, 0, 0)


# --- schema evolution: BACKWARD_TRANSITIVE ---------------------------------------------------------------------


def _evolve(tmp_path: Path, change: Any) -> Path:
    """An avro/ copy where today's quote.avsc is the history and the current one is changed by ``change``."""
    avro = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, avro)
    (avro / "history" / "quote").mkdir(parents=True)
    shutil.copy(avro / "quote.avsc", avro / "history" / "quote" / "v1.avsc")
    schema = json.loads((avro / "quote.avsc").read_text())
    change(schema)
    (avro / "quote.avsc").write_text(json.dumps(schema))
    return avro


def test_backward_compatible_change_decodes_old_data(tmp_path: Path) -> None:
    old_bytes = CODEC.encode("md.quotes.v1", quote())
    avro = _evolve(
        tmp_path,
        lambda s: s["fields"].append({"name": "exchange", "type": "string", "default": "SMART"}),
    )
    new_codec = SingleObjectCodec(SchemaStore(avro))

    class QuoteV2(Quote):
        """The model as it would be after the change."""

        exchange: str = "SMART"

    # The new reader finds the old writer schema by its fingerprint and fills the new field's default.
    decoded = new_codec.decode("md.quotes.v1", QuoteV2, old_bytes, 0, 0)
    assert decoded.exchange == "SMART"
    assert decoded.bid == 189.1 and decoded.symbol == "AAPL"
    # New data carries the new fingerprint; the old codec, which never saw that schema, refuses it clearly.
    new_bytes = new_codec.encode("md.quotes.v1", decoded)
    assert new_bytes[2:10] != old_bytes[2:10]
    assert new_codec.decode("md.quotes.v1", QuoteV2, new_bytes, 0, 1) == decoded
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        CODEC.decode("md.quotes.v1", Quote, new_bytes, 0, 1)


def test_incompatible_change_is_refused(tmp_path: Path) -> None:
    avro = _evolve(tmp_path, lambda s: s["fields"].append({"name": "exchange", "type": "string"}))
    with pytest.raises(IncompatibleSchemaError, match="exchange"):
        SchemaStore(avro)


def test_type_change_is_refused(tmp_path: Path) -> None:
    def change(schema: dict[str, Any]) -> None:
        next(f for f in schema["fields"] if f["name"] == "con_id")["type"] = "string"

    with pytest.raises(IncompatibleSchemaError, match="con_id"):
        SchemaStore(_evolve(tmp_path, change))


def test_transitive_not_just_latest(tmp_path: Path) -> None:
    # v1 has field b:string, v2 drops it, v3 re-adds b as int with a default: compatible with v2 (BACKWARD)
    # but not with v1 (BACKWARD_TRANSITIVE), so the store must refuse it.
    avro = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, avro)
    history = avro / "history" / "quote"
    history.mkdir(parents=True)
    base = json.loads((avro / "quote.avsc").read_text())
    v1 = json.loads(json.dumps(base))
    v1["fields"].append({"name": "venue", "type": "string", "default": "x"})
    (history / "v1.avsc").write_text(json.dumps(v1))
    (history / "v2.avsc").write_text(json.dumps(base))
    v3 = json.loads(json.dumps(base))
    v3["fields"].append({"name": "venue", "type": "int", "default": 0})
    (avro / "quote.avsc").write_text(json.dumps(v3))
    with pytest.raises(IncompatibleSchemaError, match="venue"):
        SchemaStore(avro)


# --- includes: shared fields declared once, the wire format unchanged --------------------------------------------


def test_included_order_terms_keep_the_flat_wire_format() -> None:
    # The fingerprints of the flat schemas from before the terms moved into avro/include/order_terms.avsc: the
    # records already on the order topics (and in the warehouse) were written with them, so the store must keep
    # knowing them — as the current version (the include changed nothing on the wire), or, after a new term, as
    # the history entry that change had to add.
    for name, written in (("order_intent", "6019a45c9f7c058c"), ("routed_order", "96c3d796f7a7de0f")):
        writer = STORE.by_fingerprint(bytes.fromhex(written))
        assert writer is not None and writer.name == name
    for name in ("order_intent", "routed_order"):
        fields = json.loads(STORE.current(name).text)["fields"]
        assert [f["name"] for f in fields][1 : 1 + len(TERM_FIELDS)] == list(TERM_FIELDS)
        assert all("include" not in f for f in fields)


def _with_term(tmp_path: Path, term: dict[str, Any], *, keep_history: bool) -> Path:
    """An avro/ copy whose order_terms include gains ``term``, the previous expanded schemas kept as history."""
    avro = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, avro)
    if keep_history:
        for name in ("order_intent", "routed_order"):
            history = avro / "history" / name
            history.mkdir(parents=True, exist_ok=True)
            version = len(list(history.glob("*.avsc"))) + 1
            (history / f"v{version}.avsc").write_text(json.dumps(read_schema(avro / f"{name}.avsc", avro)))
    include = avro / "include" / "order_terms.avsc"
    schema = json.loads(include.read_text())
    schema["fields"].append(term)
    include.write_text(json.dumps(schema))
    return avro


def test_a_new_term_is_one_edit_of_the_include(tmp_path: Path) -> None:
    intent = OrderIntent(
        order_id="o-1",
        symbol="AAPL",
        side=Side.BUY,
        quantity=10,
        order_type=OrderType.LMT,
        limit_price=189.0,
        requested_by="user",
        created_time=NOW,
    )
    old_bytes = CODEC.encode("orders.intents.v1", intent)
    avro = _with_term(tmp_path, {"name": "outside_rth", "type": "boolean", "default": False}, keep_history=True)
    store = SchemaStore(avro)
    for name in ("order_intent", "routed_order"):
        assert "outside_rth" in [f["name"] for f in json.loads(store.current(name).text)["fields"]]
        assert len(store.history(name)) == len(STORE.history(name)) + 1

    class OrderIntentV2(OrderIntent):
        """The model as it would be after the change."""

        outside_rth: bool = False

    # Old intents decode with the new schema: their writer schema is found in the history by its fingerprint.
    decoded = SingleObjectCodec(store).decode("orders.intents.v1", OrderIntentV2, old_bytes, 0, 0)
    assert decoded.outside_rth is False
    assert decoded.model_dump(exclude={"outside_rth"}) == intent.model_dump()


def test_a_new_term_without_default_is_refused_in_every_including_schema(tmp_path: Path) -> None:
    avro = _with_term(tmp_path, {"name": "outside_rth", "type": "boolean"}, keep_history=True)
    with pytest.raises(IncompatibleSchemaError, match="outside_rth"):
        SchemaStore(avro)


def test_history_entries_may_not_include(tmp_path: Path) -> None:
    avro = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, avro)
    (avro / "history" / "order_intent").mkdir(parents=True, exist_ok=True)
    shutil.copy(avro / "order_intent.avsc", avro / "history" / "order_intent" / "v0.avsc")
    with pytest.raises(SerdeError, match="self-contained"):
        SchemaStore(avro)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"include": "no_such_terms"}, "there is no"),
        ({"include": "../order_intent"}, "nothing else"),
        ({"include": "order_terms", "doc": "x"}, "nothing else"),
    ],
)
def test_bad_includes_are_refused(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    avro = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, avro)
    schema = json.loads((avro / "quote.avsc").read_text())
    schema["fields"].append(entry)
    (avro / "quote.avsc").write_text(json.dumps(schema))
    with pytest.raises(SerdeError, match=message):
        SchemaStore(avro)
