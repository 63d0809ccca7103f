"""Kafka identities: each deployable's own principal and the ACLs it needs, derived from what it reads and writes.

Every deployable connects as its own user (``IBSTREAM_KAFKA_SASL_USERNAME``/``PASSWORD`` from its own secret), so
the cluster, not convention, keeps the roads to orders single: only streams may write ``orders.routed.v1``, only
the API ``control.v1``. ``identities`` is the table: the topics each deployable reads and writes (as the code
does today: ``streams.app`` outputs and sources, ``consumers/execution`` intake and outbox, …; the dead-letter
topics of what it consumes among its writes), its consumer groups and transactional ids. ``acl_rules`` turns one
identity into the rules an operator (or a test on the local stack) creates, ``acl_table`` into the chart README's
table (a test keeps the two equal).

Groups and transactional ids are granted by prefix (``<topic prefix><group>``): the deployables add a suffix per
instance, account or short-lived reader. The sink runs inside the API process when the warehouse is embedded
chDB; that API's principal then needs the sink's rules as well.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from ibstream.config import Settings
from ibstream.contracts import (
    TOPICS,
    TopicSpec,
    account_states,
    alerts,
    bars,
    control,
    executions,
    gaps,
    heartbeats,
    order_events,
    order_intents,
    positions,
    quotes,
    risk_decisions,
    routed_orders,
    runs,
    signal_outcomes,
    signal_transitions,
    signals,
)
from ibstream.exceptions import IbstreamError

ResourceKind = Literal["topic", "group", "transactional_id"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe", "create", "describe_configs", "alter_configs"]

#: The deployables that connect to Kafka, as `ibstream run <name>` and the chart name them; ``job`` is the
#: chart's topics Job (`ibstream topics ensure`).
#: (Agent0 touches no topic: it plans, and orchestration writes the intents.)
DEPLOYABLES = ("producer", "streams", "execution", "sink", "api", "job")


@dataclass(frozen=True)
class Identity:
    """What one deployable does on Kafka. Group and transactional-id entries are prefixes after the topic prefix;
    ``owned_prefixes`` are topic-name prefixes it creates and uses itself (Faust's changelogs and internal topics).
    ``manages_catalogue``: creates and reconciles the catalogue's topics (the topics Job)."""

    deployable: str
    #: topic names without the topic prefix (dead-letter topics included where they are read or written)
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    transactional_ids: tuple[str, ...] = ()
    owned_prefixes: tuple[str, ...] = ()
    manages_catalogue: bool = False


@dataclass(frozen=True, order=True)
class AclRule:
    """One ALLOW rule for one principal (from any host)."""

    resource: ResourceKind
    name: str
    pattern: Pattern
    operation: Operation
    principal: str


def identities(settings: Settings) -> dict[str, Identity]:
    """Each deployable's identity under these settings (group and transactional ids come from them)."""
    # routed orders to place, the decisions that approve them (checked before placing), the kill switch and trading
    # states, and its own order events and executions (the book's rebuild after a restart)
    execution_reads = (routed_orders.TOPIC, risk_decisions.TOPIC, control.TOPIC, order_events.TOPIC, executions.TOPIC)
    app_id, execution_group = settings.streams.app_id, settings.execution.group_id
    every_topic = tuple(TOPICS)
    found = [
        Identity(
            "producer",
            # A restarted producer reads the tail of its bars and gaps to find what to backfill.
            reads=_names(bars.TOPIC, gaps.TOPIC),
            writes=_names(quotes.TOPIC, bars.TOPIC, gaps.TOPIC, heartbeats.TOPIC, alerts.TOPIC),
            groups=("ibstream-producer-tail-",),
        ),
        _streams(app_id),
        Identity(
            "execution",
            reads=_names(*execution_reads),
            writes=_names(order_events.TOPIC, executions.TOPIC, positions.TOPIC, account_states.TOPIC, alerts.TOPIC)
            + _dead_letters(routed_orders.TOPIC, control.TOPIC),
            groups=(execution_group,),
            transactional_ids=(execution_group,),
        ),
        Identity(
            "sink",
            reads=_names(*every_topic) + _dead_letters(*every_topic),
            writes=_dead_letters(*every_topic),
            groups=("ibstream.warehouse-sink",),
        ),
        Identity("api", writes=_names(control.TOPIC)),
        Identity("job", manages_catalogue=True),
    ]
    return {identity.deployable: identity for identity in found}


def _streams(app_id: str) -> Identity:
    """The Faust app: bars, signals, outcomes, orchestration and risk agents, the risk view's feed, and its own
    topics."""
    reads = (
        bars.TOPIC,
        signals.TOPIC,
        signal_transitions.TOPIC,
        order_intents.TOPIC,
        control.TOPIC,
        risk_decisions.TOPIC,
        order_events.TOPIC,
        # the risk view's feed (streams.risk.feed): marks, positions, fills, and the entries in flight and working
        routed_orders.TOPIC,
        quotes.TOPIC,
        positions.TOPIC,
        executions.TOPIC,
        heartbeats.TOPIC,
        # the account's NetLiquidation for sizing (orchestration) and the account checks (risk)
        account_states.TOPIC,
    )
    outputs: tuple[TopicSpec[Any], ...] = (
        # the bars agent's aggregates (md.bars.{1m,5m,15m,1h,1d}.v1)
        *bars.AGGREGATE_TOPICS.values(),
        signals.TOPIC,
        signal_transitions.TOPIC,
        # the outcomes agent's scores
        signal_outcomes.TOPIC,
        runs.TOPIC,
        order_intents.TOPIC,
        risk_decisions.TOPIC,
        routed_orders.TOPIC,
        alerts.TOPIC,
    )
    return Identity(
        "streams",
        reads=_names(*reads),
        writes=_names(*outputs) + _dead_letters(*reads),
        groups=(app_id,),
        # Faust's changelogs (``<app id>-<table>-changelog``) and orchestration's internal command topic
        # (streams.orchestration.commands.COMMANDS_TOPIC), which streams creates itself.
        owned_prefixes=(f"{app_id}-", "orchestration-commands"),
    )


def _names(*specs: TopicSpec[Any]) -> tuple[str, ...]:
    return tuple(spec.name for spec in specs)


def _dead_letters(*specs: TopicSpec[Any]) -> tuple[str, ...]:
    """The dead-letter topics of ``specs``: a consumer routes records it cannot handle there."""
    return tuple(spec.dlq_name for spec in specs)


def acl_rules(identity: Identity, principal: str, topic_prefix: str = "") -> list[AclRule]:
    """The ALLOW rules ``principal`` (``User:<name>``) needs to run ``identity``, sorted and without duplicates."""
    rules = set(_rules(identity, principal, topic_prefix))
    return sorted(rules)


def _rules(identity: Identity, principal: str, prefix: str) -> Iterator[AclRule]:
    def rule(kind: ResourceKind, name: str, pattern: Pattern, operation: Operation) -> AclRule:
        return AclRule(kind, name, pattern, operation, principal)

    for topic in identity.reads:
        yield from (rule("topic", prefix + topic, "literal", op) for op in ("read", "describe"))
    for topic in identity.writes:
        yield from (rule("topic", prefix + topic, "literal", op) for op in ("write", "describe"))
    for group in identity.groups:
        yield from (rule("group", prefix + group, "prefixed", op) for op in ("read", "describe"))
    for transactional_id in identity.transactional_ids:
        yield from (rule("transactional_id", prefix + transactional_id, "prefixed", op) for op in ("write", "describe"))
    owned: tuple[Operation, ...] = ("create", "read", "write", "describe", "describe_configs", "alter_configs")
    for name in identity.owned_prefixes:
        yield from (rule("topic", prefix + name, "prefixed", op) for op in owned)
    if identity.manages_catalogue:
        # Kafka refuses an empty prefixed name: without a topic prefix the Job manages every topic ("*").
        name = prefix or "*"
        pattern: Pattern = "prefixed" if prefix else "literal"
        managing: tuple[Operation, ...] = ("create", "describe", "describe_configs", "alter_configs")
        yield from (rule("topic", name, pattern, op) for op in managing)


def acl_table(settings: Settings) -> str:
    """The Markdown table of every deployable's rules (principal ``User:<deployable>``), for the chart README."""
    lines = ["| deployable | resource | name | pattern | operations |", "|---|---|---|---|---|"]
    for deployable, identity in identities(settings).items():
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for found in acl_rules(identity, f"User:{deployable}", settings.kafka.topic_prefix):
            grouped.setdefault((found.resource, found.name, found.pattern), []).append(found.operation)
        for (resource, name, pattern), operations in grouped.items():
            lines.append(f"| {deployable} | {resource} | `{name}` | {pattern} | {', '.join(sorted(operations))} |")
    return "\n".join(lines)


# --- creating users and ACLs (the local stack, tests; an operator may use it against a cluster it administers) ---


class IdentityError(IbstreamError):
    """Creating a SCRAM user or an ACL failed."""


_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATION = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE,
    "create": AclOperation.CREATE,
    "describe_configs": AclOperation.DESCRIBE_CONFIGS,
    "alter_configs": AclOperation.ALTER_CONFIGS,
}


