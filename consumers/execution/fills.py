"""Fill and commission pairing: an IB execution is published with its commission report when that arrives.

IB sends ``execDetails`` and ``commissionReport`` separately, in either order. An execution waits up to
``COMMISSION_WAIT_SECONDS`` for its report (a report that came first waits for its execution), then is published
without it. Each exec_id is recorded once (``Book.record_execution``), live or recovered by reconciliation.
"""

from __future__ import annotations

import logging

from consumers.execution.context import Context
from consumers.execution.reporting import Reporter
from consumers.execution.state import execution_record
from ibstream.contracts import executions, utc_now
from ibstream.contracts.enums import ExecutionSource
from ibstream.ib import events
from ibstream.telemetry import log_context, within

log = logging.getLogger(__name__)

#: A fill whose commission report has not arrived after this long is published without it.
COMMISSION_WAIT_SECONDS = 2.0


class FillPairing:
    """Executions waiting for their commission report, and reports waiting for their execution."""

    def __init__(self, ctx: Context, reporter: Reporter) -> None:
        self.ctx = ctx
        self.reporter = reporter
        self.pending: dict[str, tuple[events.ExecutionDetail, ExecutionSource, float]] = {}
        self.early_commissions: dict[str, events.CommissionReport] = {}

    def on_execution(self, detail: events.ExecutionDetail) -> None:
        """An execution of one of our orders (live, or an answer to reqExecutions)."""
        book = self.ctx.book
        if detail.order_ref not in book.orders:
            return
        if detail.exec_id in book.exec_ids or detail.exec_id in self.pending:
            return
        source = ExecutionSource.LIVE if detail.req_id < 0 else ExecutionSource.RECONCILIATION
        self.pending[detail.exec_id] = (detail, source, self.ctx.wall() + COMMISSION_WAIT_SECONDS)
        early = self.early_commissions.pop(detail.exec_id, None)
        if early is not None:
            self.finish(detail.exec_id, early)

    def on_commission(self, report: events.CommissionReport) -> None:
        if report.exec_id in self.pending:
            self.finish(report.exec_id, report)
        elif report.exec_id not in self.ctx.book.exec_ids:
            self.early_commissions[report.exec_id] = report

    def recover(self, detail: events.ExecutionDetail, commission: events.CommissionReport | None) -> None:
        """A fill reconciliation found at IB: record it now, with the commission IB sent along (if any)."""
        if detail.exec_id in self.ctx.book.exec_ids and detail.exec_id not in self.pending:
            return
        if detail.exec_id not in self.pending:
            self.pending[detail.exec_id] = (detail, ExecutionSource.RECONCILIATION, self.ctx.wall())
        self.finish(detail.exec_id, commission)

    def expire(self) -> None:
        """Publish the executions whose commission report did not come in time."""
        now = self.ctx.wall()
        for exec_id in [e for e, (_, _, deadline) in self.pending.items() if deadline <= now]:
            self.finish(exec_id, None)

    def finish(self, exec_id: str, commission: events.CommissionReport | None) -> None:
        detail, source, _ = self.pending.pop(exec_id)
        record = execution_record(detail, commission, source, utc_now())
        if self.ctx.book.record_execution(record):
            with within(
                self.reporter.trace(record.order_id),
                "execution.fill",
                order_id=record.order_id,
                exec_id=exec_id,
                source=source.value,
            ):
                self.reporter.outbox.enqueue(executions.TOPIC, record)
            with log_context(order_id=record.order_id, symbol=record.symbol):
                log.info(
                    "fill",
                    extra={
                        "exec_id": exec_id,
                        "quantity": record.quantity,
                        "price": record.price,
                        "source": source.value,
                    },
                )
