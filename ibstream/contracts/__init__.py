"""Contracts: one module per topic, each declaring its record model, topic, key and layout together.

The `.avsc` files in `avro/` are the source of truth; the models mirror them field by field. Fields shared by
several records are declared once in `avro/include/` and mirrored once (see ``order_terms``).
"""

from __future__ import annotations

from typing import cast

from ibstream.contracts import (
    account_states,
    alerts,
    bars,
    control,
    dead_letters,
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
from ibstream.contracts.account_states import AccountState, PositionPnL
from ibstream.contracts.alerts import Alert
from ibstream.contracts.bars import Bar
from ibstream.contracts.base import Record, TopicSpec, UtcDatetime, utc_now
from ibstream.contracts.control import ControlCommand
from ibstream.contracts.dead_letters import DeadLetter, DlqRedrive
from ibstream.contracts.executions import Execution
from ibstream.contracts.gaps import Gap
from ibstream.contracts.heartbeats import Heartbeat
from ibstream.contracts.order_events import OrderEvent
from ibstream.contracts.order_intents import OrderIntent
from ibstream.contracts.order_terms import TERM_FIELDS, OrderTerms
from ibstream.contracts.positions import Position
from ibstream.contracts.quotes import Quote
from ibstream.contracts.risk_decisions import RiskCheck, RiskDecision
from ibstream.contracts.routed_orders import RoutedOrder
from ibstream.contracts.runs import OrchestrationRun, Plan
from ibstream.contracts.signal_outcomes import SignalOutcome
from ibstream.contracts.signal_transitions import SignalTransition
from ibstream.contracts.signals import Signal

#: Every topic of the pipeline, in flow order. DLQs are derived from these (see ibstream.kafka.topics).
# TopicSpec is invariant in its record type; the tuple is read-only, so the cast is safe.
TOPICS: tuple[TopicSpec[Record], ...] = cast(
    tuple[TopicSpec[Record], ...],
    (
        quotes.TOPIC,
        bars.TOPIC,
        *bars.AGGREGATE_TOPICS.values(),
        gaps.TOPIC,
        heartbeats.TOPIC,
        signals.TOPIC,
        signal_transitions.TOPIC,
        signal_outcomes.TOPIC,
        runs.TOPIC,
        order_intents.TOPIC,
        risk_decisions.TOPIC,
        routed_orders.TOPIC,
        order_events.TOPIC,
        executions.TOPIC,
        positions.TOPIC,
        account_states.TOPIC,
        alerts.TOPIC,
        control.TOPIC,
    ),
)

#: Every top-level record type, with the dead letter and the redrive ledger's entry (no catalogue topic of their own).
#: (Several topics may carry one record type: the bars of every timeframe are ``Bar``.)
RECORD_TYPES: tuple[type[Record], ...] = (*dict.fromkeys(spec.record for spec in TOPICS), DeadLetter, DlqRedrive)

#: The models of the includes in `avro/include/`: fields shared by several records, never records on a topic.
INCLUDE_TYPES: tuple[type[Record], ...] = (OrderTerms,)

__all__ = [
    "INCLUDE_TYPES",
    "RECORD_TYPES",
    "TERM_FIELDS",
    "TOPICS",
    "AccountState",
    "Alert",
    "Bar",
    "ControlCommand",
    "DeadLetter",
    "DlqRedrive",
    "Execution",
    "Gap",
    "Heartbeat",
    "OrchestrationRun",
    "OrderEvent",
    "OrderIntent",
    "OrderTerms",
    "Plan",
    "Position",
    "PositionPnL",
    "Quote",
    "Record",
    "RiskCheck",
    "RiskDecision",
    "RoutedOrder",
    "Signal",
    "SignalOutcome",
    "SignalTransition",
    "TopicSpec",
    "UtcDatetime",
    "dead_letters",
    "utc_now",
]
