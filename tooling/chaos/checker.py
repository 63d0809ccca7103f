"""The independent checker: after a campaign, compare Kafka, the warehouse and ibsim's ground truth.

It shares nothing with the deployables beyond the contracts and their serde: it reads every topic from the
beginning with its own group-less consumer (read_committed), queries the warehouse tables with its own SQL, and asks
ibsim's control endpoint for the truth (bars, orders, positions). Each invariant reports how many things it checked
and every violation with the ids needed to find it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from ibstream.config import Settings
from ibstream.contracts import (
    TOPICS,
    Alert,
    Bar,
    DeadLetter,
    Execution,
    Gap,
    OrderEvent,
    OrderIntent,
    Position,
    RiskDecision,
    RoutedOrder,
    TopicSpec,
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
from ibstream.contracts.enums import GapState, OrderLeg, OrderStatus, Side
from ibstream.contracts.serde import Codec, DecodeError, SchemaStore, SingleObjectCodec

#: Our statuses that end an order, and those that mean "working at IB" (a resting order is a valid end state).
FINAL = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.ERROR}
WORKING = {OrderStatus.ACKNOWLEDGED, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED}
#: ibsim's (IB's) order status → the statuses of ours that agree with it.
AGREES: dict[str, set[OrderStatus]] = {
    "Filled": {OrderStatus.FILLED},
    "Cancelled": {OrderStatus.CANCELLED},
    "ApiCancelled": {OrderStatus.CANCELLED},
    "Inactive": {OrderStatus.REJECTED, OrderStatus.ERROR, OrderStatus.CANCELLED},
    "Submitted": WORKING,
    "PreSubmitted": WORKING,
    "PendingSubmit": WORKING | {OrderStatus.PENDING_SUBMIT},
    "PendingCancel": WORKING | {OrderStatus.CANCELLED},
}
QTY_EPSILON = 1e-6
#: ibsim (IB) order types that protect a position against an adverse move.
PROTECTIVE_TYPES = frozenset({"STP", "STP LMT", "TRAIL", "TRAIL LIMIT"})
#: ibsim (IB) statuses of an order that still protects: working, or held until its parent fills.
PROTECTING = frozenset({"Submitted", "PreSubmitted", "PendingSubmit"})


def protected_quantity(symbol: str, position: float, truth_orders: Iterable[dict[str, Any]]) -> float:
    """Shares of ``position`` in ``symbol`` covered by working protective orders on the closing side at ibsim."""
    closing = "SELL" if position > 0 else "BUY"
    covered = 0.0
    for order in truth_orders:
        request = order.get("request") or {}
        if (
            request.get("symbol") == symbol
            and request.get("action") == closing
            and request.get("order_type") in PROTECTIVE_TYPES
            and order.get("status") in PROTECTING
        ):
            covered += float(order.get("remaining") or 0.0)
    return covered


def unprotected_positions(
    truth_positions: Iterable[dict[str, Any]], truth_orders: list[dict[str, Any]]
) -> dict[str, tuple[float, float]]:
    """Symbol → (position, protected shares) for every open position at ibsim that its stops do not fully cover."""
    out: dict[str, tuple[float, float]] = {}
    for position in truth_positions:
        symbol, quantity = str(position["symbol"]), float(position["quantity"])
        if abs(quantity) <= QTY_EPSILON:
            continue
        covered = protected_quantity(symbol, quantity, truth_orders)
        if covered < abs(quantity) - QTY_EPSILON:
            out[symbol] = (quantity, covered)
    return out


@dataclass(frozen=True)
class Violation:
    """One broken promise, with the id that finds it (order id, symbol@time, topic/partition/offset…)."""

    invariant: str
    id: str
    detail: str


@dataclass
class InvariantResult:
    name: str
    description: str
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    def fail(self, id_: str, detail: str) -> None:
        self.violations.append(Violation(self.name, id_, detail))

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    value: bytes | None


# --- reading --------------------------------------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[RawRecord]:
    """Every committed record of ``topic`` from the beginning (group-less: nothing is committed or rebalanced)."""
    return read_topics(bootstrap, [topic], timeout)[topic]


def read_topics(bootstrap: str, topics: list[str], timeout: float = 120.0) -> dict[str, list[RawRecord]]:
    """Every committed record of each of ``topics`` from the beginning, through one consumer: a consumer per topic
    cost the checker ~0.25 s each (metadata, watermarks, the first fetch), 20 s for the catalogue and its DLQs."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "ibstream-chaos-checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        listed = consumer.list_topics(timeout=30).topics
        out: dict[str, list[RawRecord]] = {}
        pending: set[tuple[str, int]] = set()
        assignment = []
        for topic in topics:
            metadata = listed.get(topic)
            if metadata is None or metadata.error is not None:
                raise RuntimeError(f"topic {topic} is missing: {metadata.error if metadata else 'not found'}")
            out[topic] = []
            for partition in sorted(metadata.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)
                if high > low:
                    pending.add((topic, partition))
                    assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        if not assignment:
            return out
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions not read to their end in {timeout:.0f}s: {sorted(pending)}")
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                topic, partition = message.topic() or "", message.partition() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((topic, partition))
                        continue
                    raise RuntimeError(f"{topic}: {error}")
                out[topic].append(RawRecord(partition, message.offset() or 0, message.value()))
        return out
    finally:
        consumer.close()


