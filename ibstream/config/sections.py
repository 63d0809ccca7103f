"""The settings sections: one frozen pydantic model per concern (``KafkaSettings``, ``IbSettings``, …).

``SECTIONS`` maps each ``Settings`` attribute to its model, in the order errors are reported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

#: IB Gateway and TWS ports that reach a live (not paper) account by default.
LIVE_PORTS = frozenset({4001, 7496})


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


#: librdkafka settings the typed security fields own: client_config may not set them as well.
SECURITY_CLIENT_KEYS = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
    }
)


class KafkaSettings(Section):
    """The cluster every client talks to, and who this process is to it.

    The security fields reach every client, the librdkafka ones (``ibstream.kafka.clients``) and Faust's
    (``streams.app``): each deployable runs with its own principal (``sasl_username``/``sasl_password`` from its own
    secret), so the cluster's ACLs decide what it may read and write (``ibstream.kafka.identities``). Other
    librdkafka settings pass through ``client_config``.
    """

    env_prefix = "kafka_"

    bootstrap_servers: str = "127.0.0.1:19092"
    client_config: dict[str, str] = Field(default_factory=dict)
    topic_replication: int = Field(default=1, ge=1)
    # Prepended to every topic name: isolates tests (and tenants) sharing one cluster.
    topic_prefix: str = ""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # PEM files for TLS (SSL, SASL_SSL): the CA that signed the brokers' certificates (unset: the system's CAs),
    # and a client certificate and key for mTLS.
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"IBSTREAM_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs IBSTREAM_KAFKA_SASL_USERNAME and "
                "IBSTREAM_KAFKA_SASL_PASSWORD (this deployable's own principal)"
            )
        if not self.uses_sasl and (self.sasl_username or self.sasl_password):
            # Credentials that would silently not be used: the process would connect anonymously instead.
            raise ValueError(
                "IBSTREAM_KAFKA_SASL_USERNAME/IBSTREAM_KAFKA_SASL_PASSWORD are set but "
                f"IBSTREAM_KAFKA_SECURITY_PROTOCOL is {self.security_protocol}; use SASL_SSL or SASL_PLAINTEXT"
            )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("IBSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION and IBSTREAM_KAFKA_SSL_KEY_LOCATION go together")
        tls_files = (self.ssl_ca_location, self.ssl_certificate_location)
        if not self.uses_tls and any(tls_files):
            raise ValueError(
                "IBSTREAM_KAFKA_SSL_* files are set but IBSTREAM_KAFKA_SECURITY_PROTOCOL is "
                f"{self.security_protocol}; use SSL or SASL_SSL"
            )
        clashing = sorted(SECURITY_CLIENT_KEYS & set(self.client_config))
        # Security given only through client_config (the older way) still works: ibstream.kafka.security reads it
        # from there for Faust too. Both ways at once would leave two answers to one question.
        if clashing and self.security_protocol != "PLAINTEXT":
            raise ValueError(
                f"IBSTREAM_KAFKA_CLIENT_CONFIG sets {', '.join(clashing)}: use IBSTREAM_KAFKA_SECURITY_PROTOCOL, "
                "IBSTREAM_KAFKA_SASL_* and IBSTREAM_KAFKA_SSL_* instead, which reach Faust too"
            )
        return self

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
    # Each node's heap in a `stack up --brokers N` cluster (three combined KRaft nodes idle in ~1 GB together).
    cluster_heap: str = "320m"
    # SASL_PLAINTEXT with SCRAM-SHA-512 and ACLs (StandardAuthorizer) instead of an open plaintext listener; the
    # super user is IBSTREAM_KAFKA_SASL_USERNAME/PASSWORD (see tooling.stack).
    kafka_sasl: bool = False
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
    # The longest lifetime a token may have: one whose exp − iat, or whose exp − now, exceeds it is refused (a
    # stolen long-lived token is a standing credential). `ibstream token` issues 8 h by default.
    jwt_max_lifetime_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    # With a JWKS URL: a token naming a key id the cached key set lacks refetches the set at most this often, so
    # tokens with made-up key ids cannot make the API hammer the identity provider.
    jwt_jwks_refresh_seconds: float = Field(default=60.0, ge=1, le=3600)
    # Proxies whose X-Forwarded-For is believed (IP addresses or CIDR networks, comma-separated in the environment).
    # Empty (the default): no proxy header is honoured and the client is the peer address, whoever sends the header.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # /ready answers from its last check for this long: each check is a warehouse query and a Kafka round trip.
    ready_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # Browser origins allowed to call the API (CORS); empty allows none. Comma-separated in the environment.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-client token bucket (client = the token's subject when the token verifies, else the client address):
    # sustained rate and burst. Probes and /metrics are exempt.
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How long a command waits for Kafka's acknowledgement before the caller gets 503.
    command_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    # Where the operator's CLI reaches the running API, and the bearer token it presents: `ibstream audit` and
    # `ibstream replay --source warehouse` read through the API while it holds the embedded warehouse directory.
    # Unset url: http://<host>:<port> of this section (a wildcard bind address read as loopback).
    url: str | None = Field(default=None, pattern=r"^https?://")
    token: SecretStr | None = None

    @property
    def client_url(self) -> str:
        """The URL a client on this machine reaches the API at: ``url``, else this section's host and port."""
        if self.url is not None:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @field_validator("jwt_secret")
    @classmethod
    def _secret_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes (e.g. `openssl rand -base64 48`)")
        return value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
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

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR network: {proxy!r}") from None
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
    # IB Gateway restarts itself once a day at the time configured in it ("HH:MM" in daily_restart_timezone); a
    # disconnect within daily_restart_window_seconds after it is expected: logged and an info alert, not a page.
    daily_restart_time: str | None = None
    daily_restart_timezone: str = "America/New_York"
    daily_restart_window_seconds: float = Field(default=600.0, gt=0)
    # While another live session of this username holds the market data (10197), ask again this often to find
    # out when it ended.
    competing_session_retry_seconds: float = Field(default=60.0, gt=0)

    @field_validator("daily_restart_time")
    @classmethod
    def _time_of_day(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = value.strip().split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) > 23 or int(parts[1]) > 59:
            raise ValueError(f"not a time of day HH:MM: {value!r}")
        return f"{int(parts[0]):02d}:{int(parts[1]):02d}"

    @field_validator("daily_restart_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

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
    # How long a routed order waits at the head of its partition for its risk decision (a different topic, read
    # separately, so it may arrive later) before it is dead-lettered unplaced (consumers/execution/decisions.py).
    decision_wait_seconds: float = Field(default=10.0, gt=0)
    # account.v1: a burst of IB's account callbacks makes at most one record per this many seconds ...
    account_publish_min_seconds: float = Field(default=1.0, gt=0)
    # ... and an unchanged account is republished this often, so readers can judge freshness by the record's time.
    account_heartbeat_seconds: float = Field(default=30.0, gt=0)
    # A cancel_all read back at startup (control.v1 is compacted) is applied only if issued within this many seconds:
    # an old one must not cancel orders placed since (consumers/execution/operator_orders.py).
    operator_command_max_age_seconds: float = Field(default=300.0, gt=0)


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
            # scored signals: as long as the signals they score (aggregated bars, unlisted, are kept for good)
            "signals.outcomes.v1": 365,
            "positions.v1": 365,
            "account.v1": 365,
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
    env_names = {"strategies_file": "strategies_file"}

    # Faust application id (consumer group, changelog topic names); the topic prefix is prepended to it.
    app_id: str = Field(default="ibstream-streams", pattern=r"^[A-Za-z0-9._-]+$")
    health_port: int = Field(default=6066, ge=0, le=65535)
    # A stable id per worker (e.g. a StatefulSet pod name) turns on Kafka static membership: a restarted worker gets
    # its partitions back at once. None: dynamic membership.
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    # The consumer group session: a worker that stops heartbeating (killed, frozen) keeps its partitions this long
    # before the group moves them, unless it comes back with its instance id first. 6 s is the broker's minimum by
    # default, 60 s stays under Faust's request timeout (90 s); shorter moves partitions sooner, but then a GC or
    # load pause costs a rebalance.
    session_timeout_seconds: float = Field(default=15.0, ge=6.0, le=60.0)
    # An input partition with records handed over or waiting and no commit for this long is stalled: logged with its
    # offsets, /ready answers 503, and it is read again from its committed offset (streams/stalls.py). Longer than
    # any one batch of an agent may take (an Agent0 call with its retries).
    stall_seconds: float = Field(default=60.0, ge=2.0, le=3600.0)
    # None means state_dir / "streams" (Faust's data dir; tables are in memory, recovered from changelogs).
    data_dir: Path | None = None
    # IBSTREAM_STRATEGIES_FILE: the strategy instances (TOML or YAML, ibstream.strategies.instances), read by the
    # signals worker and the API; None: the built-in strategies with their default params on every symbol.
    strategies_file: Path | None = None
    # How far behind the newest 5-second bar a late (backfilled) one may start and still correct its aggregates:
    # the bars agent keeps each timeframe's bars this long (streams/bars/aggregation.py); older ones are ignored.
    bars_late_window_seconds: int = Field(default=1800, ge=60, le=86_400)
    # How much a worker fetches ahead of its agents. One fetch loop feeds every agent of the worker, in the order
    # the records were fetched, and waits while an agent's buffer is full; so when the bar agents fall behind (a
    # replay, the demo's 600x clock), a signal, a risk decision or an orchestration command waits behind every bar
    # already fetched. Faust's defaults (4096 records per agent, 1 MiB per partition and fetch) let that backlog reach
    # thousands of bars: at 600x a signal reached orchestration 5.7 s (p50, 12 s at most) after it was made, and
    # expired. These (256 records, 64 KiB, a few hundred bars per partition) brought it to 1-2.6 s (at most 3.4-4.8)
    # on the same run; smaller still (64 records, 16 KiB) cost throughput: the worker fell further behind.
    stream_buffer_maxsize: int = Field(default=256, ge=16, le=131_072)
    fetch_partition_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)


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
    # A flatten command older than this when orchestration reads it is ignored, not carried out: a control.v1 replay
    # (a new consumer group reads the compacted topic from its beginning) must not close positions nobody asked to.
    flatten_max_age_seconds: float = Field(default=60.0, gt=0)


