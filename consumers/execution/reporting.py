"""What execution tells the world about its orders: the order state machine's events, metrics and alerts.

``report`` runs the book's state machine (``state.Book.report``) for one status; a change becomes an
``orders.events.v1`` record in the outbox under the order's trace, an impossible transition becomes an alert and
is not applied. Alerts fire once per key until resolved (``ibstream.alerting.AlertBook``).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanContext

from consumers.execution.context import Context
from consumers.execution.mapping import TERMINAL
from consumers.execution.outbox import COMPONENT, Outbox
from ibstream.alerting import AlertBook
from ibstream.contracts import OrderEvent, alerts, order_events, utc_now
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus, Severity
from ibstream.telemetry import meter, record_error, within

log = logging.getLogger(__name__)

#: Orders whose placing span execution remembers for their later events' spans.
MAX_ORDER_TRACES = 10_000


class Reporter:
    """Publishes order events and alerts through the outbox, and keeps the order metrics."""

    def __init__(self, ctx: Context, outbox: Outbox) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.alerts = AlertBook(COMPONENT)
        # order_id → the span that placed it: IB's acks and fills arrive later, outside any consumed record, and
        # their spans join the order's trace through it. Bounded; an order adopted after a restart has none.
        self.traces: collections.OrderedDict[str, SpanContext] = collections.OrderedDict()
        self.routed_times: dict[str, dt.datetime] = {}
        self.acked_at: dict[str, float] = {}
        m = meter("consumers.execution")
        self.m_outcomes = m.create_counter(
            "ibstream_execution_orders", description="Orders that reached a final state, by outcome"
        )
        # Every outcome's series exists from the start at 0: Prometheus' increase() cannot see a counter's first
        # step (a series born at 1 has no earlier sample), so the reject-rate alert would miss the first rejects.
        for outcome in sorted(status.value for status in TERMINAL):
            self.m_outcomes.add(0, {"outcome": outcome})
        self.m_placed = m.create_counter("ibstream_execution_placed", description="IB orders placed (legs)")
        self.m_intent_to_ack = m.create_histogram(
            "ibstream_execution_intent_to_ack_seconds", unit="s", description="routed_time → IB acknowledged"
        )
        self.m_ack_to_fill = m.create_histogram(
            "ibstream_execution_ack_to_fill_seconds", unit="s", description="IB acknowledged → filled"
        )
        self.m_impossible = m.create_counter(
            "ibstream_execution_impossible_transitions", description="Status reports that contradicted our state"
        )

    @property
    def wall(self) -> Callable[[], float]:
        return self.ctx.wall

    def remember_trace(self, order_id: str, context: SpanContext | None) -> None:
        if context is None:
            return
        self.traces[order_id] = context
        while len(self.traces) > MAX_ORDER_TRACES:
            self.traces.popitem(last=False)

    def trace(self, order_id: str) -> SpanContext | None:
        return self.traces.get(order_id)

    def report(
        self,
        order_id: str,
        leg: OrderLeg,
        status: OrderStatus,
        *,
        source: ExecutionSource = ExecutionSource.LIVE,
        reconciliation: str | None = None,
        at: dt.datetime | None = None,
        **fields: Any,
    ) -> None:
        """Run the state machine for one reported status; publish the event it yields. ``at``: when the status
        became known (an IB message's arrival); default now."""
        step = self.ctx.book.report(
            order_id, leg, status, now=at or utc_now(), source=source, reconciliation=reconciliation, **fields
        )
        if step.impossible is not None:
            self.m_impossible.add(1)
            record_error("impossible_transition", COMPONENT)
            log.error("impossible order transition not applied", extra={"transition": step.impossible})
            self.alert(
                "impossible_transition",
                Severity.WARNING,
                f"IB reported an impossible transition: {step.impossible}",
                {"leg": leg.value, "reported_status": status.value, "source": source.value},
                order_id=order_id,
                symbol=self.ctx.book.orders[order_id].symbol,
                key=(order_id, step.impossible),
            )
            return
        if step.event is None:
            return
        with within(
            self.traces.get(order_id),
            f"execution.order {status.value}",
            order_id=order_id,
            leg=leg.value,
            source=source.value,
        ):
            self.outbox.enqueue(order_events.TOPIC, step.event)
            # Inside the order's span: the line carries its trace_id, which leads from an `order rejected` line to
            # the bar, signal, run and risk decision behind it (the README's "follow a trace from a log line").
            log.info(
                "order %s",
                step.event.status.value,
                extra={
                    "leg": leg.value,
                    "ib_order_id": step.event.ib_order_id,
                    "filled": step.event.filled_quantity,
                    "broker_status": step.event.broker_status,
                    "broker_code": step.event.broker_code,
                    "broker_message": step.event.broker_message,
                    "source": source.value,
                    "reconciliation": reconciliation,
                },
            )
        self._observe(step.event)

    def _observe(self, event: OrderEvent) -> None:
        if event.leg is not OrderLeg.PARENT:
            return
        order_id = event.order_id
        reached = event.status in (OrderStatus.ACKNOWLEDGED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED)
        if reached and order_id not in self.acked_at:
            self.acked_at[order_id] = self.wall()
            routed_time = self.routed_times.get(order_id)
            if routed_time is not None:
                self.m_intent_to_ack.record(max((event.event_time - routed_time).total_seconds(), 0.0))
        if event.status in TERMINAL:
            self.m_outcomes.add(1, {"outcome": event.status.value})
            acked = self.acked_at.pop(order_id, None)
            if event.status is OrderStatus.FILLED and acked is not None:
                self.m_ack_to_fill.record(max(self.wall() - acked, 0.0))
            self.routed_times.pop(order_id, None)

    def alert(
        self,
        kind: str,
        severity: Severity,
        message: str,
        details: dict[str, str],
        *,
        key: tuple[str, ...],
        order_id: str | None = None,
        symbol: str | None = None,
    ) -> None:
        alert = self.alerts.fire(
            kind, "|".join(key), severity, message, symbol=symbol, order_id=order_id, details=details
        )
        if alert is not None:
            self.outbox.enqueue(alerts.TOPIC, alert)

    def resolve(self, kind: str, key: tuple[str, ...], message: str) -> None:
        alert = self.alerts.resolve(kind, "|".join(key), message)
        if alert is not None:
            self.outbox.enqueue(alerts.TOPIC, alert)
