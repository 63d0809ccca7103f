"""``GET /v1/health/pipeline``: the pipeline's state as the warehouse last saw it, for the operator console.

The same figures the deployables export as metrics, assembled from the topics the sink stores: the latest
heartbeat per component (IB connection state), the newest quote and bar per symbol (feed age, stale past
``stale_after_seconds``), gaps still open, the ``consumer_lag`` view, dead letters by topic, firing alerts, the
Agent0 circuit as orchestration's failed runs report it, and the kill switch in force.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.precheck import newest_records, trading_control_commands
from ibstream.config import Settings
from ibstream.contracts import (
    Alert,
    ControlCommand,
    Gap,
    Heartbeat,
    OrchestrationRun,
    alerts,
    bars,
    gaps,
    heartbeats,
    quotes,
    runs,
)
from ibstream.contracts.enums import AlertState, ControlCommandKind, GapState, RunState, TradingState
from ibstream.trading_states import TradingStates
from ibstream.warehouse import Warehouse
from ibstream.warehouse.schema import DEAD_LETTER_TABLE

#: A failed run whose reason contains this was refused by orchestration's open breaker (streams.orchestration).
CIRCUIT_OPEN_MARK = "circuit open"
#: A heartbeat older than this many heartbeat periods means the component is silent.
SILENT_AFTER_PERIODS = 3
OPEN_GAP_STATES = (GapState.OPEN, GapState.BACKFILLING)


class ComponentHealth(BaseModel):
    """The latest heartbeat of one IB-connected component."""

    component: str
    instance_id: str
    connection_state: str
    symbols_active: int
    reconnect_count: int
    time: datetime
    age_seconds: float
    silent: bool


class FeedHealth(BaseModel):
    """Freshness of one symbol's market data (newest event time of quotes and of bars)."""

    symbol: str
    last_quote_time: datetime | None
    last_bar_time: datetime | None
    age_seconds: float | None
    stale: bool


class ConsumerLag(BaseModel):
    """A partition's lag at the sink's latest flush (``consumer_lag`` view)."""

    group_id: str
    topic: str
    partition: int
    lag: int
    updated_time: datetime


class DeadLetterCount(BaseModel):
    """Dead letters of one source topic and error kind."""

    original_topic: str
    component: str
    error_kind: str
    count: int
    last_time: datetime


class CircuitState(BaseModel):
    """Agent0's circuit breaker as orchestration's runs report it: ``open`` when the newest planning outcome was a
    refusal by the open breaker, ``closed`` after any later plan, ``unknown`` before any run."""

    state: Literal["open", "closed", "unknown"]
    since: datetime | None
    reason: str | None


class KillSwitchState(BaseModel):
    """The latest kill-switch command of one target."""

    target: str
    engaged: bool
    actor: str
    reason: str
    time: datetime


class TradingStateView(BaseModel):
    """The trading state in force in one scope (the account or a symbol) and the command that set it."""

    scope: str
    state: TradingState
    source: str = Field(description="the command kind that set it: trading_state, kill_switch_on/off")
    actor: str
    reason: str
    time: datetime
    sequence: int


class PipelineHealth(BaseModel):
    """Everything the console's health page shows."""

    generated_time: datetime
    stale_after_seconds: float
    components: list[ComponentHealth]
    feeds: list[FeedHealth]
    stale_symbols: list[str]
    open_gaps: list[Gap]
    consumer_lag: list[ConsumerLag]
    consumer_lag_total: int
    dead_letters: list[DeadLetterCount]
    dead_letters_total: int
    alerts: list[Alert]
    agent0_circuit: CircuitState
    kill_switch: list[KillSwitchState]
    kill_switch_engaged: bool
    trading_states: list[TradingStateView]
    trading_restricted: bool = Field(description="some scope is reducing or halted")


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def component_health(beats: Iterable[Heartbeat], now: datetime, heartbeat_seconds: float) -> list[ComponentHealth]:
    """One row per component from its latest heartbeat; silent when it is older than a few periods."""
    rows = []
    for beat in sorted(beats, key=lambda b: b.component):
        age = _age(now, beat.time)
        rows.append(
            ComponentHealth(**beat.model_dump(), age_seconds=age, silent=age > SILENT_AFTER_PERIODS * heartbeat_seconds)
        )
    return rows


def feed_health(
    symbols: Sequence[str],
    last_quote: dict[str, datetime],
    last_bar: dict[str, datetime],
    now: datetime,
    stale_after: float,
) -> list[FeedHealth]:
    """One row per configured or seen symbol; age from the newer of quote and bar; no data at all is stale."""
    ordered = list(dict.fromkeys([*symbols, *sorted(set(last_quote) | set(last_bar))]))
    rows = []
    for symbol in ordered:
        times = [t for t in (last_quote.get(symbol), last_bar.get(symbol)) if t is not None]
        age = _age(now, max(times)) if times else None
        rows.append(
            FeedHealth(
                symbol=symbol,
                last_quote_time=last_quote.get(symbol),
                last_bar_time=last_bar.get(symbol),
                age_seconds=age,
                stale=age is None or age > stale_after,
            )
        )
    return rows


def circuit_state(records: Iterable[OrchestrationRun]) -> CircuitState:
    """Agent0's breaker from run records: the newest of (a plan, a refusal by the open breaker) decides."""
    latest: OrchestrationRun | None = None
    for record in records:
        planned = record.state == RunState.PLANNED
        refused = record.state == RunState.FAILED and CIRCUIT_OPEN_MARK in (record.reason or "").lower()
        if (planned or refused) and (latest is None or record.time >= latest.time):
            latest = record
    if latest is None:
        return CircuitState(state="unknown", since=None, reason=None)
    if latest.state == RunState.FAILED:
        return CircuitState(state="open", since=latest.time, reason=latest.reason)
    return CircuitState(state="closed", since=latest.time, reason=None)


