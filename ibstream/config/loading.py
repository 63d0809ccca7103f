"""Loading settings: the flat environment names, the environment reader, overrides, and one ConfigError for all.

See ``ibstream.config`` for the naming rules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from ibstream.config.sections import (
    SECTIONS,
    Agent0Settings,
    ApiSettings,
    ExecutionSettings,
    FeedSettings,
    IbSettings,
    KafkaSettings,
    OrchestrationSettings,
    RegistrySettings,
    RiskSettings,
    SinkSettings,
    StackSettings,
    StreamsSettings,
    UatSettings,
    WarehouseSettings,
)
from ibstream.exceptions import ConfigError

#: The repository root (this file is ibstream/config/loading.py).
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
ENV_PREFIX = "IBSTREAM_"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: The levels ``IBSTREAM_LOG_LEVEL`` and every ``--log-level`` flag accept (any case).
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

#: Settings fields outside any section: their flat name is their name.
TOP_LEVEL: tuple[str, ...] = ("state_dir", "log_level")
#: Every flat name (``IBSTREAM_`` variable without the prefix, lower case) → (section or None, field).
FLAT_NAMES: dict[str, tuple[str | None, str]] = {name: (None, name) for name in TOP_LEVEL} | {
    model.flat_name(field): (section, field) for section, model in SECTIONS.items() for field in model.model_fields
}
_BY_LOCATION: dict[tuple[str | None, str], str] = {location: flat for flat, location in FLAT_NAMES.items()}


def env_name(flat: str) -> str:
    """The environment variable of a flat name: ``kafka_bootstrap_servers`` → ``IBSTREAM_KAFKA_BOOTSTRAP_SERVERS``."""
    return ENV_PREFIX + flat.upper()


def field_info(flat: str) -> FieldInfo:
    """The pydantic field behind a flat name (its default, constraints, …)."""
    section, field = FLAT_NAMES[flat]
    owner: type[BaseModel] = Settings if section is None else SECTIONS[section]
    return owner.model_fields[field]


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat names (and whole sections, as dicts or models) → the nested shape Settings validates."""
    nested: dict[str, Any] = {}
    flat: list[tuple[str, str, Any]] = []
    for key, value in values.items():
        location = FLAT_NAMES.get(key)
        if location is not None and location[0] is not None:
            flat.append((location[0], location[1], value))
        elif key in SECTIONS and isinstance(value, BaseModel):
            nested[key] = value.model_dump(exclude_unset=True)
        elif key in SECTIONS and isinstance(value, Mapping):
            nested[key] = dict(value)
        else:
            nested[key] = value
    for section, field, value in flat:
        current = nested.get(section)
        nested[section] = {**(current if isinstance(current, Mapping) else {}), field: value}
    return nested


def _decodes_json(field: FieldInfo) -> bool:
    # As pydantic-settings' own env source: a dict or list arrives as JSON unless the field is NoDecode.
    if any(isinstance(marker, NoDecode) or marker is NoDecode for marker in field.metadata):
        return False
    annotation = field.annotation
    options = get_args(annotation) if get_origin(annotation) is Union else (annotation,)
    return any(get_origin(option) in (dict, list) or option in (dict, list) for option in options)