def http_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


# --- the checker ----------------------------------------------------------------------------------------------


@dataclass
class Checker:
    """Reads everything once (``load``), then evaluates each invariant (``run``)."""

    settings: Settings
    ibsim_control: str
    symbols: tuple[str, ...]
    #: Poison records the campaign injected: (catalogue topic, partition, offset).
    poison: set[tuple[str, int, int]]
    #: Ground-truth bars are expected from each symbol's first published bar up to this epoch (bar start).
    bars_until: float
    warehouse: Any = None  # an open ibstream.warehouse.Warehouse, or None to skip the warehouse invariants
    codec: Codec = field(default_factory=lambda: SingleObjectCodec(SchemaStore()))

    def __post_init__(self) -> None:
        self.prefix = self.settings.kafka.topic_prefix
        self.raw: dict[str, list[RawRecord]] = {}
        self.undecodable: list[tuple[str, int, int, str]] = []

    # -- loading --

    def load(self) -> None:
        bootstrap = self.settings.kafka.bootstrap_servers
        names = [name for spec in TOPICS for name in (spec.name, spec.dlq_name)]
        read = read_topics(bootstrap, [self.prefix + name for name in names])
        self.raw.update({name: read[self.prefix + name] for name in names})
        self.truth_orders: list[dict[str, Any]] = http_json(f"{self.ibsim_control}/orders")
        self.truth_positions: list[dict[str, Any]] = http_json(f"{self.ibsim_control}/positions")
        self.truth_bars: dict[str, list[dict[str, Any]]] = {
            symbol: http_json(f"{self.ibsim_control}/bars/{symbol}", timeout=60) for symbol in self.symbols
        }

    def decoded(self, spec: TopicSpec[Any]) -> list[tuple[RawRecord, Any]]:
        """Records of a topic decoded, skipping the poison (which is meant to be undecodable)."""
        out = []
        for raw in self.raw[spec.name]:
            if (spec.name, raw.partition, raw.offset) in self.poison:
                continue
            try:
                record = self.codec.decode(self.prefix + spec.name, spec.record, raw.value, raw.partition, raw.offset)
            except DecodeError as error:
                self.undecodable.append((spec.name, raw.partition, raw.offset, str(error)[:200]))
                continue
            out.append((raw, record))
        return out

    def records_processed(self) -> dict[str, int]:
        return {name: len(records) for name, records in self.raw.items() if records}

    # -- invariants --

    def run(self) -> list[InvariantResult]:
        self.bar_records: list[Bar] = [r for _, r in self.decoded(bars.TOPIC)]
        self.gap_records: list[Gap] = [r for _, r in self.decoded(gaps.TOPIC)]
        self.intents: list[OrderIntent] = [r for _, r in self.decoded(order_intents.TOPIC)]
        self.decisions: list[RiskDecision] = [r for _, r in self.decoded(risk_decisions.TOPIC)]
        self.routed: list[RoutedOrder] = [r for _, r in self.decoded(routed_orders.TOPIC)]
        self.events: list[tuple[RawRecord, OrderEvent]] = self.decoded(order_events.TOPIC)
        self.fills: list[Execution] = [r for _, r in self.decoded(executions.TOPIC)]
        self.positions: list[tuple[RawRecord, Position]] = self.decoded(positions.TOPIC)
        results = [
            self.check_bars(),
            self.check_decisions(),
            self.check_orders(),
            self.check_positions(),
            self.check_protected(),
            self.check_dead_letters(),
        ]
        if self.warehouse is not None:
            results.insert(1, self.check_warehouse_bars())
            results.append(self.check_warehouse_counts())
        results.append(self.check_decodable())
        return results

    def _unrecoverable(self) -> dict[str, list[tuple[float, float, str]]]:
        covered: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
        for gap in gaps.latest_states(self.gap_records).values():
            if gap.state is GapState.UNRECOVERABLE:
                covered[gap.symbol].append((gap.start.timestamp(), gap.end.timestamp(), gap.gap_id))
        return covered

    def _expected_bars(self, present: dict[str, set[int]]) -> Iterable[tuple[str, dict[str, Any]]]:
        for symbol in self.symbols:
            if not present.get(symbol):
                continue
            first = min(present[symbol])
            for bar in self.truth_bars[symbol]:
                if first <= int(bar["time"]) <= self.bars_until:
                    yield symbol, bar

    def check_bars(self) -> InvariantResult:
        result = InvariantResult(
            "bars_in_kafka",
            "every ibsim bar (from a symbol's first published bar to the producer's stop) is in md.bars.5s.v1 with "
            "its values, or inside an unrecoverable gap",
        )
        by_key: dict[tuple[str, int], Bar] = {}
        for bar in self.bar_records:
            by_key.setdefault((bar.symbol, int(bar.start.timestamp())), bar)
        present: dict[str, set[int]] = defaultdict(set)
        for symbol, start in by_key:
            present[symbol].add(start)
        for symbol in self.symbols:
            if not present.get(symbol):
                result.fail(symbol, "no bar of this symbol reached Kafka")
        covered = self._unrecoverable()
        self.expected_bar_keys: set[tuple[str, int]] = set()
        for symbol, truth in self._expected_bars(present):
            start = int(truth["time"])
            result.checked += 1
            got = by_key.get((symbol, start))
            if got is None:
                # A gap's end is its last missing bar (inclusive, as md.gaps.v1 documents it).
                if any(lo <= start <= hi for lo, hi, _ in covered.get(symbol, [])):
                    continue
                result.fail(
                    f"{symbol}@{datetime.fromtimestamp(start, UTC).isoformat()}", "bar missing, no gap covers it"
                )
                continue
            self.expected_bar_keys.add((symbol, start))
            values = (got.open, got.high, got.low, got.close, got.volume)
            expected = (truth["open"], truth["high"], truth["low"], truth["close"], float(truth["volume"]))
            if any(abs(a - float(b)) > 1e-6 for a, b in zip(values, expected, strict=True)):
                result.fail(
                    f"{symbol}@{datetime.fromtimestamp(start, UTC).isoformat()}",
                    f"values {values} differ from ibsim {expected}",
                )
        return result

    def check_warehouse_bars(self) -> InvariantResult:
        result = InvariantResult("bars_in_warehouse", "every bar found in Kafka is in the warehouse (FINAL)")
        table = self.warehouse.schema.for_topic(bars.TOPIC).name
        rows = self._query(f"SELECT DISTINCT symbol, toUnixTimestamp(start) FROM {{db}}.{table} FINAL")
        stored = {(str(symbol), int(start)) for symbol, start in rows}
        for key in sorted(self.expected_bar_keys):
            result.checked += 1
            if key not in stored:
                result.fail(f"{key[0]}@{datetime.fromtimestamp(key[1], UTC).isoformat()}", "bar not in the warehouse")
        return result

    def check_decisions(self) -> InvariantResult:
        result = InvariantResult(
            "one_risk_decision_per_intent",
            "every order intent has exactly one risk decision (distinct decision ids, one verdict); every routed "
            "order has an approving decision",
        )
        decisions: dict[str, set[str]] = defaultdict(set)
        verdicts: dict[str, set[bool]] = defaultdict(set)
        for decision in self.decisions:
            decisions[decision.order_id].add(decision.decision_id)
            verdicts[decision.order_id].add(decision.approved)
        intent_ids = {intent.order_id for intent in self.intents}
        for order_id in sorted(intent_ids):
            result.checked += 1
            if not decisions.get(order_id):
                result.fail(order_id, "intent without a risk decision")
            elif len(decisions[order_id]) > 1 or len(verdicts[order_id]) > 1:
                result.fail(order_id, f"{len(decisions[order_id])} decisions, verdicts {sorted(verdicts[order_id])}")
        for order_id in sorted(set(decisions) - intent_ids):
            result.fail(order_id, "decision without an intent")
        for order in self.routed:
            result.checked += 1
            if True not in verdicts.get(order.order_id, set()):
                result.fail(order.order_id, "routed without an approving risk decision")
        return result

    def check_orders(self) -> InvariantResult:
        result = InvariantResult(
            "one_ib_order_per_routed_order",
            "every routed order maps to exactly one ibsim parent order (orderRef), or to no ibsim order at all when "
            "we recorded it rejected or cancelled unfilled; no ibsim order lacks a routed order, and our last "
            "recorded status agrees with ibsim's (terminal or working)",
        )
        routed_ids = {order.order_id for order in self.routed}
        parents: dict[str, list[dict[str, Any]]] = defaultdict(list)
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for order in self.truth_orders:
            ref = order.get("order_ref") or ""
            parent_id = int((order.get("request") or {}).get("parent_id") or 0)
            (children if parent_id else parents)[ref].append(order)
        latest: dict[str, OrderEvent] = {}
        for _, event in sorted(self.events, key=lambda item: (item[1].event_time, item[0].offset)):
            if event.leg is OrderLeg.PARENT:
                latest[event.order_id] = event
        for order_id in sorted(routed_ids):
            result.checked += 1
            at_ib = parents.get(order_id, [])
            ours = latest.get(order_id)
            if len(at_ib) > 1:
                ids = ",".join(str(o["order_id"]) for o in at_ib)
                result.fail(order_id, f"duplicate order: {len(at_ib)} ibsim parent orders (IB ids {ids})")
                continue
            legs = Counter(str((o.get("request") or {}).get("order_type")) for o in children.get(order_id, []))
            if any(count > 1 for count in legs.values()):
                result.fail(order_id, f"duplicate bracket legs at ibsim: {dict(legs)}")
            if ours is None:
                result.fail(order_id, "no order event recorded for a routed order")
                continue
            if not at_ib:
                # Consistent when it never reached IB or the gateway lost it (an untransmitted bracket across a
                # gateway restart) and we recorded it ended without a fill.
                cancelled_unfilled = (
                    ours.status is OrderStatus.CANCELLED
                    and ours.filled_quantity <= QTY_EPSILON
                    and not children.get(order_id)
                )
                if ours.status not in (OrderStatus.REJECTED, OrderStatus.ERROR) and not cancelled_unfilled:
                    result.fail(order_id, f"not at ibsim but our last status is {ours.status.value}")
                continue
            status = str(at_ib[0].get("status"))
            if ours.status not in AGREES.get(status, set()):
                result.fail(order_id, f"ibsim says {status}, we last recorded {ours.status.value}")
        for ref in sorted(set(parents) - routed_ids):
            result.fail(ref or "<no orderRef>", f"{len(parents[ref])} ibsim order(s) without a routed order")
        return result

    def check_positions(self) -> InvariantResult:
        result = InvariantResult(
            "positions_match_ibsim",
            "per symbol: the last positions.v1 record and the sum of our fills (by exec id) equal ibsim's position",
        )
        truth = {str(p["symbol"]): float(p["quantity"]) for p in self.truth_positions}
        last: dict[str, float] = {}
        for _, position in sorted(self.positions, key=lambda item: (item[0].partition, item[0].offset)):
            last[position.symbol] = position.quantity
        fills: dict[str, float] = defaultdict(float)
        seen: set[str] = set()
        for fill in self.fills:
            if fill.exec_id in seen:
                continue
            seen.add(fill.exec_id)
            fills[fill.symbol] += fill.quantity if fill.side is Side.BUY else -fill.quantity
        for symbol in sorted(set(truth) | set(last) | set(fills)):
            result.checked += 1
            expected = truth.get(symbol, 0.0)
            if abs(last.get(symbol, 0.0) - expected) > QTY_EPSILON:
                result.fail(symbol, f"positions.v1 says {last.get(symbol, 0.0):g}, ibsim {expected:g}")
            if abs(fills[symbol] - expected) > QTY_EPSILON:
                result.fail(symbol, f"our fills sum to {fills[symbol]:g}, ibsim {expected:g}")
        return result

    def check_protected(self) -> InvariantResult:
        result = InvariantResult(
            "open_positions_keep_their_stops",
            "every open position at ibsim is covered by working protective orders (stops) on its closing side, "
            "unless execution raised the critical alert kill_switch_unprotected for it (a partly filled entry whose "
            "cancel took its stop: the operator must flatten or protect it) or an operator flattened it (a routed "
            "order with flatten_id for the symbol: its stops are cancelled once the flatten fills)",
        )
        flattened = {order.symbol for order in self.routed if order.flatten_id is not None}
        alerted = {
            alert.symbol or alert.details.get("symbol", "")
            for _, alert in self.decoded(alerts.TOPIC)
            if isinstance(alert, Alert) and alert.kind == "kill_switch_unprotected"
        }
        open_positions = [p for p in self.truth_positions if abs(float(p["quantity"])) > QTY_EPSILON]
        result.checked = len(open_positions)
        for symbol, (quantity, covered) in sorted(unprotected_positions(open_positions, self.truth_orders).items()):
            if symbol not in alerted and symbol not in flattened:
                result.fail(symbol, f"position {quantity:g} at ibsim, working stops cover {covered:g}")
        return result

    def check_dead_letters(self) -> InvariantResult:
        result = InvariantResult(
            "poison_in_dlq_only",
            "every poison record is in a DLQ, and every dead letter is a poison record",
        )
        origins: set[tuple[str, int, int]] = set()
        for spec in TOPICS:
            for raw in self.raw[spec.dlq_name]:
                try:
                    letter = self.codec.decode(
                        self.prefix + spec.dlq_name, DeadLetter, raw.value, raw.partition, raw.offset
                    )
                except DecodeError as error:
                    result.fail(f"{spec.dlq_name}/{raw.partition}/{raw.offset}", f"undecodable dead letter: {error}")
                    continue
                topic = letter.original_topic.removeprefix(self.prefix)
                origin = (topic, letter.partition, letter.offset)
                origins.add(origin)
                result.checked += 1
                if origin not in self.poison:
                    result.fail(
                        f"{topic}/{letter.partition}/{letter.offset}",
                        f"dead letter of a non-poison record ({letter.component}: {letter.error_message[:120]})",
                    )
        for poison in sorted(self.poison):
            result.checked += 1
            if poison not in origins:
                result.fail("/".join(map(str, poison)), "poison record not in any DLQ")
        return result

    def check_warehouse_counts(self) -> InvariantResult:
        result = InvariantResult(
            "warehouse_equals_kafka",
            "per topic and partition, the warehouse (FINAL) holds exactly the Kafka records' offsets: no loss, no "
            "duplicates after dedup (poison records are excluded: they live in the DLQ table)",
        )
        for spec in TOPICS:
            table = self.warehouse.schema.for_topic(spec).name
            expected: dict[int, list[int]] = defaultdict(list)
            for raw in self.raw[spec.name]:
                if (spec.name, raw.partition, raw.offset) not in self.poison:
                    expected[raw.partition].append(raw.offset)
            rows = self._query(
                f"SELECT _partition, count(), uniqExact(_offset), sum(_offset) FROM {{db}}.{table} FINAL "
                f"GROUP BY _partition"
            )
            stored = {int(p): (int(c), int(u), int(s)) for p, c, u, s in rows}
            for partition in sorted(set(expected) | set(stored)):
                result.checked += 1
                offsets = expected.get(partition, [])
                count, unique, total = stored.get(partition, (0, 0, 0))
                if count != unique:
                    result.fail(f"{spec.name}/{partition}", f"{count - unique} duplicate rows after FINAL")
                if unique != len(offsets) or total != sum(offsets):
                    sql = f"SELECT DISTINCT _offset FROM {{db}}.{table} FINAL WHERE _partition = {partition}"
                    have = {int(o) for (o,) in self._query(sql)}
                    missing = sorted(set(offsets) - have)
                    extra = sorted(have - set(offsets))
                    result.fail(
                        f"{spec.name}/{partition}",
                        f"kafka {len(offsets)} records, warehouse {unique}; missing offsets {missing[:10]}"
                        f"{'…' if len(missing) > 10 else ''}, unknown offsets {extra[:10]}",
                    )
        return result

    def check_decodable(self) -> InvariantResult:
        result = InvariantResult("no_undecodable_records", "every non-poison record decodes with its contract")
        result.checked = sum(len(v) for k, v in self.raw.items() if ".dlq." not in k)
        for topic, partition, offset, error in self.undecodable:
            result.fail(f"{topic}/{partition}/{offset}", error)
        return result

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.warehouse.query(sql.replace("{db}", self.settings.warehouse.database)).rows
        return rows
