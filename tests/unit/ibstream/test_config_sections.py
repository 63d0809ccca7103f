"""Settings in sections: every environment variable users set before the sections keeps working unchanged.

The table lists every field of the flat Settings class the sections replaced (issue 19 item 6), by its old flat name:
the value set in the environment, where it is read now, and what it reads as.
"""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ibstream.config import FLAT_NAMES, Settings, load_settings
from ibstream.exceptions import ConfigError

SECRET = "s" * 40  # the JWT secret must be at least 32 bytes
# flat name (IBSTREAM_ + upper case), environment value, attribute path now, expected value
OLD_VARIABLES: list[tuple[str, str, str, Any]] = [
    ("state_dir", "/tmp/ibstream-state", "state_dir", Path("/tmp/ibstream-state")),
    ("log_level", "debug", "log_level", "DEBUG"),
    ("kafka_bootstrap_servers", "k1:9092,k2:9092", "kafka.bootstrap_servers", "k1:9092,k2:9092"),
    ("kafka_client_config", '{"security.protocol": "SSL"}', "kafka.client_config", {"security.protocol": "SSL"}),
    ("kafka_topic_replication", "7", "kafka.topic_replication", 7),
    ("kafka_topic_prefix", "x_1", "kafka.topic_prefix", "x_1"),
    ("stack_kafka_port", "12345", "stack.kafka_port", 12345),
    ("stack_controller_port", "12345", "stack.controller_port", 12345),
    ("stack_kafka_heap", "x_1", "stack.kafka_heap", "x_1"),
    ("stack_cluster_heap", "x_1", "stack.cluster_heap", "x_1"),
    ("stack_registry_port", "12345", "stack.registry_port", 12345),
    ("schema_registry_url", "http://registry:8081", "registry.url", "http://registry:8081"),
    ("schema_registry_username", "x_1", "registry.username", "x_1"),
    ("schema_registry_password", "pw", "registry.password", SecretStr("pw")),
    ("api_host", "x_1", "api.host", "x_1"),
    ("api_port", "12345", "api.port", 12345),
    ("api_jwt_algorithm", "RS256", "api.jwt_algorithm", "RS256"),
    ("api_jwt_secret", SECRET, "api.jwt_secret", SecretStr(SECRET)),
    ("api_jwt_public_key", "x_1", "api.jwt_public_key", "x_1"),
    ("api_jwt_jwks_url", "https://idp.example/jwks", "api.jwt_jwks_url", "https://idp.example/jwks"),
    ("api_jwt_issuer", "x_1", "api.jwt_issuer", "x_1"),
    ("api_jwt_audience", "x_1", "api.jwt_audience", "x_1"),
    ("api_jwt_leeway_seconds", "7", "api.jwt_leeway_seconds", 7),
    (
        "api_cors_origins",
        "http://a.example, https://b.example:8443",
        "api.cors_origins",
        ["http://a.example", "https://b.example:8443"],
    ),
    ("api_rate_limit_per_minute", "7", "api.rate_limit_per_minute", 7),
    ("api_rate_limit_burst", "7", "api.rate_limit_burst", 7),
    ("api_max_body_bytes", "2048", "api.max_body_bytes", 2048),
    ("api_command_timeout_seconds", "0.7", "api.command_timeout_seconds", 0.7),
    ("api_jwt_max_lifetime_seconds", "3600", "api.jwt_max_lifetime_seconds", 3600),
    ("api_jwt_jwks_refresh_seconds", "7", "api.jwt_jwks_refresh_seconds", 7.0),
    ("api_trusted_proxies", "10.0.0.0/8, 127.0.0.1", "api.trusted_proxies", ["10.0.0.0/8", "127.0.0.1"]),
    ("api_ready_cache_seconds", "0.7", "api.ready_cache_seconds", 0.7),
    ("ib_live_account", "x_1", "ib.live_account", "x_1"),
    ("ib_host", "x_1", "ib.host", "x_1"),
    ("ib_port", "7497", "ib.port", 7497),
    ("ib_connect_timeout_seconds", "0.7", "ib.connect_timeout_seconds", 0.7),
    ("ib_reconnect_base_seconds", "0.7", "ib.reconnect_base_seconds", 0.7),
    ("ib_reconnect_cap_seconds", "0.7", "ib.reconnect_cap_seconds", 0.7),
    ("ib_historical_pacing_backoff_seconds", "0.7", "ib.historical_pacing_backoff_seconds", 0.7),
    ("ib_daily_restart_time", "3:05", "ib.daily_restart_time", "03:05"),
    ("ib_daily_restart_timezone", "Europe/Zurich", "ib.daily_restart_timezone", "Europe/Zurich"),
    ("ib_daily_restart_window_seconds", "0.7", "ib.daily_restart_window_seconds", 0.7),
    ("ib_competing_session_retry_seconds", "0.7", "ib.competing_session_retry_seconds", 0.7),
    ("producer_client_id", "7", "feed.client_id", 7),
    ("symbols", "ibm,nvda", "feed.symbols", ["IBM", "NVDA"]),
    ("market_data_type", "3", "feed.market_data_type", 3),
    ("market_clock", "feed", "feed.market_clock", "feed"),
    ("trading_hours", "24h", "feed.trading_hours", "24h"),
    ("stale_after_seconds", "0.7", "feed.stale_after_seconds", 0.7),
    ("heartbeat_seconds", "0.7", "feed.heartbeat_seconds", 0.7),
    ("producer_health_port", "12345", "feed.health_port", 12345),
    ("producer_queue_size", "5000", "feed.queue_size", 5000),
    ("execution_client_id", "7", "execution.client_id", 7),
    ("execution_account", "x_1", "execution.account", "x_1"),
    ("execution_group_id", "x_1", "execution.group_id", "x_1"),
    ("execution_health_port", "12345", "execution.health_port", 12345),
    ("execution_ib_answer_timeout_seconds", "0.7", "execution.ib_answer_timeout_seconds", 0.7),
    ("execution_decision_wait_seconds", "0.7", "execution.decision_wait_seconds", 0.7),
    ("execution_operator_command_max_age_seconds", "60", "execution.operator_command_max_age_seconds", 60.0),
    ("execution_account_publish_min_seconds", "2.5", "execution.account_publish_min_seconds", 2.5),
    ("execution_account_heartbeat_seconds", "45", "execution.account_heartbeat_seconds", 45.0),
    ("clickhouse_url", "x_1", "warehouse.clickhouse_url", "x_1"),
    ("clickhouse_username", "x_1", "warehouse.clickhouse_username", "x_1"),
    ("clickhouse_password", "pw", "warehouse.clickhouse_password", SecretStr("pw")),
    ("warehouse_dir", "/tmp/x", "warehouse.dir", Path("/tmp/x")),
    ("warehouse_database", "x_1", "warehouse.database", "x_1"),
    ("warehouse_retention_days", '{"md.quotes.v1": 7}', "warehouse.retention_days", {"md.quotes.v1": 7}),
    ("warehouse_batch_rows", "7", "warehouse.batch_rows", 7),
    ("warehouse_batch_seconds", "0.7", "warehouse.batch_seconds", 0.7),
    ("sink_health_port", "12345", "sink.health_port", 12345),
    ("sink_instance_id", "x_1", "sink.instance_id", "x_1"),
    ("streams_app_id", "x_1", "streams.app_id", "x_1"),
    ("streams_health_port", "12345", "streams.health_port", 12345),
    ("streams_instance_id", "x_1", "streams.instance_id", "x_1"),
    ("streams_session_timeout_seconds", "45", "streams.session_timeout_seconds", 45.0),
    ("streams_stall_seconds", "7.5", "streams.stall_seconds", 7.5),
    ("streams_data_dir", "/tmp/x", "streams.data_dir", Path("/tmp/x")),
    ("strategies_file", "/tmp/strategies.toml", "streams.strategies_file", Path("/tmp/strategies.toml")),
    ("streams_bars_late_window_seconds", "600", "streams.bars_late_window_seconds", 600),
    ("streams_stream_buffer_maxsize", "512", "streams.stream_buffer_maxsize", 512),
    ("streams_fetch_partition_bytes", "32768", "streams.fetch_partition_bytes", 32768),
    ("signal_expiry_seconds", "7", "orchestration.signal_expiry_seconds", 7),
    ("orchestration_min_confidence", "0.7", "orchestration.min_confidence", 0.7),
    ("approval_mode", "policy", "orchestration.approval_mode", "policy"),
    ("approval_policy_min_confidence", "0.7", "orchestration.approval_policy_min_confidence", 0.7),
    ("approval_policy_max_notional", "0.7", "orchestration.approval_policy_max_notional", 0.7),
    ("orchestration_flatten_max_age_seconds", "7", "orchestration.flatten_max_age_seconds", 7.0),
    ("agent0_url", "http://agent0:8093", "agent0.url", "http://agent0:8093"),
    ("agent0_host", "x_1", "agent0.host", "x_1"),
    ("agent0_port", "12345", "agent0.port", 12345),
    ("agent0_timeout_seconds", "0.7", "agent0.timeout_seconds", 0.7),
    ("agent0_max_attempts", "7", "agent0.max_attempts", 7),
    ("agent0_backoff_seconds", "0.7", "agent0.backoff_seconds", 0.7),
    ("agent0_breaker_failures", "7", "agent0.breaker_failures", 7),
    ("agent0_breaker_reset_seconds", "0.7", "agent0.breaker_reset_seconds", 0.7),
    ("agent0_db", "/tmp/x", "agent0.db", Path("/tmp/x")),
    ("agent0_token", SECRET, "agent0.token", SECRET),
    ("agent0_api_url", "http://api:8080", "agent0.api_url", "http://api:8080"),
    ("agent0_max_body_bytes", "4096", "agent0.max_body_bytes", 4096),
    ("account_equity", "0.7", "risk.account_equity", 0.7),
    ("risk_per_trade_pct", "0.7", "risk.per_trade_pct", 0.7),
    ("risk_max_position", "0.7", "risk.max_position", 0.7),
    ("risk_max_gross_exposure", "0.7", "risk.max_gross_exposure", 0.7),
    ("risk_max_order_notional", "0.7", "risk.max_order_notional", 0.7),
    ("risk_min_stop_pct", "0.7", "risk.min_stop_pct", 0.7),
    ("risk_max_stop_pct", "0.7", "risk.max_stop_pct", 0.7),
    ("risk_max_orders_per_minute", "7", "risk.max_orders_per_minute", 7),
    ("risk_price_band_pct", "0.7", "risk.price_band_pct", 0.7),
    ("risk_quote_max_age_seconds", "0.7", "risk.quote_max_age_seconds", 0.7),
    ("risk_daily_loss_limit", "0.7", "risk.daily_loss_limit", 0.7),
    ("risk_account_state_max_age_seconds", "0.7", "risk.account_state_max_age_seconds", 0.7),
    ("risk_reduce_opposite", "1", "risk.reduce_opposite", True),
    ("uat_required_sessions", "7", "uat.required_sessions", 7),
    ("kafka_security_protocol", "SSL", "kafka.security_protocol", "SSL"),
    ("kafka_sasl_mechanism", "PLAIN", "kafka.sasl_mechanism", "PLAIN"),
    ("kafka_sasl_username", "x_1", "kafka.sasl_username", "x_1"),
    ("kafka_sasl_password", "pw", "kafka.sasl_password", SecretStr("pw")),
    ("kafka_ssl_ca_location", "/tmp/ca.crt", "kafka.ssl_ca_location", "/tmp/ca.crt"),
    ("kafka_ssl_certificate_location", "/tmp/c.crt", "kafka.ssl_certificate_location", "/tmp/c.crt"),
    ("kafka_ssl_key_location", "/tmp/c.key", "kafka.ssl_key_location", "/tmp/c.key"),
    ("stack_kafka_sasl", "true", "stack.kafka_sasl", True),
    ("api_url", "http://api.example:8080", "api.url", "http://api.example:8080"),
    ("api_token", "tok", "api.token", SecretStr("tok")),
]
#: Settings that are only valid together with others (cross-field checks): what each row's variable needs beside it.
_SASL = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u", "kafka_sasl_password": "p"}
COMPANIONS: dict[str, dict[str, str]] = {
    "kafka_sasl_username": {**_SASL, "kafka_sasl_username": "x_1"},
    "kafka_sasl_password": {**_SASL, "kafka_sasl_password": "pw"},
    "kafka_ssl_ca_location": {"kafka_security_protocol": "SSL"},
    "kafka_ssl_certificate_location": {"kafka_security_protocol": "SSL", "kafka_ssl_key_location": "/tmp/k"},
    "kafka_ssl_key_location": {"kafka_security_protocol": "SSL", "kafka_ssl_certificate_location": "/tmp/c"},
}


