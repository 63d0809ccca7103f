"""What every contract shares: the immutable record base, UTC timestamps, and the topic declaration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict

DAY_MS = 24 * 3600 * 1000
FOREVER = -1


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value  # what astimezone(UTC) returns for it (the usual case, on every record's every timestamp)
    # Naive datetimes are ambiguous and Avro's timestamp-micros is UTC by definition: refuse rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_avro_value(value: Any) -> Any:
    """One field value as fastavro writes it: nested records become dicts, inside lists and maps too."""
    if isinstance(value, Record):
        return value.to_avro()
    if isinstance(value, list | tuple):
        return [to_avro_value(item) for item in value]
    if isinstance(value, dict):
        return {key: to_avro_value(item) for key, item in value.items()}
    return value


class Record(BaseModel):
    """An immutable message mirroring one `.avsc` schema field by field (a test proves the parity)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The stem of the schema file in `avro/` this model mirrors.
    schema_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The record as the plain dict fastavro writes. Enums stay StrEnum (a str), datetimes stay datetimes."""
        return {name: to_avro_value(value) for name, value in self.__dict__.items()}

    def avro_fields(self) -> Mapping[str, Any]:
        """What fastavro writes, without a copy when no field can hold a record, list or map (``to_avro`` would
        return the fields unchanged then): encoding the hot-path records (quotes, bars) skips building a dict."""
        return self.__dict__ if _is_flat(type(self)) else self.to_avro()

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> Self:
        """Build from what fastavro read, validating it (the writer may be an older schema version)."""
        return cls.model_validate(data)


R = TypeVar("R", bound=Record)


def _may_nest(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return True
    origin = get_origin(annotation)
    if origin is not None and isinstance(origin, type) and issubclass(origin, list | tuple | dict | Sequence | Mapping):
        return True
    return any(_may_nest(argument) for argument in get_args(annotation))


@cache
def _is_flat(record_type: type[Record]) -> bool:
    return not any(_may_nest(field.annotation) for field in record_type.model_fields.values())


@cache
def checks_only_avro_types(record_type: type[Record]) -> bool:
    """Whether validating the model adds nothing to a decode by its current schema: flat (no nested records, lists
    or maps), no constraints (``Field(gt=0)``, …) and no validators but the UTC one, which Avro's timestamps (UTC by
    definition) always pass. Bulk readers (the warehouse sink) skip building such records."""
    decorators = record_type.__pydantic_decorators__
    validators = (decorators.validators, decorators.field_validators, decorators.root_validators)
    if not _is_flat(record_type) or any(validators) or decorators.model_validators:
        return False
    return all(
        all(isinstance(item, AfterValidator) and item.func is _require_utc for item in field.metadata)
        for field in record_type.model_fields.values()
    )


CleanupPolicy = Literal["delete", "compact"]

#: Market-data topics (``md.*``): the only ones whose records may be re-emitted (replay) or read raw through the API.
#: Their consumers dedupe and tolerate a window arriving again; re-emitting control records would apply an old command
#: anew (an old kill_switch_off), and re-emitting order intents, decisions, routed orders, order events or executions
#: would re-drive or misreport trading.
MARKET_DATA_PREFIX = "md."


@dataclass(frozen=True)
class TopicSpec(Generic[R]):
    """A topic and its contract, declared together: name, record type, key, layout and retention."""

    name: str
    record: type[R]
    key: Callable[[R], str]
    partitions: int
    retention_ms: int
    cleanup_policy: CleanupPolicy = "delete"
    doc: str = ""

    @property
    def schema_name(self) -> str:
        return self.record.schema_name

    @property
    def dlq_name(self) -> str:
        """``md.quotes.v1`` → ``md.quotes.dlq.v1``: the DLQ of a topic keeps its version suffix."""
        base, _, version = self.name.rpartition(".")
        return f"{base}.dlq.{version}"

    def key_of(self, record: R) -> str:
        return self.key(record)
