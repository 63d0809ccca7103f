"""The chaos campaign's pure parts: the seeded schedule, ibsim's quote-rate flag, and the checker's verdicts on
hand-made Kafka/ibsim data (so we know each invariant can fail, and on what)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import pytest

from ibsim.cli import build_parser, config_from_args
from ibstream.config import load_settings
from ibstream.contracts import (
    TOPICS,
    Alert,
    Bar,
    Execution,
    Gap,
    OrderEvent,
    OrderIntent,
    Position,
    RiskDecision,
    RoutedOrder,
    alerts,
    bars,
    executions,
    gaps,
    order_events,
    order_intents,
    positions,
    risk_decisions,
    routed_orders,
)
from ibstream.contracts.enums import (
    AlertState,
    ExecutionSource,
    GapState,
    MarketDataSource,
    OrderLeg,
    OrderStatus,
    OrderType,
    Severity,
    Side,
)
from ibstream.contracts.serde import SchemaStore, SingleObjectCodec
from tooling.chaos.checker import Checker, RawRecord
from tooling.chaos.schedule import CLUSTER_FAULT_KINDS, FAULT_KINDS, LEADER_KILL_TOPICS, build_schedule

T0 = dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC)
CODEC = SingleObjectCodec(SchemaStore())


def test_schedule_is_deterministic_and_covers_every_kind() -> None:
    first = build_schedule(42, 600.0)
    assert first == build_schedule(42, 600.0)
    assert first != build_schedule(43, 600.0)
    assert {fault.kind for fault in first} == set(FAULT_KINDS)
    times = [fault.at for fault in first]
    assert times == sorted(times) and times[0] >= 20.0 and times[-1] <= 600.0 - 25.0
    assert all(b - a >= 12.0 * 0.75 for a, b in itertools.pairwise(times))


def test_a_cluster_schedule_adds_leader_kills_and_rolling_restarts_which_need_a_cluster() -> None:
    cluster = build_schedule(42, 900.0, brokers=3)
    assert {fault.kind for fault in cluster} == set(FAULT_KINDS) | set(CLUSTER_FAULT_KINDS)
    # A single broker's default catalogue has none of them, and asking for one names what is missing.
    assert not {fault.kind for fault in build_schedule(42, 900.0)} & set(CLUSTER_FAULT_KINDS)
    with pytest.raises(ValueError, match="need a cluster: --brokers 3"):
        build_schedule(1, 120.0, ["leader_kill_risk"])
    # Each stage's leader kill aims at that stage's topic; the node stays down until another leads it, and then a while.
    assert set(LEADER_KILL_TOPICS.values()) == {"md.bars.5s.v1", "orders.intents.v1", "orders.routed.v1"}
    kills = [fault for fault in cluster if fault.kind in LEADER_KILL_TOPICS]
    assert kills and all(fault.params["hold_seconds"] >= 2.0 for fault in kills)


def test_a_limited_schedule_keeps_its_first_faults_at_their_times() -> None:
    whole = build_schedule(14, 90.0, ["leader_kill_execution"], brokers=3)
    assert len(whole) > 1  # a 90 s window has room for several: each costs a node restart under load
    assert build_schedule(14, 90.0, ["leader_kill_execution"], brokers=3, limit=1) == whole[:1]
    assert build_schedule(14, 90.0, ["leader_kill_execution"], brokers=3, limit=0) == []


def test_schedule_rejects_unknown_kinds_and_fits_the_window() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        build_schedule(1, 120.0, ["kill_everything"])
    short = build_schedule(
        1,
        105.0,
        [
            "poison",
            "kill_execution",
            "broker_pause",
            "ib_drop",
            "kill_producer",
            "ib_gateway_restart",
            "broker_restart",
        ],
    )
    assert len(short) == 6  # (105 - 12.6 - 15.75) // 12 slots: fewer faults than kinds in a short campaign


def test_ibsim_tick_interval_flag_sets_the_quote_rate() -> None:
    cfg = config_from_args(build_parser().parse_args(["--tick-interval", "0.005"]))
    assert cfg.tick_interval == 0.005
    assert config_from_args(build_parser().parse_args([])).tick_interval == 0.1
    with pytest.raises(ValueError):
        config_from_args(build_parser().parse_args(["--tick-interval", "0"]))


# --- the checker on hand-made data ---------------------------------------------------------------------------


def _raw(spec: Any, records: list[Any]) -> list[RawRecord]:
    return [RawRecord(0, offset, CODEC.encode(spec.name, record)) for offset, record in enumerate(records)]


def _world(ibsim_orders: list[dict[str, Any]], ibsim_positions: list[dict[str, Any]]) -> tuple[Checker, str]:
    order_id = str(uuid.uuid4())
    checker = Checker(load_settings(kafka_topic_prefix="x."), "http://unused", ("AAPL",), set(), T0.timestamp() + 10)
    checker.raw = {name: [] for spec in TOPICS for name in (spec.name, spec.dlq_name)}
    bar = Bar(
        symbol="AAPL",
        start=T0,
        open=1,
        high=2,
        low=0.5,
        close=1.5,
        volume=100,
        wap=1.2,
        count=3,
        event_time=T0,
        ingest_time=T0,
        source=MarketDataSource.LIVE,
    )
    checker.raw[bars.TOPIC.name] = _raw(bars.TOPIC, [bar])
    common: dict[str, Any] = {
        "order_id": order_id,
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": 10.0,
        "order_type": OrderType.MKT,
    }
    checker.raw[order_intents.TOPIC.name] = _raw(
        order_intents.TOPIC, [OrderIntent(**common, requested_by="test", created_time=T0)]
    )
    checker.raw[risk_decisions.TOPIC.name] = _raw(
        risk_decisions.TOPIC,
        [
            RiskDecision(
                decision_id="d1",
                order_id=order_id,
                symbol="AAPL",
                approved=True,
                checks=[],
                intent_time=T0,
                decided_time=T0,
            )
        ],
    )
    checker.raw[routed_orders.TOPIC.name] = _raw(
        routed_orders.TOPIC, [RoutedOrder(**common, decision_id="d1", routed_time=T0)]
    )
    checker.raw[order_events.TOPIC.name] = _raw(
        order_events.TOPIC,
        [
            OrderEvent(
                event_id="e1",
                order_id=order_id,
                leg=OrderLeg.PARENT,
                symbol="AAPL",
                ib_order_id=7,
                status=OrderStatus.FILLED,
                filled_quantity=10,
                remaining_quantity=0,
                source=ExecutionSource.LIVE,
                event_time=T0,
            )
        ],
    )
    checker.raw[executions.TOPIC.name] = _raw(
        executions.TOPIC,
        [
            Execution(
                exec_id="x1",
                order_id=order_id,
                symbol="AAPL",
                account="DU1",
                side=Side.BUY,
                quantity=10,
                price=1.0,
                cumulative_quantity=10,
                avg_price=1.0,
                source=ExecutionSource.LIVE,
                exec_time=T0,
                ingest_time=T0,
            )
        ],
    )
    checker.raw[positions.TOPIC.name] = _raw(
        positions.TOPIC,
        [
            Position(
                account="DU1", symbol="AAPL", con_id=1, quantity=10, avg_cost=1.0, source=ExecutionSource.LIVE, time=T0
            )
        ],
    )
    checker.truth_bars = {
        "AAPL": [{"time": T0.timestamp(), "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 100}]
    }
    checker.truth_orders = [{**o, "order_ref": o.get("order_ref", order_id)} for o in ibsim_orders]
    checker.truth_positions = ibsim_positions
    return checker, order_id


def _ib_order(ib_id: int, status: str = "Filled") -> dict[str, Any]:
    return {"order_id": ib_id, "status": status, "request": {"parent_id": 0, "order_type": "MKT"}}


def _violations(checker: Checker) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for result in checker.run():
        for violation in result.violations:
            found.setdefault(result.name, []).append(f"{violation.id}: {violation.detail}")
    return found


def _ib_stop(ib_id: int, parent_id: int, quantity: float, status: str = "Submitted") -> dict[str, Any]:
    """The protective stop of a filled long AAPL entry, as ibsim's control endpoint lists it."""
    request = {"parent_id": parent_id, "order_type": "STP", "symbol": "AAPL", "action": "SELL", "quantity": quantity}
    return {"order_id": ib_id, "status": status, "remaining": quantity, "request": request}


