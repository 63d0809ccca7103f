"""Faust's Kafka credentials: the same principal as the process's librdkafka clients."""

from __future__ import annotations

import ssl

import faust
import pytest

from ibstream.config import load_settings
from ibstream.exceptions import ConfigError
from ibstream.kafka.security import KafkaSecurity, effective_security
from streams.app import broker_credentials


def test_plaintext_gives_faust_no_credentials() -> None:
    assert broker_credentials(effective_security(load_settings().kafka)) is None


def test_sasl_scram_reaches_faust_with_the_deployables_user() -> None:
    settings = load_settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="streams", kafka_sasl_password="pw"
    )
    credentials = broker_credentials(effective_security(settings.kafka))
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("streams", "pw")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.ssl_context is None


def test_sasl_ssl_gives_faust_a_tls_context() -> None:
    credentials = broker_credentials(
        KafkaSecurity(protocol="SASL_SSL", mechanism="SCRAM-SHA-256", username="s", password="p")
    )
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)


def test_tls_alone_gives_faust_ssl_credentials() -> None:
    assert isinstance(broker_credentials(KafkaSecurity(protocol="SSL")), faust.SSLCredentials)


def test_a_mechanism_faust_cannot_log_in_with_stops_startup_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="IBSTREAM_KAFKA_SASL_MECHANISM"):
        broker_credentials(KafkaSecurity(protocol="SASL_SSL", mechanism="OAUTHBEARER", username="s", password="p"))