def trading_states_of(commands: Iterable[ControlCommand], account: str | None = None) -> TradingStates:
    """The trading states the commands leave in force, folded as risk and execution fold them (by sequence);
    ``account``: the configured account id, which names the account scope too."""
    states = TradingStates(account=account)
    for command in commands:
        states.apply(command)
    return states


def kill_switch_states(commands: Iterable[ControlCommand], account: str | None = None) -> list[KillSwitchState]:
    """The latest on/off command per scope (by sequence, as the gate reads them: a stale one is ignored), in time
    order."""
    kinds = (ControlCommandKind.KILL_SWITCH_ON.value, ControlCommandKind.KILL_SWITCH_OFF.value)
    scopes = trading_states_of(commands, account).scopes.values()
    return [
        KillSwitchState(
            target=state.scope,
            engaged=state.kill_switch,
            actor=state.actor,
            reason=state.reason,
            time=state.since,
        )
        for state in sorted(scopes, key=lambda state: state.since)
        if state.source in kinds
    ]


def trading_state_views(commands: Iterable[ControlCommand], account: str | None = None) -> list[TradingStateView]:
    """Every scope's trading state and who set it, when and why, in time order."""
    return [
        TradingStateView(
            scope=state.scope,
            state=state.state,
            source=state.source,
            actor=state.actor,
            reason=state.reason,
            time=state.since,
            sequence=state.sequence,
        )
        for state in sorted(trading_states_of(commands, account).scopes.values(), key=lambda state: state.since)
    ]


def _newest_by_symbol(warehouse: Warehouse, table: str) -> dict[str, datetime]:
    # max() needs no FINAL: a duplicate row cannot change a maximum.
    rows = warehouse.query(f"SELECT symbol, max(event_time) FROM {warehouse.table(table)} GROUP BY symbol").rows
    return {str(symbol): _utc(time) for symbol, time in rows}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def pipeline_health(warehouse: Warehouse, settings: Settings, now: datetime) -> PipelineHealth:
    """Assemble the health page from the warehouse."""
    schema = warehouse.schema
    beats = newest_records(
        warehouse, heartbeats.TOPIC, "1", {}, "time DESC, _kafka_ts DESC, _offset DESC", per="component"
    )
    feeds = feed_health(
        settings.feed.symbols,
        _newest_by_symbol(warehouse, schema.for_topic(quotes.TOPIC).name),
        _newest_by_symbol(warehouse, schema.for_topic(bars.TOPIC).name),
        now,
        settings.feed.stale_after_seconds,
    )
    gap_states = newest_records(
        warehouse, gaps.TOPIC, "1", {}, "updated_time DESC, _kafka_ts DESC, _offset DESC", per="gap_id"
    )
    open_gaps = sorted((g for g in gap_states if g.state in OPEN_GAP_STATES), key=lambda g: g.start)
    lag_rows = warehouse.query(
        f"SELECT group_id, topic, partition, lag, updated_time FROM {warehouse.table('consumer_lag')} "
        "ORDER BY group_id, topic, partition"
    ).dicts()
    lags = [ConsumerLag.model_validate({**row, "updated_time": _utc(row["updated_time"])}) for row in lag_rows]
    dlq_rows = warehouse.query(
        f"SELECT original_topic, component, error_kind, count() AS count, max(failed_time) AS last_time "
        f"FROM {warehouse.table(DEAD_LETTER_TABLE)} FINAL GROUP BY original_topic, component, error_kind "
        "ORDER BY count DESC, original_topic"
    ).dicts()
    dead = [DeadLetterCount.model_validate({**row, "last_time": _utc(row["last_time"])}) for row in dlq_rows]
    alert_states = newest_records(
        warehouse, alerts.TOPIC, "1", {}, "time DESC, _kafka_ts DESC, _offset DESC", per="alert_id"
    )
    firing = sorted((a for a in alert_states if a.state == AlertState.FIRING), key=lambda a: a.time, reverse=True)
    # Only the records that decide the breaker: plans and failures.
    outcomes = newest_records(
        warehouse,
        runs.TOPIC,
        "state IN ('planned', 'failed')",
        {},
        "time DESC, _kafka_ts DESC, _offset DESC",
        limit=200,
    )
    commands = trading_control_commands(warehouse)
    switches = kill_switch_states(commands, settings.execution.account)
    trading = trading_state_views(commands, settings.execution.account)
    return PipelineHealth(
        generated_time=now,
        stale_after_seconds=settings.feed.stale_after_seconds,
        components=component_health(beats, now, settings.feed.heartbeat_seconds),
        feeds=feeds,
        stale_symbols=[feed.symbol for feed in feeds if feed.stale],
        open_gaps=open_gaps,
        consumer_lag=lags,
        consumer_lag_total=sum(lag.lag for lag in lags),
        dead_letters=dead,
        dead_letters_total=sum(row.count for row in dead),
        alerts=firing,
        agent0_circuit=circuit_state(outcomes),
        kill_switch=switches,
        kill_switch_engaged=any(switch.engaged for switch in switches),
        trading_states=trading,
        trading_restricted=any(view.state is not TradingState.ACTIVE for view in trading),
    )
