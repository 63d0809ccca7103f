"""Kafka identities: the security settings every librdkafka client takes, and each deployable's ACLs."""

from __future__ import annotations

import re

import pytest

from ibstream.config import PROJECT_ROOT, load_settings
from ibstream.contracts import TOPICS
from ibstream.exceptions import ConfigError
from ibstream.kafka.clients import consumer_config, producer_config
from ibstream.kafka.identities import DEPLOYABLES, AclRule, acl_rules, acl_table, identities
from ibstream.kafka.security import effective_security

SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "ibstream-streams",
    "kafka_sasl_password": "streams-password",
    "kafka_ssl_ca_location": "/etc/ibstream/kafka-tls/ca.crt",
}
SECURITY_KEYS = {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location"}


def test_the_default_plaintext_clients_carry_no_security_settings() -> None:
    config = producer_config(load_settings())
    assert SECURITY_KEYS.isdisjoint(config)
    assert effective_security(load_settings().kafka).protocol == "PLAINTEXT"


def test_the_deployables_principal_reaches_producers_and_consumers() -> None:
    settings = load_settings(**SASL)
    for config in (producer_config(settings), consumer_config(settings, "g")):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert config["sasl.username"] == "ibstream-streams"
        assert config["sasl.password"] == "streams-password"
        assert config["ssl.ca.location"] == "/etc/ibstream/kafka-tls/ca.crt"


def test_the_password_is_not_shown_in_the_settings() -> None:
    assert "streams-password" not in repr(load_settings(**SASL).kafka)


def test_sasl_without_a_username_stops_startup_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="IBSTREAM_KAFKA_SASL_USERNAME"):
        load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_password="x")


def test_credentials_on_a_plaintext_connection_stop_startup() -> None:
    # They would silently go unused: the process would connect anonymously.
    with pytest.raises(ConfigError, match="IBSTREAM_KAFKA_SASL_USERNAME"):
        load_settings(kafka_sasl_username="producer", kafka_sasl_password="x")


def test_tls_files_on_a_plaintext_connection_stop_startup() -> None:
    with pytest.raises(ConfigError, match="IBSTREAM_KAFKA_SSL"):
        load_settings(kafka_ssl_ca_location="/ca.crt")


def test_security_in_both_the_typed_settings_and_client_config_stops_startup() -> None:
    with pytest.raises(ConfigError, match="IBSTREAM_KAFKA_CLIENT_CONFIG"):
        load_settings(**SASL, kafka_client_config={"sasl.username": "someone-else"})


def test_security_given_the_older_way_in_client_config_is_what_every_client_uses() -> None:
    settings = load_settings(
        kafka_client_config={
            "security.protocol": "sasl_plaintext",
            "sasl.mechanisms": "SCRAM-SHA-256",
            "sasl.username": "api",
            "sasl.password": "pw",
        }
    )
    security = effective_security(settings.kafka)
    assert (security.protocol, security.mechanism, security.username, security.password) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
        "api",
        "pw",
    )
    assert security.describe() == "SASL_PLAINTEXT SCRAM-SHA-256 as api"


# --- ACLs ---


def _writers(topic: str, prefix: str = "") -> set[str]:
    settings = load_settings(kafka_topic_prefix=prefix)
    return {
        deployable
        for deployable, identity in identities(settings).items()
        for rule in acl_rules(identity, f"User:{deployable}", prefix)
        if rule.resource == "topic" and rule.operation == "write" and rule.name == prefix + topic
    }


def test_only_streams_writes_routed_orders() -> None:
    assert _writers("orders.routed.v1") == {"streams"}
    assert _writers("orders.routed.v1", prefix="t1.") == {"streams"}


def test_only_the_api_writes_control() -> None:
    assert _writers("control.v1") == {"api"}


def test_only_execution_writes_order_events_and_executions() -> None:
    assert _writers("orders.events.v1") == {"execution"}
    assert _writers("executions.v1") == {"execution"}


def test_every_deployable_has_an_identity_and_every_topic_rule_names_a_catalogue_topic() -> None:
    settings = load_settings(kafka_topic_prefix="p.")
    found = identities(settings)
    assert set(found) == set(DEPLOYABLES)
    names = {"p." + spec.name for spec in TOPICS} | {"p." + spec.dlq_name for spec in TOPICS}
    for deployable, identity in found.items():
        for rule in acl_rules(identity, f"User:{deployable}", "p."):
            if rule.resource == "topic" and rule.pattern == "literal":
                assert rule.name in names, rule


def test_groups_and_transactional_ids_are_granted_by_prefix_under_the_topic_prefix() -> None:
    settings = load_settings(kafka_topic_prefix="p.", execution_group_id="exec-a")
    rules = acl_rules(identities(settings)["execution"], "User:execution", "p.")
    assert AclRule("transactional_id", "p.exec-a", "prefixed", "write", "User:execution") in rules
    assert AclRule("group", "p.exec-a", "prefixed", "read", "User:execution") in rules


def test_the_topics_job_manages_every_topic_without_a_prefix_and_only_its_own_with_one() -> None:
    job = identities(load_settings())["job"]
    assert {(r.name, r.pattern) for r in acl_rules(job, "User:job")} == {("*", "literal")}
    assert {(r.name, r.pattern) for r in acl_rules(job, "User:job", "t.")} == {("t.", "prefixed")}


def test_the_chart_readme_lists_the_acls_each_deployable_needs() -> None:
    readme = (PROJECT_ROOT / "charts" / "ibstream" / "README.md").read_text()
    found = re.search(r"<!-- acl-table -->\n(.*?)\n<!-- /acl-table -->", readme, re.S)
    assert found, "the chart README has no ACL table"
    assert found.group(1).strip() == acl_table(load_settings()), "regenerate with ibstream.kafka.identities.acl_table"
