"""Strategy instances as the API shows them: configuration (the strategies file), switches (the warehouse's copy of
control.v1, folded by ``ibstream.strategies.switches`` as the signals worker folds it), signal counts (signals.v1),
failures (firing ``strategy_failed`` alerts) and scores (the headline figures of its scored signals on
signals.outcomes.v1, as ``GET /v1/strategies/{instance}/performance`` defines them; None before its first outcome).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from api.models import SignalCounts, StrategyList, StrategyView
from api.precheck import newest_records
from api.queries.common import fetch_records, topic_table
from api.queries.strategy_performance import strategy_scores
from ibstream.contracts import Alert, ControlCommand, alerts, control, signals
from ibstream.contracts.enums import AlertState
from ibstream.strategies.instances import StrategyInstance
from ibstream.strategies.switches import TARGET_PREFIX, StrategySwitches
from ibstream.warehouse import Warehouse

#: The alert kind the signals worker raises for an instance it disabled (ibstream.strategies.runtime).
STRATEGY_FAILED = "strategy_failed"


def strategy_views(
    instances: Sequence[StrategyInstance],
    commands: Iterable[ControlCommand],
    counts: Mapping[str, SignalCounts],
    failures: Mapping[str, str],
    scores: Mapping[str, dict[str, float]] | None = None,
) -> list[StrategyView]:
    """Pure: every instance with its switch, counts, failure and scores."""
    switches = StrategySwitches()
    for command in commands:
        switches.apply(command)
    views = []
    for instance in instances:
        switch = switches.switches.get(instance.name)
        views.append(
            StrategyView(
                name=instance.name,
                strategy=instance.strategy_name,
                version=instance.version,
                description=type(instance.strategy).description,
                params=instance.params.model_dump(mode="json"),
                timeframes=list(instance.strategy.timeframes),
                warmup=instance.strategy.warmup,
                symbols=sorted(instance.symbols),
                configured_enabled=instance.enabled,
                enabled=switches.enabled(instance.name, instance.enabled),
                failure=failures.get(instance.name),
                switched_by=None if switch is None else switch.actor,
                switch_reason=None if switch is None else switch.reason,
                switched_time=None if switch is None else switch.since,
                signals=counts.get(instance.name, SignalCounts()),
                scores=None if scores is None else scores.get(instance.name),
            )
        )
    return views


def switch_commands(warehouse: Warehouse) -> list[ControlCommand]:
    """Every strategy enable/disable recorded (the audit trail), oldest first."""
    return fetch_records(
        warehouse,
        control.TOPIC,
        "toString(command) = 'trading_state' AND startsWith(target, {prefix:String})",
        {"prefix": TARGET_PREFIX},
        "issued_time, _kafka_ts, _offset",
        "command_id",
    )


def signal_counts(warehouse: Warehouse) -> dict[str, SignalCounts]:
    """Distinct signals per strategy (instance) name, by side (a redelivered signal is counted once)."""
    rows = warehouse.query(
        "SELECT strategy, uniqExact(signal_id) AS total, uniqExactIf(signal_id, toString(side) = 'BUY') AS buy, "
        "uniqExactIf(signal_id, toString(side) = 'SELL') AS sell, max(created_time) AS last_signal_time "
        f"FROM {topic_table(warehouse, signals.TOPIC)} GROUP BY strategy"
    ).dicts()
    counts = {}
    for row in rows:
        last = row["last_signal_time"]
        if isinstance(last, datetime) and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        counts[str(row["strategy"])] = SignalCounts(
            total=int(row["total"]), buy=int(row["buy"]), sell=int(row["sell"]), last_signal_time=last
        )
    return counts


def failures(warehouse: Warehouse) -> dict[str, str]:
    """Instance → message of its firing ``strategy_failed`` alert."""
    newest: list[Alert] = newest_records(
        warehouse,
        alerts.TOPIC,
        "kind = {kind:String}",
        {"kind": STRATEGY_FAILED},
        "time DESC, _kafka_ts DESC, _offset DESC",
        per="alert_id",
    )
    prefix = f"{STRATEGY_FAILED}:"  # the alert id: strategy_failed:<instance> (ibstream.alerting)
    return {
        alert.alert_id.removeprefix(prefix): alert.message
        for alert in newest
        if alert.state is AlertState.FIRING and alert.alert_id.startswith(prefix)
    }


def list_strategies(warehouse: Warehouse, instances: Sequence[StrategyInstance]) -> StrategyList:
    """``GET /v1/strategies``."""
    views = strategy_views(
        instances, switch_commands(warehouse), signal_counts(warehouse), failures(warehouse), strategy_scores(warehouse)
    )
    return StrategyList(items=views)
