"""Settings in sections, validated at startup: ``settings.kafka.bootstrap_servers``, ``settings.ib.port``, …

Each section is a frozen pydantic model (Quix Streams' ``ConnectionConfig`` style); ``Settings`` holds one of each
plus the two process-wide knobs (``state_dir``, ``log_level``) and the paths derived from ``state_dir``.

Environment variables keep their flat names: a field ``<section>.<name>`` is read from ``IBSTREAM_`` + the section's
prefix + the name (``IBSTREAM_KAFKA_BOOTSTRAP_SERVERS`` → ``kafka.bootstrap_servers``), unless the section names it
otherwise in ``ENV_NAMES`` (``IBSTREAM_SYMBOLS`` → ``feed.symbols``, ``IBSTREAM_ACCOUNT_EQUITY`` →
``risk.account_equity``). ``FLAT_NAMES`` maps every flat name (the variable without the prefix, lower case) to its
section and field; the same flat names are the keyword overrides ``load_settings`` and ``Settings.with_overrides``
accept.

Bad values never stop the process with a stack trace: ``load_settings`` collects every validation error and raises
one ``ConfigError`` that lists each bad variable by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from ibstream.exceptions import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "IBSTREAM_"
#: IB Gateway and TWS ports that reach a live (not paper) account by default.
LIVE_PORTS = frozenset({4001, 7496})
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: The levels ``IBSTREAM_LOG_LEVEL`` and every ``--log-level`` flag accept (any case).
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class Section(BaseModel):
    """One concern's settings. ``env_prefix`` + field name is the flat name, unless ``env_names`` says otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_prefix: ClassVar[str] = ""
    #: Fields whose environment name does not follow the section prefix: field name → flat name.
    env_names: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def flat_name(cls, field: str) -> str:
        """The environment name of ``field`` without ``IBSTREAM_``, lower case."""
        return cls.env_names.get(field, cls.env_prefix + field)


class KafkaSettings(Section):
    """The cluster every client talks to. Security settings (SASL_SSL, mTLS) pass through ``client_config``."""

    env_prefix = "kafka_"

    bootstrap_servers: str = "127.0.0.1:19092"
    client_config: dict[str, str] = Field(default_factory=dict)
    topic_replication: int = Field(default=1, ge=1)
    # Prepended to every topic name: isolates tests (and tenants) sharing one cluster.
    topic_prefix: str = ""

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {server!r}")
        return value


class StackSettings(Section):
    """The local broker started by `ibstream stack up` (dev, tests, demo)."""

    env_prefix = "stack_"

    kafka_port: int = Field(default=19092, ge=1, le=65535)
    controller_port: int = Field(default=19093, ge=1, le=65535)
    kafka_heap: str = "768m"
    registry_port: int = Field(default=18081, ge=1, le=65535)


class RegistrySettings(Section):
    """Schema registry (Confluent-compatible). ``url`` unset: registry-less single-object encoding."""

    env_prefix = "schema_registry_"

    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _registry_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value


class ApiSettings(Section):
    """`ibstream run api`: reads history from the warehouse, writes operator commands to control.v1, never calls IB."""

    env_prefix = "api_"

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # JWT bearer tokens. HS256 verifies with jwt_secret (≥ 32 bytes: RFC 7518 §3.2 wants a key as long as the
    # hash); RS256 with jwt_public_key (PEM) or the keys served at jwt_jwks_url. Expiry, issuer and audience are
    # always checked. The API refuses to start without the key its algorithm needs.
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    jwt_issuer: str = Field(default="ibstream", min_length=1)
    jwt_audience: str = Field(default="ibstream-api", min_length=1)
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=300)
    # Browser origins allowed to call the API (CORS); empty allows none. Comma-separated in the environment.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-client token bucket (client = peer address): sustained rate and burst. Probes and /metrics are exempt.
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How long a command waits for Kafka's acknowledgement before the caller gets 503.
    command_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @field_validator("jwt_secret")
    @classmethod
    def _secret_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes (e.g. `openssl rand -base64 48`)")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        # An origin is scheme://host[:port] exactly; a wildcard or a path would silently widen or break the list.
        for origin in value:
            scheme, sep, host = origin.partition("://")
            name, _, port = host.partition(":")
            if (
                scheme not in ("http", "https")
                or not sep
                or not name
                or any(c in host for c in "/?#*@ ")
                or (port and not port.isdigit())
            ):
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        return value