class _FlatEnvironment(PydanticBaseSettingsSource):
    """Reads ``IBSTREAM_<FLAT NAME>`` (any case) for every flat name into the nested shape."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the environment itself

    def __call__(self) -> dict[str, Any]:
        environment = {name.lower(): value for name, value in os.environ.items()}
        found: dict[str, Any] = {}
        for flat in FLAT_NAMES:
            raw = environment.get(env_name(flat).lower())
            if raw is None:
                continue
            value: Any = raw
            if _decodes_json(field_info(flat)):
                try:
                    value = json.loads(raw)
                except ValueError:
                    value = raw  # validation then reports the variable as not a dict/list, with the others
            found[flat] = value
        return _nest(found)


class Settings(BaseSettings):
    """Every knob of every deployable, in sections. Frozen: read once at startup and passed down."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Where local state lives: broker data and logs, pid files, the chDB directory.
    state_dir: Path = Field(default=PROJECT_ROOT / ".state")
    # How much every deployable logs; its own --log-level flag, or `ibstream --log-level` (which sets this for
    # everything it starts), overrides it.
    log_level: LogLevel = "INFO"

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ib: IbSettings = Field(default_factory=IbSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    agent0: Agent0Settings = Field(default_factory=Agent0Settings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    uat: UatSettings = Field(default_factory=UatSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit values win over the environment, which is read by flat name only.
        return init_settings, _FlatEnvironment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _flat_names_into_sections(cls, data: Any) -> Any:
        return _nest(data) if isinstance(data, Mapping) else data

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_in_any_case(cls, value: Any) -> Any:
        # Operators write `debug` as often as `DEBUG`; the logging module only knows the upper-case names.
        return value.strip().upper() if isinstance(value, str) else value

    def with_overrides(self, **overrides: Any) -> Settings:
        """A validated copy with ``overrides`` (flat names, as ``load_settings``) applied; the environment is not
        read again. Raises ConfigError as ``load_settings`` does."""
        current = self.model_dump(exclude_unset=True)
        for key, value in _nest(overrides).items():
            if key in SECTIONS and isinstance(value, Mapping) and isinstance(current.get(key), Mapping):
                current[key] = {**current[key], **value}
            else:
                current[key] = value
        try:
            return type(self).model_validate(current)
        except ValidationError as error:
            raise config_error(error) from None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """pydantic's unvalidated copy, refusing flat names (it would set an attribute nothing reads)."""
        unknown = sorted(set(update or ()) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"not Settings fields: {unknown}; use with_overrides(**flat names) instead of model_copy")
        return super().model_copy(update=update, deep=deep)

    @property
    def kafka_state_dir(self) -> Path:
        """The local broker's data and logs (`ibstream stack`)."""
        return self.state_dir / "kafka"

    @property
    def streams_data_path(self) -> Path:
        """Faust's data directory."""
        return self.streams.data_dir if self.streams.data_dir is not None else self.state_dir / "streams"

    @property
    def agent0_db_path(self) -> Path:
        """Agent0's SQLite file (plans, executions)."""
        return self.agent0.db if self.agent0.db is not None else self.state_dir / "agent0.sqlite"

    @property
    def warehouse_path(self) -> Path:
        """The embedded chDB data directory."""
        return self.warehouse.dir if self.warehouse.dir is not None else self.state_dir / "warehouse"


def _variable(location: tuple[int | str, ...], message: str) -> str:
    """The environment variable a validation error is about."""
    if not location:
        return "?"
    head = str(location[0])
    if head in SECTIONS and len(location) > 1:
        flat = _BY_LOCATION.get((head, str(location[1])))
        return env_name(flat) if flat is not None else ".".join(str(part) for part in location)
    if head in SECTIONS:
        # A cross-field (section) validator has no field: name the first of its variables the message mentions.
        candidates = [env_name(SECTIONS[head].flat_name(field)) for field in SECTIONS[head].model_fields]
        mentioned = [(message.find(name), name) for name in candidates if name in message]
        return min(mentioned)[1] if mentioned else f"{ENV_PREFIX}{head.upper()}_*"
    return env_name(head) if head in FLAT_NAMES else head


def config_error(error: ValidationError) -> ConfigError:
    """One ConfigError naming every bad variable of a settings ValidationError, in the order pydantic found them."""
    problems: list[tuple[str, str]] = []
    for detail in error.errors():
        message = str(detail["msg"]).removeprefix("Value error, ")
        problems.append((_variable(tuple(detail["loc"]), message), message))
    return ConfigError.of(problems)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus explicit overrides.

    The override API is flat: each keyword is an environment name without ``IBSTREAM_``, lower case
    (``load_settings(kafka_bootstrap_servers="b:9092", stack_kafka_port=19192, symbols=["AAPL"])``); a whole
    section may also be given by its attribute name, as a dict or model (``kafka={...}``), and flat names win over
    it. Overrides win over the environment. Every validation error is reported at once, as one ConfigError that
    names each bad variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise config_error(error) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
