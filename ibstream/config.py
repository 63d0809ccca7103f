"""Settings: one pydantic-settings class, env prefix ``IBSTREAM_``, validated at startup.

A bad value stops the process with a message that names the environment variable, never a stack trace.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ibstream.exceptions import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: IB Gateway and TWS ports that reach a live (not paper) account by default.
LIVE_PORTS = frozenset({4001, 7496})
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: The levels ``IBSTREAM_LOG_LEVEL`` and every ``--log-level`` flag accept (any case).
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class Settings(BaseSettings):
    """Every knob of every deployable. Frozen: read once at startup and passed down."""

    model_config = SettingsConfigDict(env_prefix="IBSTREAM_", frozen=True, extra="ignore")

    # Where local state lives: broker data and logs, pid files, the chDB directory.
    state_dir: Path = Field(default=PROJECT_ROOT / ".state")
    # How much every deployable logs; its own --log-level flag, or `ibstream --log-level` (which sets this for
    # everything it starts), overrides it.
    log_level: LogLevel = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_in_any_case(cls, value: Any) -> Any:
        # Operators write `debug` as often as `DEBUG`; the logging module only knows the upper-case names.
        return value.strip().upper() if isinstance(value, str) else value

    # Kafka. Security settings (SASL_SSL, mTLS) pass through to every client unchanged via kafka_client_config.
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_client_config: dict[str, str] = Field(default_factory=dict)
    kafka_topic_replication: int = Field(default=1, ge=1)
    # Prepended to every topic name: isolates tests (and tenants) sharing one cluster.
    kafka_topic_prefix: str = ""

    # Local broker started by `ibstream stack up` (dev, tests, demo).
    stack_kafka_port: int = Field(default=19092, ge=1, le=65535)
    stack_controller_port: int = Field(default=19093, ge=1, le=65535)
    stack_kafka_heap: str = "768m"
    stack_registry_port: int = Field(default=18081, ge=1, le=65535)

    # Schema registry (Confluent-compatible). Unset: registry-less single-object encoding.
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None

    # --- api ---
    # `ibstream run api`: reads history from the warehouse, writes operator commands to control.v1, never calls IB.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    # JWT bearer tokens. HS256 verifies with api_jwt_secret (≥ 32 bytes: RFC 7518 §3.2 wants a key as long as the
    # hash); RS256 with api_jwt_public_key (PEM) or the keys served at api_jwt_jwks_url. Expiry, issuer and
    # audience are always checked. The API refuses to start without the key its algorithm needs.
    api_jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    api_jwt_secret: SecretStr | None = None
    api_jwt_public_key: str | None = None
    api_jwt_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    api_jwt_issuer: str = Field(default="ibstream", min_length=1)
    api_jwt_audience: str = Field(default="ibstream-api", min_length=1)
    api_jwt_leeway_seconds: int = Field(default=10, ge=0, le=300)
    # Browser origins allowed to call the API (CORS); empty allows none. Comma-separated in the environment.
    api_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-client token bucket (client = peer address): sustained rate and burst. Probes and /metrics are exempt.
    api_rate_limit_per_minute: int = Field(default=600, ge=1)
    api_rate_limit_burst: int = Field(default=60, ge=1)
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How long a command waits for Kafka's acknowledgement before the caller gets 503.
    api_command_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    @field_validator("api_jwt_secret")
    @classmethod
    def _secret_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes (e.g. `openssl rand -base64 48`)")
        return value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_cors_origins")
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

    # --- IB connection and market data producer ---
    # Live trading needs this to name the exact live account; without it only paper accounts (DU…) and paper
    # ports are accepted, by every deployable that talks to IB.
    ib_live_account: str | None = None
    ib_host: str = "127.0.0.1"
    ib_port: int = Field(default=4002, ge=1, le=65535)
    ib_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    ib_reconnect_base_seconds: float = Field(default=0.5, gt=0)
    ib_reconnect_cap_seconds: float = Field(default=30.0, gt=0)
    # After IB answers a historical request with a pacing violation (its counters can hold requests this process
    # never made, e.g. a predecessor's), backfills pause this long, doubling per violation up to 2 minutes.
    ib_historical_pacing_backoff_seconds: float = Field(default=15.0, gt=0)
    producer_client_id: int = Field(default=11, ge=0)
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
    producer_health_port: int = Field(default=8092, ge=0, le=65535)
    # Bounded in-memory queue between ibapi's reader thread and the producer loop (backpressure, not an OOM).
    producer_queue_size: int = Field(default=100_000, ge=1000)

    # --- execution ---
    # One client id per executor: IB refuses a second session with the same id (326), which is a fence of its own,
    # and IB order ids are unique per client id.
    execution_client_id: int = Field(default=21, ge=0)
    # The account orders go to; unset means the gateway's first managed account. Paper (DU…) unless it equals
    # ib_live_account. It also names the transactional.id, the fencing token of one executor per account.
    execution_account: str | None = None
    execution_group_id: str = Field(default="ibstream-execution", pattern=r"^[A-Za-z0-9._-]+$")
    execution_health_port: int = Field(default=8094, ge=0, le=65535)
    # How long to wait for IB to answer openOrders/executions/positions before treating IB as unavailable.
    execution_ib_answer_timeout_seconds: float = Field(default=5.0, gt=0)

    # --- warehouse ---
    # Unset: embedded chDB persisted under warehouse_dir (one process may open it). Set: HTTP(S) ClickHouse server.
    clickhouse_url: str | None = None
    clickhouse_username: str | None = None
    clickhouse_password: SecretStr | None = None
    # None means state_dir / "warehouse" (see the warehouse_path property).
    warehouse_dir: Path | None = None
    warehouse_database: str = Field(default="ibstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Days each topic's rows are kept, by catalogue topic name (no prefix); a topic not listed is kept forever.
    # DLQ topics share the dead-letter table, keyed here as "dlq".
    warehouse_retention_days: dict[str, int] = Field(
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
    warehouse_batch_rows: int = Field(default=10_000, ge=1)
    warehouse_batch_seconds: float = Field(default=1.0, gt=0)
    sink_health_port: int = Field(default=8095, ge=0, le=65535)
    # The sink's static group membership id (a restarted sink takes its partitions back at once). It must differ per
    # sink replica, or replicas fence each other; None: the host name (a pod's name under Kubernetes).
    sink_instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")

    # --- streams and risk ---
    # Faust application id (consumer group, changelog topic names); the topic prefix is prepended to it.
    streams_app_id: str = Field(default="ibstream-streams", pattern=r"^[A-Za-z0-9._-]+$")
    streams_health_port: int = Field(default=6066, ge=0, le=65535)
    # A stable id per worker (e.g. a StatefulSet pod name) turns on Kafka static membership: a restarted worker gets
    # its partitions back at once. None: dynamic membership.
    streams_instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    # None means state_dir / "streams" (Faust's data dir; tables are in memory, recovered from changelogs).
    streams_data_dir: Path | None = None
    # Signals: how long a signal stays actionable, and the confidence that opens an orchestration run.
    signal_expiry_seconds: int = Field(default=300, gt=0)
    orchestration_min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)
    # Approval: "manual" waits for approve_run/reject_run on control.v1; "policy" approves when both rules hold.
    approval_mode: Literal["manual", "policy"] = "manual"
    approval_policy_min_confidence: float = Field(default=0.8, ge=0.0, le=1.0)
    approval_policy_max_notional: float = Field(default=10_000.0, gt=0)
    # Agent0: where orchestration calls it, and how hard it tries before recording a failed run.
    agent0_url: str = Field(default="http://127.0.0.1:8093", pattern=r"^https?://")
    agent0_host: str = "127.0.0.1"
    agent0_port: int = Field(default=8093, ge=1, le=65535)
    agent0_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    agent0_max_attempts: int = Field(default=3, ge=1, le=10)
    agent0_backoff_seconds: float = Field(default=0.2, ge=0, le=30)
    agent0_breaker_failures: int = Field(default=5, ge=1)
    agent0_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # None means state_dir / "agent0.sqlite" (plans and executions survive restarts: execute at most once).
    agent0_db: Path | None = None
    # Sizing: the account equity and the share of it one trade may lose at its stop.
    account_equity: float = Field(default=100_000.0, gt=0)
    risk_per_trade_pct: float = Field(default=0.5, gt=0, le=5)
    # Pre-trade limits (risk gate).
    risk_max_position: float = Field(default=1_000.0, gt=0)
    risk_max_gross_exposure: float = Field(default=250_000.0, gt=0)
    risk_max_order_notional: float = Field(default=25_000.0, gt=0)
    risk_min_stop_pct: float = Field(default=0.1, ge=0, lt=100)
    risk_max_stop_pct: float = Field(default=10.0, gt=0, lt=100)
    risk_max_orders_per_minute: int = Field(default=30, ge=1)
    risk_price_band_pct: float = Field(default=5.0, gt=0, le=50)
    risk_quote_max_age_seconds: float = Field(default=10.0, gt=0)
    risk_daily_loss_limit: float = Field(default=2_000.0, gt=0)

    # --- UAT ---
    # `ibstream uat --verdict` says go only after this many consecutive passing UAT sessions.
    uat_required_sessions: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _stop_band_is_ordered(self) -> Settings:
        if self.risk_min_stop_pct >= self.risk_max_stop_pct:
            raise ValueError(
                f"risk_min_stop_pct ({self.risk_min_stop_pct}) must be below risk_max_stop_pct "
                f"({self.risk_max_stop_pct})"
            )
        return self

    @property
    def streams_data_path(self) -> Path:
        """Faust's data directory."""
        return self.streams_data_dir if self.streams_data_dir is not None else self.state_dir / "streams"

    @property
    def agent0_db_path(self) -> Path:
        """Agent0's SQLite file (plans, executions)."""
        return self.agent0_db if self.agent0_db is not None else self.state_dir / "agent0.sqlite"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {server!r}")
        return value

    @field_validator("ib_port")
    @classmethod
    def _live_port_needs_live_account(cls, value: int, info: ValidationInfo) -> int:
        if value in LIVE_PORTS and not info.data.get("ib_live_account"):
            raise ValueError(
                f"port {value} is a live-trading port; use a paper port (4002 gateway, 7497 TWS) or set "
                "IBSTREAM_IB_LIVE_ACCOUNT to the live account you mean"
            )
        return value

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

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value

    @property
    def kafka_state_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def warehouse_path(self) -> Path:
        """The embedded chDB data directory."""
        return self.warehouse_dir if self.warehouse_dir is not None else self.state_dir / "warehouse"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (plus explicit overrides), turning a validation error into a
    ConfigError that names the environment variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        message = str(first["msg"])
        if first["loc"]:
            field = str(first["loc"][0])
        else:
            # A cross-field (model) validator has no location: name the first setting its message mentions.
            mentioned = [(message.find(name), name) for name in Settings.model_fields if name in message]
            field = min(mentioned)[1] if mentioned else "?"
        raise ConfigError(f"IBSTREAM_{field.upper()}", message) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