class IbSettings(Section):
    """The IB connection, shared by every deployable that talks to IB."""

    env_prefix = "ib_"

    # Live trading needs this to name the exact live account; without it only paper accounts (DU…) and paper
    # ports are accepted, by every deployable that talks to IB.
    live_account: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=4002, ge=1, le=65535)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    reconnect_base_seconds: float = Field(default=0.5, gt=0)
    reconnect_cap_seconds: float = Field(default=30.0, gt=0)
    # After IB answers a historical request with a pacing violation (its counters can hold requests this process
    # never made, e.g. a predecessor's), backfills pause this long, doubling per violation up to 2 minutes.
    historical_pacing_backoff_seconds: float = Field(default=15.0, gt=0)

    @field_validator("port")
    @classmethod
    def _live_port_needs_live_account(cls, value: int, info: ValidationInfo) -> int:
        if value in LIVE_PORTS and not info.data.get("live_account"):
            raise ValueError(
                f"port {value} is a live-trading port; use a paper port (4002 gateway, 7497 TWS) or set "
                "IBSTREAM_IB_LIVE_ACCOUNT to the live account you mean"
            )
        return value


class FeedSettings(Section):
    """The market-data producer (IB → Kafka) and the market's clock and hours its consumers judge by."""

    env_prefix = "producer_"
    env_names = {
        "symbols": "symbols",
        "market_data_type": "market_data_type",
        "market_clock": "market_clock",
        "trading_hours": "trading_hours",
        "stale_after_seconds": "stale_after_seconds",
        "heartbeat_seconds": "heartbeat_seconds",
    }

    client_id: int = Field(default=11, ge=0)
    # The universe to subscribe; each symbol is qualified with reqContractDetails at startup.
    # Comma-separated in the environment: IBSTREAM_SYMBOLS=AAPL,MSFT,SPY.
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["AAPL", "MSFT", "SPY", "QQQ"], min_length=1
    )
    # 1 live, 3 delayed (IB's reqMarketDataType); delayed data is published as source=delayed.
    market_data_type: Literal[1, 2, 3, 4] = 1
    # Whose clock consumers (risk, orchestration) judge quote ages and expiries by: "wall" for a real gateway;
    # "feed" follows the producer's heartbeats (IB's clock), for an accelerated simulator or a replay.
    market_clock: Literal["wall", "feed"] = "wall"
    # "rth": 09:30-16:00 America/New_York on weekdays; "24h": always open (simulators, crypto-like tests).
    trading_hours: Literal["rth", "24h"] = "rth"
    # A symbol with no tick for this long during trading hours is stale (alert + metric).
    stale_after_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    health_port: int = Field(default=8092, ge=0, le=65535)
    # Bounded in-memory queue between ibapi's reader thread and the producer loop (backpressure, not an OOM).
    queue_size: int = Field(default=100_000, ge=1000)

    @field_validator("market_data_type", mode="before")
    @classmethod
    def _market_data_type_from_text(cls, value: Any) -> Any:
        # The environment gives "3"; pydantic matches Literal[1, 2, 3, 4] by value and type, so "3" would be
        # rejected and IBSTREAM_MARKET_DATA_TYPE=3 (delayed data) could never be set.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols_look_like_symbols(cls, value: list[str]) -> list[str]:
        cleaned = [symbol.strip().upper() for symbol in value]
        for symbol in cleaned:
            if not symbol or len(symbol) > 12 or not all(c.isalnum() or c in " .-" for c in symbol):
                raise ValueError(f"not an IB symbol: {symbol!r}")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("symbols must be unique")
        return cleaned


class ExecutionSettings(Section):
    """The executor: places orders at IB, one per account."""

    env_prefix = "execution_"

    # One client id per executor: IB refuses a second session with the same id (326), which is a fence of its own,
    # and IB order ids are unique per client id.
    client_id: int = Field(default=21, ge=0)
    # The account orders go to; unset means the gateway's first managed account. Paper (DU…) unless it equals
    # ib.live_account. It also names the transactional.id, the fencing token of one executor per account.
    account: str | None = None
    group_id: str = Field(default="ibstream-execution", pattern=r"^[A-Za-z0-9._-]+$")
    health_port: int = Field(default=8094, ge=0, le=65535)
    # How long to wait for IB to answer openOrders/executions/positions before treating IB as unavailable.
    ib_answer_timeout_seconds: float = Field(default=5.0, gt=0)