def _read(settings: Settings, path: str) -> Any:
    value = attrgetter(path)(settings)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_every_old_variable_is_still_a_setting() -> None:
    assert {name for name, *_ in OLD_VARIABLES} == set(FLAT_NAMES)


@pytest.mark.parametrize(("flat", "raw", "path", "expected"), OLD_VARIABLES, ids=[row[0] for row in OLD_VARIABLES])
def test_old_variable_reads_back_from_its_section(
    monkeypatch: pytest.MonkeyPatch, flat: str, raw: str, path: str, expected: Any
) -> None:
    for companion, value in COMPANIONS.get(flat, {}).items():
        monkeypatch.setenv(f"IBSTREAM_{companion.upper()}", value)
    monkeypatch.setenv(f"IBSTREAM_{flat.upper()}", raw)
    settings = load_settings()
    assert _read(settings, path) == _plain(expected)
    assert _read(settings, path) != _read(Settings.model_construct(), path)  # not the default by chance


@pytest.mark.parametrize(("flat", "raw", "path", "expected"), OLD_VARIABLES, ids=[row[0] for row in OLD_VARIABLES])
def test_flat_override_names_reach_the_same_field(flat: str, raw: str, path: str, expected: Any) -> None:
    settings = load_settings(**{**COMPANIONS.get(flat, {}), flat: expected})
    assert _read(settings, path) == _plain(expected)
    assert _read(settings.with_overrides(**{flat: expected}), path) == _plain(expected)