class Agent0Settings(Section):
    """Agent0: where orchestration calls it, and how hard it tries before recording a failed run; Agent0's own
    limits and where it asks orchestration's runs (the API)."""

    env_prefix = "agent0_"

    url: str = Field(default="http://127.0.0.1:8093", pattern=r"^https?://")
    # The bearer token (service role) streams' orchestration presents to Agent0; a secret, never logged.
    # `ibstream token --role service --subject streams` issues one for development.
    token: SecretStr | None = None
    # Agent0 asks the API (GET /v1/runs/{run_id}, with the caller's own token) whether a plan's run is approved.
    api_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)
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
    # The newest account.v1 record older than this (wall clock, as execution stamps it) fails the account_state
    # check: sizing, buying power and the daily loss would be judged on values IB no longer vouches for. Execution
    # publishes on every change and as a heartbeat (every 30 s by default; keep this well above that heartbeat), and
    # goes quiet while IB is away, so two minutes of silence means the account stream stopped.
    account_state_max_age_seconds: float = Field(default=120.0, gt=0)
    # One net position per symbol: an intent opposite to a held position is rejected (conflicting_position) unless
    # this lets it through as a reduction (never past flat, never against a working opposite entry).
    reduce_opposite: bool = False

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

    # `ibstream uat --verdict` says go only after this many consecutive trading days of passing paper-gateway
    # sessions (simulator rehearsals never count).
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