class WarehouseSettings(Section):
    """Where history is kept (ClickHouse or embedded chDB) and how the sink batches into it."""

    env_prefix = "warehouse_"
    env_names = {
        "clickhouse_url": "clickhouse_url",
        "clickhouse_username": "clickhouse_username",
        "clickhouse_password": "clickhouse_password",
    }

    # Unset: embedded chDB persisted under dir (one process may open it). Set: HTTP(S) ClickHouse server.
    clickhouse_url: str | None = None
    clickhouse_username: str | None = None
    clickhouse_password: SecretStr | None = None
    # None means state_dir / "warehouse" (see Settings.warehouse_path).
    dir: Path | None = None
    database: str = Field(default="ibstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Days each topic's rows are kept, by catalogue topic name (no prefix); a topic not listed is kept forever.
    # DLQ topics share the dead-letter table, keyed here as "dlq".
    retention_days: dict[str, int] = Field(
        default_factory=lambda: {
            "md.quotes.v1": 30,
            "md.bars.5s.v1": 365,
            "md.heartbeats.v1": 30,
            "signals.v1": 365,
            "signals.transitions.v1": 365,
            "positions.v1": 365,
            "ops.alerts.v1": 365,
            "dlq": 365,
        }
    )
    # A sink batch is inserted when it holds this many rows or is this old, whichever comes first.
    batch_rows: int = Field(default=10_000, ge=1)
    batch_seconds: float = Field(default=1.0, gt=0)


class SinkSettings(Section):
    """The warehouse sink deployable."""

    env_prefix = "sink_"

    health_port: int = Field(default=8095, ge=0, le=65535)
    # The sink's static group membership id (a restarted sink takes its partitions back at once). It must differ per
    # sink replica, or replicas fence each other; None: the host name (a pod's name under Kubernetes).
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")


class StreamsSettings(Section):
    """The Faust worker."""

    env_prefix = "streams_"

    # Faust application id (consumer group, changelog topic names); the topic prefix is prepended to it.
    app_id: str = Field(default="ibstream-streams", pattern=r"^[A-Za-z0-9._-]+$")
    health_port: int = Field(default=6066, ge=0, le=65535)
    # A stable id per worker (e.g. a StatefulSet pod name) turns on Kafka static membership: a restarted worker gets
    # its partitions back at once. None: dynamic membership.
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    # None means state_dir / "streams" (Faust's data dir; tables are in memory, recovered from changelogs).
    data_dir: Path | None = None


class OrchestrationSettings(Section):
    """Signals to runs: how long a signal stays actionable, what opens a run, and who approves it."""

    env_prefix = "orchestration_"
    env_names = {
        "signal_expiry_seconds": "signal_expiry_seconds",
        "approval_mode": "approval_mode",
        "approval_policy_min_confidence": "approval_policy_min_confidence",
        "approval_policy_max_notional": "approval_policy_max_notional",
    }

    signal_expiry_seconds: int = Field(default=300, gt=0)
    # The confidence that opens an orchestration run.
    min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    # Approval: "manual" waits for approve_run/reject_run on control.v1; "policy" approves when both rules hold.
    approval_mode: Literal["manual", "policy"] = "manual"
    approval_policy_min_confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    approval_policy_max_notional: float = Field(default=10_000.0, gt=0)


class Agent0Settings(Section):
    """Agent0: where orchestration calls it, and how hard it tries before recording a failed run."""

    env_prefix = "agent0_"

    url: str = Field(default="http://127.0.0.1:8093", pattern=r"^https?://")
    host: str = "127.0.0.1"
    port: int = Field(default=8093, ge=1, le=65535)
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=0.2, ge=0, le=30)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # None means state_dir / "agent0.sqlite" (plans and executions survive restarts: execute at most once).
    db: Path | None = None


class RiskSettings(Section):
    """Sizing (account equity, the share of it one trade may lose at its stop) and the pre-trade limits."""

    env_prefix = "risk_"
    env_names = {"account_equity": "account_equity"}

    account_equity: float = Field(default=100_000.0, gt=0)
    per_trade_pct: float = Field(default=0.5, gt=0, le=5)
    max_position: float = Field(default=1_000.0, gt=0)
    max_gross_exposure: float = Field(default=250_000.0, gt=0)
    max_order_notional: float = Field(default=25_000.0, gt=0)
    min_stop_pct: float = Field(default=0.1, ge=0, lt=100)
    max_stop_pct: float = Field(default=10.0, gt=0, lt=100)
    max_orders_per_minute: int = Field(default=30, ge=1)
    price_band_pct: float = Field(default=5.0, gt=0, le=50)
    quote_max_age_seconds: float = Field(default=10.0, gt=0)
    daily_loss_limit: float = Field(default=2_000.0, gt=0)

    @model_validator(mode="after")
    def _stop_band_is_ordered(self) -> RiskSettings:
        if self.min_stop_pct >= self.max_stop_pct:
            raise ValueError(
                f"IBSTREAM_RISK_MIN_STOP_PCT ({self.min_stop_pct}) must be below IBSTREAM_RISK_MAX_STOP_PCT "
                f"({self.max_stop_pct})"
            )
        return self


class UatSettings(Section):
    """`ibstream uat`."""

    env_prefix = "uat_"

    # `ibstream uat --verdict` says go only after this many consecutive passing UAT sessions.
    required_sessions: int = Field(default=5, ge=1)


#: Section attribute → its model, in the order errors are reported.
SECTIONS: dict[str, type[Section]] = {
    "kafka": KafkaSettings,
    "stack": StackSettings,
    "registry": RegistrySettings,
    "api": ApiSettings,
    "ib": IbSettings,
    "feed": FeedSettings,
    "execution": ExecutionSettings,
    "warehouse": WarehouseSettings,
    "sink": SinkSettings,
    "streams": StreamsSettings,
    "orchestration": OrchestrationSettings,
    "agent0": Agent0Settings,
    "risk": RiskSettings,
    "uat": UatSettings,
}
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
