"""Who a process is to Kafka: the security settings every client takes, librdkafka's and Faust's alike.

``KafkaSettings`` holds them as typed fields (``security_protocol``, ``sasl_*``, ``ssl_*``); older deployments may
still give them as librdkafka keys in ``client_config``. ``effective_security`` answers from either, so the
librdkafka clients (``client_security_config``) and Faust's aiokafka transport (``streams.app``, which does not
read librdkafka's dict) always connect as the same principal.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibstream.config.sections import KafkaSettings


@dataclass(frozen=True)
class KafkaSecurity:
    """One process's Kafka security, whichever way it was configured."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.upper().startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.upper() in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """For logs: protocol, mechanism and principal, never the password."""
        if self.uses_sasl:
            return f"{self.protocol} {self.mechanism} as {self.username}"
        return self.protocol


def client_security_config(kafka: KafkaSettings) -> dict[str, str]:
    """The librdkafka settings for the typed security fields (empty for the default PLAINTEXT: nothing changes
    for a cluster without security)."""
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    config: dict[str, str] = {"security.protocol": kafka.security_protocol}
    if kafka.uses_sasl and kafka.sasl_username and kafka.sasl_password:
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    optional = {
        "ssl.ca.location": kafka.ssl_ca_location,
        "ssl.certificate.location": kafka.ssl_certificate_location,
        "ssl.key.location": kafka.ssl_key_location,
    }
    config.update({key: value for key, value in optional.items() if value})
    return config


def effective_security(kafka: KafkaSettings) -> KafkaSecurity:
    """The security every client of this process uses: the typed fields, or else the librdkafka keys in
    ``client_config`` (the settings' validator refuses both at once)."""
    config = client_security_config(kafka) or kafka.client_config
    return KafkaSecurity(
        protocol=config.get("security.protocol", "PLAINTEXT").upper(),
        # librdkafka takes both spellings.
        mechanism=config.get("sasl.mechanism") or config.get("sasl.mechanisms"),
        username=config.get("sasl.username"),
        password=config.get("sasl.password"),
        ca_location=config.get("ssl.ca.location"),
        certificate_location=config.get("ssl.certificate.location"),
        key_location=config.get("ssl.key.location"),
    )