def test_a_consistent_world_has_no_violation() -> None:
    checker, _ = _world([_ib_order(7), _ib_stop(8, 7, 10)], [{"symbol": "AAPL", "quantity": 10.0}])
    assert _violations(checker) == {}


@pytest.mark.parametrize(
    ("stops", "covered"),
    [([], 0), ([_ib_stop(8, 7, 4)], 4), ([_ib_stop(8, 7, 10, "Cancelled")], 0)],
    ids=["no_stop", "a_stop_for_part", "a_cancelled_stop"],
)
def test_an_open_position_without_its_working_stop_is_reported(stops: list[dict[str, Any]], covered: float) -> None:
    checker, _ = _world([_ib_order(7), *stops], [{"symbol": "AAPL", "quantity": 10.0}])
    assert _violations(checker)["open_positions_keep_their_stops"] == [
        f"AAPL: position 10 at ibsim, working stops cover {covered:g}"
    ]


def test_an_unprotected_position_execution_alerted_on_is_not_a_violation() -> None:
    checker, _ = _world([_ib_order(7)], [{"symbol": "AAPL", "quantity": 10.0}])
    alert = Alert(
        alert_id="a1",
        kind="kill_switch_unprotected",
        severity=Severity.CRITICAL,
        state=AlertState.FIRING,
        component="execution",
        symbol="AAPL",
        message="flatten or protect this position",
        details={"symbol": "AAPL"},
        time=T0,
    )
    checker.raw[alerts.TOPIC.name] = _raw(alerts.TOPIC, [alert])
    assert "open_positions_keep_their_stops" not in _violations(checker)


