"""The streams deployable: the single ``faust.App`` with the bars, signals, outcomes, orchestration and risk agents.

``build_app(settings)`` declares topics (raw bytes, our Avro codec does the encoding), tables (in memory,
backed by changelog topics, so a restarted or rebalanced worker recovers them) and agents. Several workers with
the same ``streams_app_id`` share partitions through the Faust consumer group.

Orchestration is two agents: a stateless router over signals, control, risk decisions and order events that
re-keys each run's inputs by the run's order_id onto the internal ``<prefix>orchestration-commands`` topic, and
the orchestration agent over that topic, which owns the run tables (see ``_add_orchestration``).

Run: ``ibstream run streams [--agents bars,risk,signals,orchestration] [--log-level INFO]``.
"""

from __future__ import annotations

import argparse
import logging
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust

from ibstream import risk
from ibstream.alerting import AlertBook
from ibstream.config import LOG_LEVELS, Settings, load_settings
from ibstream.contracts import (
    TopicSpec,
    alerts,
    bars,
    control,
    order_events,
    order_intents,
    risk_decisions,
    routed_orders,
    runs,
    signal_outcomes,
    signal_transitions,
    signals,
)
from ibstream.exceptions import ConfigError, IbstreamError
from ibstream.health import HealthServer
from ibstream.kafka.security import KafkaSecurity, effective_security
from ibstream.kafka.topics import TopicLayout
from ibstream.market_clock import FeedClock
from ibstream.strategies import bar_topic_name, discover
from ibstream.strategies import scoring as outcomes_scoring
from ibstream.strategies.instances import load_instances
from ibstream.strategies.runtime import StrategyRuntime
from ibstream.trading_states import TradingStates
from streams import orchestration, stalls, topics
from streams.bars import agents as bars_agents
from streams.bars import aggregation as bars_aggregation
from streams.context import AgentContext, DeadLetters, Emitter, FaustEmitter, RouterDeadLetters, codec_for
from streams.delivery import StreamsFaustApp
from streams.membership import EXIT_FENCED, install_twin_guard
from streams.orchestration import agents as orchestration_agents
from streams.orchestration.account import AccountFeed, NewestAccount
from streams.orchestration.agent0_client import Agent0Client
from streams.orchestration.orchestrator import FlattenConfig, OrchestrationTables, Orchestrator
from streams.outcomes import agents as outcomes_agents
from streams.risk import agents as risk_agents
from streams.risk.feed import ViewFeed
from streams.signals import agents as signals_agents
from streams.signals.control_feed import StrategyControlFeed
from streams.stalls import StallWatch

log = logging.getLogger(__name__)

AGENTS = ("bars", "signals", "outcomes", "orchestration", "risk")

#: Topics each agent group writes to.
_OUTPUTS: dict[str, tuple[TopicSpec[Any], ...]] = {
    # alerts: risk raises kill_switch, orchestration agent0_circuit_open (streams.observability).
    "risk": (risk_decisions.TOPIC, routed_orders.TOPIC, alerts.TOPIC),
    "bars": tuple(bars.AGGREGATE_TOPICS.values()),
    # alerts: strategy_failed, an instance disabled because its strategy raised (ibstream.strategies.runtime).
    "signals": (signals.TOPIC, signal_transitions.TOPIC, alerts.TOPIC),
    "outcomes": (signal_outcomes.TOPIC,),
    "orchestration": (runs.TOPIC, order_intents.TOPIC, signal_transitions.TOPIC, alerts.TOPIC),
}

#: Inputs of orchestration's router, re-keyed onto the internal command topic.
ORCHESTRATION_SOURCES: tuple[TopicSpec[Any], ...] = (
    signals.TOPIC,
    control.TOPIC,
    risk_decisions.TOPIC,
    order_events.TOPIC,
)
#: How often each worker sweeps its orchestration tables for runs to expire and entries to forget.
SWEEP_SECONDS = 1.0
#: Changelogs roll a segment each minute: Kafka compacts only closed segments (7 days by default), and a restarted
#: worker replays every table write since the last closed one (the chaos run's recoveries grew from 17 s to 50 s).
CHANGELOG_CONFIGS: dict[str, str] = {"segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1"}


