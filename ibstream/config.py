"""Settings: one pydantic-settings class, env prefix ``IBSTREAM_``, validated at startup.

A bad value stops the process with a message that names the environment variable, never a stack trace.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibstream.exceptions import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of every deployable. Frozen: read once at startup and passed down."""

    model_config = SettingsConfigDict(env_prefix="IBSTREAM_", frozen=True, extra="ignore")

    # Where local state lives: broker data and logs, pid files, the chDB directory.
    state_dir: Path = Field(default=PROJECT_ROOT / ".state")

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

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {server!r}")
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value

    @property
    def kafka_state_dir(self) -> Path:
        return self.state_dir / "kafka"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (plus explicit overrides), turning a validation error into a
    ConfigError that names the environment variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(f"IBSTREAM_{field.upper()}", first["msg"]) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