def acl_binding(rule: AclRule) -> AclBinding:
    return AclBinding(
        _RESOURCE[rule.resource],
        rule.name,
        _PATTERN[rule.pattern],
        rule.principal,
        "*",
        _OPERATION[rule.operation],
        AclPermissionType.ALLOW,
    )


def create_scram_users(admin: AdminClient, passwords: Mapping[str, str], timeout: float = 30.0) -> None:
    """Create (or reset) SCRAM-SHA-512 users ``{username: password}``."""
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode())
        for user, password in passwords.items()
    ]
    _wait(admin.alter_user_scram_credentials(upserts, request_timeout=timeout), "creating SCRAM users", timeout)


def create_acls(admin: AdminClient, rules: Sequence[AclRule], timeout: float = 30.0) -> None:
    """Create ALLOW rules (creating an existing rule again is harmless; the admin client refuses duplicates
    within one call, so they are dropped first)."""
    if rules:
        bindings = [acl_binding(rule) for rule in sorted(set(rules))]
        _wait(admin.create_acls(bindings, request_timeout=timeout), "creating ACLs", timeout)


def _wait(futures: Mapping[Any, Any], action: str, timeout: float) -> None:
    for key, future in futures.items():
        try:
            future.result(timeout)
        except Exception as error:  # KafkaException, or a timeout: both mean the identity is not in place
            raise IdentityError(f"{action} failed for {key}: {error}") from None