@dataclass
class StreamsApp:
    """The Faust app and what runs beside it (the risk view and its feed)."""

    app: faust.App
    settings: Settings
    context: AgentContext
    agents: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    view: risk.RiskView | None = None
    feed: ViewFeed | None = None
    #: account.v1 → the NetLiquidation orchestration sizes plans by (``streams.orchestration.account``).
    account_feed: AccountFeed | None = None
    orchestrator: Orchestrator | None = None
    #: The strategy instances the signals agent runs, and the feed of their switches from control.v1.
    strategies: StrategyRuntime | None = None
    strategy_feed: StrategyControlFeed | None = None
    #: Market time for quote ages and expiries: the wall, or the producer's clock from its heartbeats.
    clock: FeedClock = field(default_factory=FeedClock)
    #: Input partitions that stopped moving (``streams.stalls``); None until ``build_app`` installed it.
    stall_watch: StallWatch | None = None

    def internal_topics(self) -> list[TopicLayout]:
        """The topics Faust would create itself (the tables' changelogs, internal agent topics such as orchestration's
        commands), as Faust declares them."""
        declared = [table.changelog_topic for table in self.tables.values()]
        declared += [agent.channel for agent in self.agents.values() if getattr(agent.channel, "internal", False)]
        return [topics.layout_of(topic) for topic in declared]

    def prepare_internal_topics(self, timeout: float = 30.0) -> None:
        """Create (or reconcile) the internal topics and wait until the broker lists them, before Faust starts
        (``streams.topics``)."""
        topics.prepare(self.settings, self.internal_topics(), timeout)

    def start_feeds(self) -> None:
        if self.strategy_feed is not None:
            self.strategy_feed.start()
        if self.feed is not None:
            self.feed.start()
        if self.account_feed is not None:
            self.account_feed.start()

    def stop_feeds(self) -> None:
        if self.strategy_feed is not None:
            self.strategy_feed.stop()
        if self.feed is not None:
            self.feed.stop()
        if self.account_feed is not None:
            self.account_feed.stop()


def _raw_topic(app: faust.App, name: str, partitions: int | None = None, **kwargs: Any) -> Any:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        **kwargs,
    )


def build_app(
    settings: Settings,
    *,
    enabled: tuple[str, ...] = AGENTS,
    data_dir: Path | None = None,
    emitter: Emitter | None = None,
    dead_letters: DeadLetters | None = None,
    with_feed: bool = True,
    planner: orchestration.Planner | None = None,
    commands: orchestration_agents.CommandBus | None = None,
) -> StreamsApp:
    """Build the app with the ``enabled`` agents. Tests pass an ``emitter``/``dead_letters`` (and for
    orchestration a ``planner`` and a ``commands`` bus) to run agents under ``test_context()`` without a broker
    or Agent0."""
    unknown = set(enabled) - set(AGENTS)
    if unknown:
        raise ConfigError("--agents", f"unknown agents {sorted(unknown)}; choose from {', '.join(AGENTS)}")
    prefix = settings.kafka.topic_prefix
    app = faust_app(settings, data_dir if data_dir is not None else settings.streams_data_path)
    codec = codec_for(settings)
    outputs = {spec.name: spec for name in enabled for spec in _OUTPUTS.get(name, ())}
    faust_topics = {name: _raw_topic(app, prefix + name, spec.partitions) for name, spec in outputs.items()}
    if emitter is None:
        emitter = FaustEmitter(codec, faust_topics, prefix)
    if dead_letters is None:
        dead_letters = RouterDeadLetters(settings, codec, "streams")
    context = AgentContext(codec, emitter, dead_letters, prefix)
    built = StreamsApp(app=app, settings=settings, context=context)
    built.stall_watch = stalls.install(app, settings.streams.stall_seconds, prefix)
    if "bars" in enabled:
        _add_bars(built, settings)
    if "signals" in enabled:
        _add_signals(built, settings, with_feed)
    if "outcomes" in enabled:
        _add_outcomes(built, settings)
    built.clock = FeedClock(settings.feed.market_clock)
    if ("risk" in enabled or "orchestration" in enabled) and with_feed:
        # One feed per worker: the risk view's topics, and the producer's heartbeats for the market clock.
        built.view = risk.RiskView(trading=TradingStates(account=settings.execution.account))
        built.feed = ViewFeed(settings, codec, built.view, clock=built.clock)
    if "risk" in enabled:
        _add_risk(built, settings)
    if "orchestration" in enabled:
        if planner is None:
            account = NewestAccount(settings.execution.account)
            if with_feed:
                built.account_feed = AccountFeed(settings, codec, account)
            planner = Agent0Client.from_settings(settings, equity=account.net_liquidation)
        _add_orchestration(built, settings, planner, commands)
    return built