def test_an_unprotected_position_an_operator_flattened_is_not_a_violation() -> None:
    # The flatten's stop cancel has gone out while a later fill (or the flatten's own remainder) left shares open.
    checker, _ = _world([_ib_order(7), _ib_stop(8, 7, 10, "Cancelled")], [{"symbol": "AAPL", "quantity": 10.0}])
    assert "open_positions_keep_their_stops" in _violations(checker)
    flatten = RoutedOrder(
        order_id="flat-1",
        symbol="AAPL",
        side=Side.SELL,
        quantity=10.0,
        order_type=OrderType.MKT,
        flatten_id="cmd-1",
        decision_id="d2",
        routed_time=T0,
    )
    routed = [r for _, r in checker.decoded(routed_orders.TOPIC)]
    checker.raw[routed_orders.TOPIC.name] = _raw(routed_orders.TOPIC, [*routed, flatten])
    assert "open_positions_keep_their_stops" not in _violations(checker)


def test_a_duplicate_order_at_ibsim_is_reported_with_its_order_id() -> None:
    checker, order_id = _world([_ib_order(7), _ib_order(12)], [{"symbol": "AAPL", "quantity": 10.0}])
    found = _violations(checker)
    assert found["one_ib_order_per_routed_order"] == [
        f"{order_id}: duplicate order: 2 ibsim parent orders (IB ids 7,12)"
    ]


def test_status_position_bar_and_poison_disagreements_are_reported() -> None:
    checker, order_id = _world(
        [_ib_order(7, "Cancelled"), {**_ib_order(9), "order_ref": "stranger"}], [{"symbol": "AAPL", "quantity": 20.0}]
    )
    checker.truth_bars["AAPL"].append(
        {"time": T0.timestamp() + 5, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}
    )
    checker.poison = {("orders.intents.v1", 0, 99)}
    checker.raw["orders.intents.v1"].append(RawRecord(0, 99, b"garbage"))
    found = _violations(checker)
    assert found["one_ib_order_per_routed_order"] == [
        f"{order_id}: ibsim says Cancelled, we last recorded filled",
        "stranger: 1 ibsim order(s) without a routed order",
    ]
    assert found["positions_match_ibsim"] == [
        "AAPL: positions.v1 says 10, ibsim 20",
        "AAPL: our fills sum to 10, ibsim 20",
    ]
    assert found["bars_in_kafka"] == ["AAPL@2026-11-24T15:00:05+00:00: bar missing, no gap covers it"]
    assert found["poison_in_dlq_only"] == ["orders.intents.v1/0/99: poison record not in any DLQ"]
    assert "no_undecodable_records" not in found  # the poison is expected to be undecodable


