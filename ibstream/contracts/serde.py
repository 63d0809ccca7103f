"""Avro serde on fastavro, in two wire formats behind one interface.

* Registry-less (the embedded default): Avro single-object encoding, ``C3 01`` + the writer schema's
  CRC-64-AVRO fingerprint (little-endian, 8 bytes) + the body. The fingerprint names the writer schema, so
  unknown or foreign data is refused instead of being misread.
* Confluent framing (with a schema registry): ``00`` + big-endian int32 schema id + the body, the format
  confluent-kafka's AvroSerializer writes, so other tools can read our topics.

Every decode error names topic, partition, offset and the reason.

Schema files may share fields through includes: a field-list entry ``{"include": "order_terms"}`` is replaced by the
fields of ``avro/include/order_terms.avsc``, flat and in order (see ``read_schema``). Only the expanded schema is
ever used — fingerprinted, registered, written, read and mapped to warehouse columns — so an include changes how a
schema is written down, never its wire format. History entries are frozen writer schemas and may not include.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

import fastavro
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse
from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import ValidationError

from ibstream.contracts.base import Record, checks_only_avro_types
from ibstream.exceptions import IbstreamError

#: The schemas, as package data of ``ibstream.contracts`` (in a checkout, ``ibstream/contracts/avro`` links to the
#: repository's ``avro/``), so an installed wheel finds them without a checkout. pip installs wheels unzipped, so the
#: resource is a real directory; ``Path`` keeps the file paths that error messages and the warehouse mapping name.
AVRO_DIR = Path(str(resources.files("ibstream.contracts").joinpath("avro")))
INCLUDE_DIR = "include"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0

R = TypeVar("R", bound=Record)


class SerdeError(IbstreamError):
    """Root of serialization errors."""


class IncompatibleSchemaError(SerdeError):
    """A schema cannot read data written by one of its earlier versions (BACKWARD_TRANSITIVE broken)."""


class DecodeError(SerdeError):
    """A record could not be decoded; names where it came from and why."""

    def __init__(self, topic: str, partition: int | None, offset: int | None, reason: str) -> None:
        super().__init__(f"cannot decode record at {topic}[{partition}]@{offset}: {reason}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a record's schema: its JSON text, parsed form and fingerprint."""

    name: str
    full_name: str
    text: str
    parsed: Any
    fingerprint: bytes


_INCLUDE_NAME = re.compile(r"[a-z0-9_]+")


def read_schema(path: Path, avro_dir: Path | None = AVRO_DIR) -> dict[str, Any]:
    """A schema file as JSON with its includes expanded: each ``{"include": "<name>"}`` entry of a field list becomes
    the fields of ``<avro_dir>/include/<name>.avsc``, in place. ``avro_dir=None`` refuses includes: history entries
    must be self-contained, or a later edit of the include would rewrite the writer schema of retained data."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise SerdeError(f"{path}: a schema file must hold one JSON object")
    return _expand(raw, avro_dir, path)  # type: ignore[no-any-return]  # a dict stays a dict


def _expand(schema: Any, avro_dir: Path | None, path: Path) -> Any:
    # Walks every place a schema can hold another (unions, record fields, array items, map values) so an include
    # works in nested records too; everything else is copied as is, keys in their order (the text stays the same).
    if isinstance(schema, list):
        return [_expand(branch, avro_dir, path) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    expanded: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "fields" and isinstance(value, list):
            expanded[key] = [spliced for field in value for spliced in _expand_field(field, avro_dir, path)]
        elif key in ("type", "items", "values"):
            expanded[key] = _expand(value, avro_dir, path)
        else:
            expanded[key] = value
    return expanded


def _expand_field(field: Any, avro_dir: Path | None, path: Path) -> list[Any]:
    if not (isinstance(field, dict) and "include" in field):
        return [_expand(field, avro_dir, path)]
    name = field["include"]
    if set(field) != {"include"} or not isinstance(name, str) or not _INCLUDE_NAME.fullmatch(name):
        raise SerdeError(f'{path}: an include is {{"include": "<name>"}} and nothing else, got {field!r}')
    if avro_dir is None:
        raise SerdeError(f"{path}: includes {name!r}, but history entries and includes must be self-contained")
    included = avro_dir / INCLUDE_DIR / f"{name}.avsc"
    if not included.is_file():
        raise SerdeError(f"{path}: includes {name!r}, but there is no {included}")
    # An include may not include in turn: one level keeps the expansion obvious and cycles impossible.
    fragment = read_schema(included, avro_dir=None)
    if fragment.get("type") != "record" or not isinstance(fragment.get("fields"), list):
        raise SerdeError(f"{included}: an include must be a record schema, whose fields are spliced in")
    return list(fragment["fields"])


def _load_version(name: str, path: Path, avro_dir: Path | None) -> SchemaVersion:
    raw = read_schema(path, avro_dir)
    parsed = fastavro.parse_schema(raw, named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        name=name,
        full_name=f"{raw.get('namespace', '')}.{raw['name']}".lstrip("."),
        text=json.dumps(raw, separators=(",", ":")),
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


def check_backward(reader: SchemaVersion, writer: SchemaVersion) -> str | None:
    """None if ``reader`` can read everything ``writer`` wrote, else the incompatibility."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro ships no hints here
    result = checker.get_compatibility(avro_parse(reader.text), avro_parse(writer.text))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    return "; ".join(_describe_location(reader, result.locations) + f": {m}" for m in result.messages) or "incompatible"


