"""A bad setting stops startup with a message naming the environment variable."""

from __future__ import annotations

import pytest

from ibstream.config import load_settings
from ibstream.exceptions import ConfigError


def test_bad_bootstrap_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_KAFKA_BOOTSTRAP_SERVERS", "localhost")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.setting == "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS"
    assert "host:port" in str(caught.value)


def test_bad_registry_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_SCHEMA_REGISTRY_URL", "registry:8081")
    with pytest.raises(ConfigError, match="IBSTREAM_SCHEMA_REGISTRY_URL"):
        load_settings()


def test_bad_port_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_STACK_KAFKA_PORT", "70000")
    with pytest.raises(ConfigError, match="IBSTREAM_STACK_KAFKA_PORT"):
        load_settings()


def test_security_settings_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "IBSTREAM_KAFKA_CLIENT_CONFIG", '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}'
    )
    from ibstream.kafka.clients import producer_config

    config = producer_config(load_settings())
    assert config["security.protocol"] == "SASL_SSL"
    assert config["enable.idempotence"] is True
    assert config["partitioner"] == "murmur2_random"
    assert config["acks"] == "all"


def test_cross_field_error_names_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_RISK_MIN_STOP_PCT", "5")
    monkeypatch.setenv("IBSTREAM_RISK_MAX_STOP_PCT", "1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.setting == "IBSTREAM_RISK_MIN_STOP_PCT"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("IBSTREAM_IB_DAILY_RESTART_TIME", "25:00", "HH:MM"),
        ("IBSTREAM_IB_DAILY_RESTART_TIME", "11:45 PM", "HH:MM"),
        ("IBSTREAM_IB_DAILY_RESTART_TIMEZONE", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_gateway_restart_time_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=reason) as caught:
        load_settings()
    assert caught.value.setting == name