def broker_credentials(security: KafkaSecurity) -> Any:
    """Faust's credentials for this process's Kafka principal: aiokafka does not read librdkafka's settings, so
    without these Faust would connect anonymously while every other client of the process authenticates."""
    context: ssl.SSLContext | None = None
    if security.uses_tls:
        context = ssl.create_default_context(cafile=security.ca_location)
        if security.certificate_location and security.key_location:
            context.load_cert_chain(security.certificate_location, security.key_location)
    if security.uses_sasl:
        if security.mechanism not in _FAUST_SASL_MECHANISMS:
            raise ConfigError(
                "IBSTREAM_KAFKA_SASL_MECHANISM",
                f"streams supports {', '.join(_FAUST_SASL_MECHANISMS)}, not {security.mechanism!r}",
            )
        return faust.SASLCredentials(
            username=security.username, password=security.password, mechanism=security.mechanism, ssl_context=context
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


#: SASL mechanisms whose credentials are a username and password (GSSAPI and OAUTHBEARER need more than that).
_FAUST_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def faust_app(settings: Settings, data: Path) -> faust.App:
    """The Faust app with our settings (delivery, commits, rebalancing, static membership); the benchmark's bare
    Faust agent (``bench.faust_ceiling``) runs on the very same settings."""
    data.mkdir(parents=True, exist_ok=True)
    # StreamsFaustApp: a commit waits until the table changelog writes before it are acknowledged (streams.delivery).
    return StreamsFaustApp(
        settings.kafka.topic_prefix + settings.streams.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(effective_security(settings.kafka)),
        store="memory://",
        datadir=str(data),
        # At-least-once: faust-streaming's exactly_once has open duplicate/crash bugs (see KAFKA-NOTES).
        processing_guarantee="at_least_once",
        topic_replication_factor=settings.kafka.topic_replication,
        topic_disable_leader=True,
        web_enabled=False,
        # Tables recover from changelogs on start; a standby replica makes a rebalance hand-over fast.
        table_standby_replicas=1,
        producer_acks=-1,
        # How far the fetch loop runs ahead of the agents: bounds how long a signal or an intent waits behind a
        # backlog of bars (see StreamsSettings).
        stream_buffer_maxsize=settings.streams.stream_buffer_maxsize,
        consumer_max_fetch_size=settings.streams.fetch_partition_bytes,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move after the session timeout: 15 s by default instead of Faust's 60 s keeps a
        # crash from stalling signals and risk for a minute. With a stable instance id (static membership) a
        # restarted worker takes its partitions straight back without waiting for the session or a rebalance.
        broker_session_timeout=settings.streams.session_timeout_seconds,
        # Kafka's rule of thumb: at most a third of the session (5 heartbeats a session: 3 s for 15 s).
        broker_heartbeat_interval=settings.streams.session_timeout_seconds / 5,
        consumer_group_instance_id=settings.streams.instance_id,
    )


def _add_bars(built: StreamsApp, settings: Settings) -> None:
    """The bars agent over the 5-second bars and its ``bar-aggregates`` table (symbol → buckets being built)."""
    app, prefix, context = built.app, settings.kafka.topic_prefix, built.context
    state = app.Table(
        "bar-aggregates", key_type=str, partitions=bars.TOPIC.partitions, extra_topic_configs=CHANGELOG_CONFIGS
    )
    built.tables["bar-aggregates"] = state
    config = bars_aggregation.AggregationConfig(
        trading_hours=settings.feed.trading_hours,
        late_window=timedelta(seconds=settings.streams.bars_late_window_seconds),
    )
    bar_topic = _raw_topic(app, prefix + bars.TOPIC.name, bars.TOPIC.partitions)
    built.agents["bars"] = app.agent(bar_topic, name="bars")(bars_agents.bars_agent(context, state, config))


def _add_outcomes(built: StreamsApp, settings: Settings) -> None:
    """The outcomes agent over signals and 5-second bars, and its ``signal-scoring`` table (symbol → open signals,
    recent bars, scored ids). Both topics are keyed by symbol with the same partition count, so the table partition
    of a symbol's signal is that of its bars."""
    app, prefix, context = built.app, settings.kafka.topic_prefix, built.context
    state = app.Table(
        "signal-scoring", key_type=str, partitions=bars.TOPIC.partitions, extra_topic_configs=CHANGELOG_CONFIGS
    )
    built.tables["signal-scoring"] = state
    sources = {prefix + spec.name: spec for spec in (signals.TOPIC, bars.TOPIC)}
    source_topic = app.topic(*sources, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    sizing = outcomes_scoring.Sizing.from_settings(settings)
    built.agents["outcomes"] = app.agent(source_topic, name="outcomes")(
        outcomes_agents.outcomes_agent(context, state, sizing, sources)
    )


def strategy_runtime(settings: Settings, book: AlertBook | None = None) -> StrategyRuntime:
    """The configured strategy instances (``IBSTREAM_STRATEGIES_FILE``, validated: a bad file stops startup)."""
    instances = load_instances(settings.streams.strategies_file, discover())
    log.info(
        "strategy instances",
        extra={"instances": [f"{i.name}={i.strategy_name}@{i.version}" for i in instances]},
    )
    return StrategyRuntime(instances, book)


def _add_signals(built: StreamsApp, settings: Settings, with_feed: bool = True) -> None:
    """The signals agent over the bar topics the instances declare, the transitions agent, and the
    ``signal-state`` table they share; the strategy runtime and its switches feed."""
    app, prefix, context = built.app, settings.kafka.topic_prefix, built.context
    runtime = strategy_runtime(settings, context.alerts.book)
    built.strategies = runtime
    if with_feed:
        built.strategy_feed = StrategyControlFeed(settings, context.codec, runtime)
    else:
        runtime.ready.set()
    state = app.Table(
        "signal-state", key_type=str, partitions=bars.TOPIC.partitions, extra_topic_configs=CHANGELOG_CONFIGS
    )
    built.tables["signal-state"] = state
    # Every timeframe's bar topic is keyed by symbol with the 5-second topic's partition count, so one worker holds
    # a symbol's bars of all timeframes and its table partition. Instances switched off at startup are read too:
    # an operator may switch them on.
    names = [prefix + bar_topic_name(timeframe) for timeframe in runtime.timeframes()]
    bar_topic = app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    built.agents["signals"] = app.agent(bar_topic, name="signals")(
        signals_agents.signals_agent(context, state, settings.orchestration.signal_expiry_seconds, runtime)
    )
    # Same partitioning as bars (both keyed by symbol, same count), so the table partition matches.
    transition_topic = _raw_topic(app, prefix + signal_transitions.TOPIC.name, signal_transitions.TOPIC.partitions)
    built.agents["transitions"] = app.agent(transition_topic, name="transitions")(
        signals_agents.transitions_agent(context, state)
    )


def _add_risk(built: StreamsApp, settings: Settings) -> None:
    """The risk agent over intents, its ``risk-decided`` table, and the kill-switch alert timer."""
    app, prefix, context = built.app, settings.kafka.topic_prefix, built.context
    # The configured account id names the account scope too, as execution reads it (its account once connected).
    view = (
        built.view
        if built.view is not None
        else risk.RiskView(trading=TradingStates(account=settings.execution.account))
    )
    built.view = view
    decided = app.Table(
        "risk-decided",
        key_type=str,
        value_type=str,
        partitions=order_intents.TOPIC.partitions,
        extra_topic_configs=CHANGELOG_CONFIGS,
    )
    built.tables["risk-decided"] = decided
    source = _raw_topic(app, prefix + order_intents.TOPIC.name, order_intents.TOPIC.partitions)
    limits = risk.RiskLimits.from_settings(settings)
    body = risk_agents.risk_agent(context, view, limits, decided, order_intents.TOPIC, clock=built.clock.now)
    built.agents["risk"] = app.agent(source, name="risk")(body)
    # modify_order commands: judged like intents (control.v1 has one partition: one worker judges them, in order).
    commands = _raw_topic(app, prefix + control.TOPIC.name, control.TOPIC.partitions)
    modifications = risk_agents.modification_agent(context, view, limits, control.TOPIC, clock=built.clock.now)
    built.agents["risk-modifications"] = app.agent(commands, name="risk-modifications")(modifications)
    app.timer(SWEEP_SECONDS, name="risk-alerts")(risk_agents.kill_switch_alerts(context, view))


def _orchestration_tables(built: StreamsApp, partitions: int) -> OrchestrationTables:
    """The orchestration agent's three tables (runs, signals, orders), co-partitioned with its command topic."""
    app = built.app
    tables = OrchestrationTables(
        runs=app.Table(
            "orchestration-runs", key_type=str, partitions=partitions, extra_topic_configs=CHANGELOG_CONFIGS
        ),
        signals=app.Table(
            "orchestration-signals", key_type=str, partitions=partitions, extra_topic_configs=CHANGELOG_CONFIGS
        ),
        orders=app.Table(
            "orchestration-orders",
            key_type=str,
            value_type=str,
            partitions=partitions,
            extra_topic_configs=CHANGELOG_CONFIGS,
        ),
    )
    built.tables.update(
        {
            "orchestration-runs": tables.runs,
            "orchestration-signals": tables.signals,
            "orchestration-orders": tables.orders,
        }
    )
    return tables


def _add_orchestration(
    built: StreamsApp,
    settings: Settings,
    planner: orchestration.Planner,
    commands: orchestration_agents.CommandBus | None,
) -> None:
    """The router, the orchestration agent, its tables and its sweep.

    Partitioning: signals arrive keyed by symbol, control by "family:target", decisions and order events by
    order_id. The router re-keys every input of a run by the run's order_id (``orchestration.command_key``) onto
    ``<prefix>orchestration-commands``; the orchestration agent consumes that topic, and its three tables use the
    same partition count, so Faust's assignor gives one worker a run's commands together with the table partition
    holding its state (table writes go to the changelog partition of the event being processed).
    """
    app, prefix = built.app, settings.kafka.topic_prefix
    partitions = orchestration.COMMANDS_PARTITIONS
    command_topic = _raw_topic(
        app, prefix + orchestration.COMMANDS_TOPIC, partitions, internal=True, retention=timedelta(days=7)
    )
    tables = _orchestration_tables(built, partitions)
    bus = commands if commands is not None else orchestration_agents.FaustCommandBus(command_topic)
    sources = {prefix + spec.name: spec for spec in ORCHESTRATION_SOURCES}
    source_topic = app.topic(*sources, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    built.agents["orchestration-router"] = app.agent(source_topic, name="orchestration-router")(
        orchestration_agents.orchestration_router(built.context, bus, sources)
    )
    view = built.view
    flattening = FlattenConfig(
        positions=None if view is None else view.held_positions,
        max_age=timedelta(seconds=settings.orchestration.flatten_max_age_seconds),
        account=settings.execution.account,
    )
    orchestrator = Orchestrator(
        built.context,
        tables,
        planner,
        orchestration.OrchestrationConfig.from_settings(settings),
        clock=built.clock.now,
        flattening=flattening,
    )
    built.orchestrator = orchestrator
    built.agents["orchestration"] = app.agent(command_topic, name="orchestration")(
        orchestration_agents.orchestration_agent(orchestrator)
    )
    app.timer(SWEEP_SECONDS, name="orchestration-sweep")(
        orchestration_agents.orchestration_sweeper(orchestrator, bus, clock=built.clock.now)
    )


class _Worker(faust.Worker):
    """A Faust worker that logs JSON lines through ibstream.telemetry instead of Faust's own format."""

    def _setup_logging(self) -> None:
        from ibstream.telemetry import configure_logging

        configure_logging("streams", str(self.loglevel or "info"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibstream run streams",
        description="Aggregates 5-second bars into longer timeframes, turns market data into trading signals and "
        "scores every signal, runs each signal through planning and approval, and checks every order against the "
        "pre-trade risk limits. Several workers share the work.",
    )
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated subset of " + ", ".join(AGENTS))
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    # The old spelling, still accepted: scripts and benchmarks pass it.
    parser.add_argument("--loglevel", dest="log_level", type=str.upper, choices=LOG_LEVELS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="local state directory (default: IBSTREAM_STREAMS_DATA_DIR)"
    )
    return parser


def main(argv: list[str]) -> int:
    """Load settings, build the app, run a Faust worker until SIGTERM/SIGINT, clean up."""
    args = _parser().parse_args(argv)
    from ibstream.telemetry import configure

    settings = load_settings()
    level = args.log_level or settings.log_level
    configure("streams", level)
    try:
        enabled = tuple(name.strip() for name in args.agents.split(",") if name.strip())
        built = build_app(settings, enabled=enabled, data_dir=args.data_dir)
        built.prepare_internal_topics()
    except IbstreamError as error:
        log.error("streams cannot start", extra={"error": str(error)})
        return 2
    built.start_feeds()
    app = built.app

    def readiness() -> tuple[bool, dict[str, Any]]:
        started, rebalancing, crashed = bool(app.started), bool(app.rebalancing), bool(app.crashed)
        stalled = built.stall_watch.stalled if built.stall_watch is not None else []
        details = {
            "started": started,
            "rebalancing": rebalancing,
            "crashed": crashed,
            "stalled": stalled,
            "agents": list(enabled),
        }
        return started and not rebalancing and not crashed and not stalled, details

    health = HealthServer("0.0.0.0", settings.streams.health_port, readiness).start()
    # Static membership: a second live worker with our instance id would fence us back and forth (streams.membership).
    twin = install_twin_guard(settings.streams.instance_id, settings.streams.session_timeout_seconds)
    worker = _Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        code = int(stop.code or 0) if isinstance(stop.code, int) else 0
    finally:
        health.stop()
        built.stop_feeds()
    return EXIT_FENCED if twin is not None and twin.tripped else code


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