def _describe_location(schema: SchemaVersion, locations: Iterable[str]) -> str:
    # The checker reports positions ("/fields/11/type"); name the field so the error says what to fix.
    first = max(locations, key=len, default="")  # the most specific position
    parts = [part for part in first.strip("/").split("/") if part]
    if len(parts) >= 2 and parts[0] == "fields" and parts[1].isdigit():
        fields = json.loads(schema.text)["fields"]
        index = int(parts[1])
        if index < len(fields):
            return f"field {fields[index]['name']!r} (/{'/'.join(parts)})"
    return "/" + "/".join(parts)


class SchemaStore:
    """Every record schema: the current version (``avro/<name>.avsc``, the reader) and the earlier versions kept
    under ``avro/history/<name>/*.avsc`` (writers of retained data).

    Loading enforces BACKWARD_TRANSITIVE: the current schema must read every earlier version, or the store
    refuses to load, so an incompatible change fails fast in CI and at startup instead of on old data.
    """

    def __init__(self, avro_dir: Path = AVRO_DIR) -> None:
        self._current: dict[str, SchemaVersion] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._history: dict[str, list[SchemaVersion]] = {}
        for path in sorted(avro_dir.glob("*.avsc")):
            name = path.stem
            current = _load_version(name, path, avro_dir)
            self._current[name] = current
            self._by_fingerprint[current.fingerprint] = current
            history = [
                _load_version(name, old, avro_dir=None)
                for old in sorted((avro_dir / "history" / name).glob("*.avsc"), key=lambda p: p.stem)
            ]
            for old in history:
                problem = check_backward(current, old)
                if problem is not None:
                    raise IncompatibleSchemaError(
                        f"avro/{name}.avsc cannot read data written by its earlier version with fingerprint "
                        f"{old.fingerprint.hex()}: {problem}"
                    )
                self._by_fingerprint[old.fingerprint] = old
            self._history[name] = history

    def names(self) -> list[str]:
        return sorted(self._current)

    def current(self, name: str) -> SchemaVersion:
        try:
            return self._current[name]
        except KeyError:
            raise SerdeError(f"no schema avro/{name}.avsc") from None

    def history(self, name: str) -> list[SchemaVersion]:
        return list(self._history.get(name, []))

    def by_fingerprint(self, value: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(value)


def _write_body(schema: SchemaVersion, record: Record) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, record.avro_fields())
    return buffer.getvalue()


def _read_body(
    record_type: type[R],
    writer: SchemaVersion,
    reader: SchemaVersion,
    body: memoryview,
    where: tuple[str, int | None, int | None],
) -> R:
    buffer = io.BytesIO(body)
    try:
        data = fastavro.schemaless_reader(buffer, writer.parsed, reader.parsed)
    except Exception as error:  # fastavro raises EOFError, ValueError, IndexError, … on corrupt bodies
        reason = f"corrupt Avro body for {reader.full_name}: {type(error).__name__}: {error}"
        raise DecodeError(*where, reason) from None
    if buffer.tell() != len(body):
        raise DecodeError(*where, f"{len(body) - buffer.tell()} trailing bytes after a {reader.full_name} record")
    if not isinstance(data, dict):
        raise DecodeError(*where, f"expected a record, got {type(data).__name__}")
    try:
        return record_type.from_avro(data)
    except ValidationError as error:
        raise DecodeError(*where, f"record violates the {record_type.__name__} contract: {error}") from None


#: Timestamp logical types and how many of their ticks make a second (their ClickHouse DateTime64 precision).
_TIMESTAMP_TICKS = {"timestamp-micros": 1_000_000, "timestamp-millis": 1_000}
#: The first and last instant a ``datetime`` holds (years 1 to 9999), in seconds since the epoch: a timestamp outside
#: fails ``decode`` (fastavro cannot build its datetime), so ``decode_fields`` refuses it too.
_FIRST_SECOND = -62_135_596_800
_LAST_SECOND = 253_402_300_800


@dataclass(frozen=True)
class _TickReader:
    """A schema parsed with its top-level timestamps as plain longs, and those fields with their ticks per second."""

    parsed: Any
    timestamps: tuple[tuple[str, int], ...]