def test_overrides_win_over_the_environment_and_keep_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("IBSTREAM_KAFKA_TOPIC_PREFIX", "env-")
    settings = load_settings(kafka_bootstrap_servers="given:9092")
    assert (settings.kafka.bootstrap_servers, settings.kafka.topic_prefix) == ("given:9092", "env-")
    copied = load_settings(**settings.model_dump(), ib_port=7497)
    assert (copied.kafka.bootstrap_servers, copied.ib.port) == ("given:9092", 7497)


def test_with_overrides_validates_and_keeps_what_was_set() -> None:
    settings = load_settings(kafka_topic_prefix="t-", state_dir=Path("/tmp/s"))
    moved = settings.with_overrides(stack_kafka_port=19192)
    assert (moved.stack.kafka_port, moved.kafka.topic_prefix, moved.state_dir) == (19192, "t-", Path("/tmp/s"))
    assert moved.kafka.model_fields_set == {"topic_prefix"}
    assert "bootstrap_servers" not in moved.kafka.model_fields_set
    with pytest.raises(ConfigError, match="IBSTREAM_STACK_KAFKA_PORT"):
        settings.with_overrides(stack_kafka_port=70000)


def test_model_copy_refuses_flat_names_it_would_silently_drop() -> None:
    settings = load_settings()
    with pytest.raises(TypeError, match="with_overrides"):
        settings.model_copy(update={"stack_kafka_port": 19192})
    assert settings.model_copy(update={"state_dir": Path("/tmp/s")}).state_dir == Path("/tmp/s")


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_KAFKA_BOOTSTRAP_SERVERS", "localhost")
    monkeypatch.setenv("IBSTREAM_SYMBOLS", "AAPL,AAPL")
    monkeypatch.setenv("IBSTREAM_RISK_MAX_POSITION", "-1")
    monkeypatch.setenv("IBSTREAM_WAREHOUSE_RETENTION_DAYS", "not json")
    monkeypatch.setenv("IBSTREAM_IB_PORT", "7496")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    named = [setting for setting, _ in caught.value.problems]
    assert named == [
        "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS",
        "IBSTREAM_IB_PORT",
        "IBSTREAM_SYMBOLS",
        "IBSTREAM_WAREHOUSE_RETENTION_DAYS",
        "IBSTREAM_RISK_MAX_POSITION",
    ]
    assert caught.value.setting == "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS"
    message = str(caught.value)
    assert message.startswith("5 invalid settings:")
    assert all(name in message for name in named)
    assert "IBSTREAM_IB_LIVE_ACCOUNT" in message  # the live-port rule says which variable would allow it


def test_cross_field_errors_name_their_variable_among_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_RISK_MIN_STOP_PCT", "5")
    monkeypatch.setenv("IBSTREAM_RISK_MAX_STOP_PCT", "1")
    monkeypatch.setenv("IBSTREAM_API_PORT", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert [setting for setting, _ in caught.value.problems] == ["IBSTREAM_API_PORT", "IBSTREAM_RISK_MIN_STOP_PCT"]


def test_unrelated_ibstream_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_HEALTH_PORT", "not a port")  # the chart's probe port, read by no setting
    monkeypatch.setenv("IBSTREAM_KAFKA", "{}")  # a section is not a variable
    assert load_settings().kafka.bootstrap_servers == "127.0.0.1:19092"
