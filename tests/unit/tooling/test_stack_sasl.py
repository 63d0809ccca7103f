"""The local broker's listener settings: plaintext by default, SASL/SCRAM with ACLs when asked (no broker started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ibstream.config import load_settings
from tooling.stack import KafkaStack, StackError

SASL = {
    "stack_kafka_sasl": True,
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_username": "operator",
    "kafka_sasl_password": "operator-password",
}


def _properties(stack: KafkaStack) -> dict[str, str]:
    stack._write_config()
    lines = stack.config_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_the_default_broker_is_plaintext_without_an_authorizer(tmp_path: Path) -> None:
    properties = _properties(KafkaStack(load_settings(state_dir=tmp_path)))
    assert properties["listeners"].startswith("PLAINTEXT://")
    assert "authorizer.class.name" not in properties and "sasl.enabled.mechanisms" not in properties


def test_a_sasl_broker_takes_only_scram_and_refuses_what_no_acl_allows(tmp_path: Path) -> None:
    stack = KafkaStack(load_settings(state_dir=tmp_path, **SASL))
    properties = _properties(stack)
    schemes = {listener.split("://")[0] for listener in properties["listeners"].split(",")}
    assert schemes == {"SASL_PLAINTEXT", "CONTROLLER"}  # no open plaintext listener for clients
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert "User:operator" in properties["super.users"].split(";")
    assert stack.config_file.stat().st_mode & 0o077 == 0, "the file holds the super user's password"


def test_clients_of_a_plaintext_stack_drop_the_configured_security(tmp_path: Path) -> None:
    production = load_settings(
        state_dir=tmp_path,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_ca_location="/ca.crt",
    )
    local = KafkaStack(production).client_settings().kafka
    assert (local.security_protocol, local.sasl_username, local.ssl_ca_location) == ("PLAINTEXT", None, None)


def test_a_sasl_stack_without_a_scram_super_user_is_refused_naming_the_settings(tmp_path: Path) -> None:
    stack = KafkaStack(load_settings(state_dir=tmp_path, stack_kafka_sasl=True))
    with pytest.raises(StackError, match="IBSTREAM_KAFKA_SASL_USERNAME"):
        stack._write_config()