_tick_readers: dict[bytes, _TickReader] = {}


def _tick_reader(schema: SchemaVersion) -> _TickReader:
    """The writer schema read without its timestamp logical types (cached by fingerprint): fastavro then skips
    building a datetime per timestamp, and the ClickHouse insert skips turning it back into ticks."""
    reader = _tick_readers.get(schema.fingerprint)
    if reader is None:
        raw = json.loads(schema.text)
        timestamps = []
        for field in raw["fields"]:
            # A timestamp, or a nullable one (["null", timestamp]).
            branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
            for index, kind in enumerate(branches):
                if isinstance(kind, dict) and kind.get("logicalType") in _TIMESTAMP_TICKS:
                    timestamps.append((field["name"], _TIMESTAMP_TICKS[kind["logicalType"]]))
                    branches[index] = {key: value for key, value in kind.items() if key != "logicalType"}
            if not isinstance(field["type"], list):
                field["type"] = branches[0]
        reader = _TickReader(fastavro.parse_schema(raw, named_schemas={}), tuple(timestamps))
        _tick_readers[schema.fingerprint] = reader
    return reader


def _read_fields(
    record_type: type[Record],
    writer: SchemaVersion,
    reader: SchemaVersion,
    body: memoryview,
    where: tuple[str, int | None, int | None],
) -> dict[str, Any] | None:
    """``decode_fields``'s work once the header named the writer (None: the model is needed, see there)."""
    if writer.fingerprint != reader.fingerprint or not checks_only_avro_types(record_type):
        return None
    ticks = _tick_reader(writer)
    buffer = io.BytesIO(body)
    try:
        data = fastavro.schemaless_reader(buffer, ticks.parsed, None)
    except Exception as error:  # fastavro raises EOFError, ValueError, IndexError, … on corrupt bodies
        reason = f"corrupt Avro body for {reader.full_name}: {type(error).__name__}: {error}"
        raise DecodeError(*where, reason) from None
    if buffer.tell() != len(body):
        raise DecodeError(*where, f"{len(body) - buffer.tell()} trailing bytes after a {reader.full_name} record")
    if not isinstance(data, dict):
        raise DecodeError(*where, f"expected a record, got {type(data).__name__}")
    for name, per_second in ticks.timestamps:
        value = data[name]
        if value is not None and not _FIRST_SECOND * per_second <= value < _LAST_SECOND * per_second:
            raise DecodeError(*where, f"corrupt Avro body for {reader.full_name}: {name} {value} is out of range")
    return data


def _write_fields(schema: SchemaVersion, fields: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, _tick_reader(schema).parsed, fields)
    return buffer.getvalue()


class Codec(Protocol):
    """Encode records of a topic and decode them back, in one wire format."""

    def encode(self, topic: str, record: Record) -> bytes: ...

    def decode(
        self, topic: str, record_type: type[R], value: bytes | None, partition: int | None, offset: int | None
    ) -> R: ...

    def decode_fields(
        self,
        topic: str,
        record_type: type[Record],
        value: bytes | None,
        partition: int | None,
        offset: int | None,
    ) -> dict[str, Any] | None:
        """The record's fields as Avro holds them, timestamps as integer ticks (µs or ms since the epoch), without
        building the model — where the model would add nothing: ``record_type`` checks nothing Avro has not
        (``checks_only_avro_types``) and the writer is the current schema. None otherwise: use ``decode``.
        Raises DecodeError wherever ``decode`` would (bulk readers: the warehouse sink, replay)."""
        ...

    def encode_fields(self, topic: str, record_type: type[Record], fields: Mapping[str, Any]) -> bytes:
        """``encode`` of the record whose ``decode_fields`` these are (replay re-emits them without a model)."""
        ...


class _FramedCodec:
    """What both wire formats share: decoding reads the header (``_frame``: writer and reader schemas, the body),
    encoding fields writes it (``_header``); the subclasses differ only in the framing."""

    _store: SchemaStore

    def _frame(
        self, record_type: type[Record], value: bytes | None, where: tuple[str, int | None, int | None]
    ) -> tuple[SchemaVersion, SchemaVersion, memoryview]:
        raise NotImplementedError

    def _header(self, topic: str, name: str) -> bytes:
        raise NotImplementedError

    def decode(
        self, topic: str, record_type: type[R], value: bytes | None, partition: int | None, offset: int | None
    ) -> R:
        where = (topic, partition, offset)
        return _read_body(record_type, *self._frame(record_type, value, where), where)

    def decode_fields(
        self,
        topic: str,
        record_type: type[Record],
        value: bytes | None,
        partition: int | None,
        offset: int | None,
    ) -> dict[str, Any] | None:
        where = (topic, partition, offset)
        return _read_fields(record_type, *self._frame(record_type, value, where), where)

    def encode_fields(self, topic: str, record_type: type[Record], fields: Mapping[str, Any]) -> bytes:
        name = record_type.schema_name
        return self._header(topic, name) + _write_fields(self._store.current(name), fields)