def test_an_unrecoverable_gap_covers_its_last_bar_too() -> None:
    checker, _ = _world([_ib_order(7)], [{"symbol": "AAPL", "quantity": 10.0}])
    missing = [T0 + dt.timedelta(seconds=5 * i) for i in (1, 2, 3)]
    for start in missing:
        checker.truth_bars["AAPL"].append(
            {"time": start.timestamp(), "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}
        )
    checker.bars_until = missing[-1].timestamp()
    gap = Gap(
        gap_id=f"AAPL:{missing[0].isoformat()}",
        symbol="AAPL",
        start=missing[0],
        end=missing[1],
        state=GapState.UNRECOVERABLE,
        cause="disconnect",
        missing_bars=2,
        recovered_bars=0,
        reason="test",
        detected_time=T0,
        updated_time=T0,
    )
    checker.raw[gaps.TOPIC.name] = _raw(gaps.TOPIC, [gap])
    found = _violations(checker)
    # The gap's last bar (its end) is covered; the bar after it is not.
    assert found["bars_in_kafka"] == [f"AAPL@{missing[2].isoformat()}: bar missing, no gap covers it"]


def _recorded_cancelled(checker: Checker, order_id: str, filled: float = 0.0) -> None:
    """Our record of the world's order becomes: cancelled (with ``filled`` shares), and no fill or position."""
    checker.raw[order_events.TOPIC.name] = _raw(
        order_events.TOPIC,
        [
            OrderEvent(
                event_id="e1",
                order_id=order_id,
                leg=OrderLeg.PARENT,
                symbol="AAPL",
                ib_order_id=7,
                status=OrderStatus.CANCELLED,
                filled_quantity=filled,
                remaining_quantity=10 - filled,
                source=ExecutionSource.RECONCILIATION,
                event_time=T0,
            )
        ],
    )
    checker.raw[executions.TOPIC.name] = []
    checker.raw[positions.TOPIC.name] = []


@pytest.mark.parametrize("ibsim_orders", [[], [_ib_order(7, "Cancelled")]], ids=["lost_by_the_gateway", "cancelled"])
def test_an_order_we_recorded_cancelled_unfilled_agrees_with_no_or_a_cancelled_ibsim_order(
    ibsim_orders: list[dict[str, Any]],
) -> None:
    # No ibsim order at all: an untransmitted bracket the gateway lost in a restart, which we recorded cancelled.
    checker, order_id = _world(ibsim_orders, [])
    _recorded_cancelled(checker, order_id)
    assert _violations(checker) == {}


def test_an_order_we_recorded_cancelled_is_reported_while_ibsim_still_holds_it_or_it_traded() -> None:
    held, held_id = _world([_ib_order(7, "PendingSubmit")], [])
    _recorded_cancelled(held, held_id)
    working, working_id = _world([_ib_order(7, "Submitted")], [])
    _recorded_cancelled(working, working_id)
    partly_filled, partly_filled_id = _world([], [])
    _recorded_cancelled(partly_filled, partly_filled_id, filled=4)
    orphan_leg, orphan_leg_id = _world(
        [{"order_id": 8, "status": "PendingSubmit", "request": {"parent_id": 7, "order_type": "STP"}}], []
    )
    _recorded_cancelled(orphan_leg, orphan_leg_id)
    assert _violations(held)["one_ib_order_per_routed_order"] == [
        f"{held_id}: ibsim says PendingSubmit, we last recorded cancelled"
    ]
    assert _violations(working)["one_ib_order_per_routed_order"] == [
        f"{working_id}: ibsim says Submitted, we last recorded cancelled"
    ]
    assert _violations(partly_filled)["one_ib_order_per_routed_order"] == [
        f"{partly_filled_id}: not at ibsim but our last status is cancelled"
    ]
    assert _violations(orphan_leg)["one_ib_order_per_routed_order"] == [
        f"{orphan_leg_id}: not at ibsim but our last status is cancelled"
    ]
