"""Schema registry: the only module that imports confluent-kafka's registry client.

Subjects follow the TopicNameStrategy (``<topic>-value``) so confluent-kafka's AvroDeserializer, Kafka Connect and
other tools read our topics. Compatibility is BACKWARD_TRANSITIVE: a consumer on today's schema must read the
oldest data Kafka or the warehouse still holds.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from ibstream.config import Settings
from ibstream.exceptions import IbstreamError

COMPATIBILITY = "BACKWARD_TRANSITIVE"


class RegistryError(IbstreamError):
    """The registry refused a schema or could not be reached."""


class SchemaRegistry:
    """A Confluent-compatible registry (Confluent, Apicurio's ccompat API, Karapace, Redpanda)."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._subjects_configured: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaRegistry:
        if settings.registry.url is None:
            raise RegistryError("IBSTREAM_SCHEMA_REGISTRY_URL is not set")
        config: dict[str, Any] = {"url": settings.registry.url}
        if settings.registry.username and settings.registry.password:
            secret = settings.registry.password.get_secret_value()
            config["basic.auth.user.info"] = f"{settings.registry.username}:{secret}"
        return cls(SchemaRegistryClient(config))

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) a schema under a subject with BACKWARD_TRANSITIVE compatibility; return its id."""
        try:
            if subject not in self._subjects_configured:
                self._client.set_compatibility(subject_name=subject, level=COMPATIBILITY)
                self._subjects_configured.add(subject)
            return int(self._client.register_schema(subject, Schema(schema_text, "AVRO")))
        except Exception as error:
            raise RegistryError(f"registry refused the schema for subject {subject}: {error}") from error

    def is_compatible(self, subject: str, schema_text: str) -> bool:
        """Whether the schema could be registered under the subject without breaking compatibility."""
        return bool(self._client.test_compatibility(subject, Schema(schema_text, "AVRO")))

    def schema_text(self, schema_id: int) -> str:
        schema = self._client.get_schema(schema_id)
        return str(schema.schema_str)