class SingleObjectCodec(_FramedCodec):
    """Registry-less codec: Avro single-object encoding (writer schema identified by fingerprint)."""

    def __init__(self, store: SchemaStore) -> None:
        self._store = store
        self._headers = {name: SINGLE_OBJECT_MAGIC + store.current(name).fingerprint for name in store.names()}
        #: Record type → (header, parsed schema): one look-up per encode on the producers' hot path.
        self._writers: dict[type[Record], tuple[bytes, Any]] = {}

    def encode(self, topic: str, record: Record) -> bytes:
        kind = type(record)
        writer = self._writers.get(kind)
        if writer is None:
            writer = (self._headers[kind.schema_name], self._store.current(kind.schema_name).parsed)
            self._writers[kind] = writer
        buffer = io.BytesIO()
        buffer.write(writer[0])
        fastavro.schemaless_writer(buffer, writer[1], record.avro_fields())
        return buffer.getvalue()

    def _frame(
        self, record_type: type[Record], value: bytes | None, where: tuple[str, int | None, int | None]
    ) -> tuple[SchemaVersion, SchemaVersion, memoryview]:
        """The writer and reader schemas the header names, and the body."""
        if value is None:
            raise DecodeError(*where, "null value (tombstone) where a record was expected")
        if len(value) < 10 or value[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(*where, "not Avro single-object encoded (missing C3 01 header)")
        reader = self._store.current(record_type.schema_name)
        writer = self._store.by_fingerprint(bytes(value[2:10]))
        if writer is None:
            raise DecodeError(*where, f"unknown writer schema fingerprint {value[2:10].hex()}")
        if writer.name != reader.name:
            raise DecodeError(*where, f"record is a {writer.full_name}, this topic carries {reader.full_name}")
        return writer, reader, memoryview(value)[10:]

    def _header(self, topic: str, name: str) -> bytes:
        return self._headers[name]


class SchemaRegistryPort(Protocol):
    """What the Confluent codec needs from a registry (implemented by ibstream.registry)."""

    def register(self, subject: str, schema_text: str) -> int: ...

    def schema_text(self, schema_id: int) -> str: ...


class ConfluentCodec(_FramedCodec):
    """Codec with Confluent framing (magic 0 + schema id), schemas registered under ``<topic>-value``."""

    def __init__(self, store: SchemaStore, registry: SchemaRegistryPort) -> None:
        self._store = store
        self._registry = registry
        self._ids: dict[tuple[str, str], bytes] = {}
        self._writers: dict[int, SchemaVersion] = {}

    def _header(self, topic: str, name: str) -> bytes:
        header = self._ids.get((topic, name))
        if header is None:
            schema_id = self._registry.register(f"{topic}-value", self._store.current(name).text)
            header = struct.pack(">bI", CONFLUENT_MAGIC, schema_id)
            self._ids[(topic, name)] = header
        return header

    def encode(self, topic: str, record: Record) -> bytes:
        name = type(record).schema_name
        return self._header(topic, name) + _write_body(self._store.current(name), record)

    def _writer(self, schema_id: int, where: tuple[str, int | None, int | None]) -> SchemaVersion:
        writer = self._writers.get(schema_id)
        if writer is None:
            try:
                text = self._registry.schema_text(schema_id)
            except Exception as error:
                raise DecodeError(*where, f"schema id {schema_id} not found in the registry: {error}") from None
            raw = json.loads(text)
            parsed = fastavro.parse_schema(raw, named_schemas={})
            writer = SchemaVersion(
                name="",
                full_name=f"{raw.get('namespace', '')}.{raw['name']}".lstrip("."),
                text=text,
                parsed=parsed,
                fingerprint=bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")),
            )
            self._writers[schema_id] = writer
        return writer

    def _frame(
        self, record_type: type[Record], value: bytes | None, where: tuple[str, int | None, int | None]
    ) -> tuple[SchemaVersion, SchemaVersion, memoryview]:
        """The writer (from the registry) and reader schemas, and the body."""
        if value is None:
            raise DecodeError(*where, "null value (tombstone) where a record was expected")
        if len(value) < 5 or value[0] != CONFLUENT_MAGIC:
            raise DecodeError(*where, "not Confluent-framed Avro (missing magic byte 0)")
        (schema_id,) = struct.unpack(">I", value[1:5])
        reader = self._store.current(record_type.schema_name)
        writer = self._writer(schema_id, where)
        if writer.full_name != reader.full_name:
            raise DecodeError(*where, f"record is a {writer.full_name}, this topic carries {reader.full_name}")
        return writer, reader, memoryview(value)[5:]
