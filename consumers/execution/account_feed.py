"""The account's values and P&L from IB to ``account.v1``: thin I/O around :mod:`consumers.execution.account_values`.

Protocol: after every connect (and every 1101/1102 restore) :meth:`AccountFeed.subscribe` starts afresh —
reqAccountUpdates for the bound account and reqPnL (cancelled first, so a repeat never reuses a live request id, and
the previous reqPnLSingle subscriptions cancelled) — and forgets what the previous connection said, so nothing is
published until IB has sent a full round again. IB's callbacks are folded as they arrive; after each updatePortfolio
or accountDownloadEnd one reqPnLSingle is started per newly held contract and cancelled for each no longer held.
Each executor step asks :func:`account_values.publish_due` whether the record goes out, and queues it in the outbox
(published with the step's transaction). While the connection is down nothing
is published, not even the heartbeat: a reader sees the record's time age and knows the values are stale.
"""

from __future__ import annotations

import itertools
import logging

from opentelemetry.metrics import CallbackOptions, Observation

from consumers.execution.account_values import (
    AccountEvent,
    AccountView,
    PublishPolicy,
    account_state,
    fold,
    publish_due,
    singles_to_change,
    with_singles,
)
from consumers.execution.context import Context
from consumers.execution.outbox import Outbox
from ibstream.contracts import AccountState, account_states, utc_now
from ibstream.ib import events
from ibstream.telemetry import meter

log = logging.getLogger(__name__)

#: reqPnL's request id, and where reqPnLSingle's count from (the reconciler's reqExecutions ids count from 9000).
PNL_REQ_ID = 7000
FIRST_PNL_SINGLE_REQ_ID = 7001


class AccountFeed:
    """Subscribes to the account at IB, folds the answers, and publishes the account's state when due."""

    def __init__(self, ctx: Context, outbox: Outbox, policy: PublishPolicy) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.policy = policy
        self.view: AccountView | None = None
        self.last: AccountState | None = None
        self.last_at: float | None = None
        self._single_ids = itertools.count(FIRST_PNL_SINGLE_REQ_ID)
        #: reqPnLSingle subscriptions of a view dropped while the connection may live on (1100): cancelled next time.
        self._orphans: list[int] = []
        meter("consumers.execution").create_observable_gauge(
            "ibstream_account_net_liquidation",
            [self._observe],
            description="The account's NetLiquidation as IB last reported it, in its base currency",
        )

    def subscribe(self, account: str) -> bool:
        """Ask IB for the account's values and P&L on the current connection; False if the requests did not go."""
        session = self.ctx.session
        for req_id in [*self._orphans, *(self.view.singles if self.view else ())]:
            session.cancel_pnl_single(req_id)
        self._orphans = []
        self.view = AccountView(account)
        session.cancel_pnl(PNL_REQ_ID)
        sent = session.req_account_updates(True, account) and session.req_pnl(PNL_REQ_ID, account)
        log.info("account subscribed", extra={"account": account, "sent": sent})
        return sent

    def disconnected(self) -> None:
        """The connection is gone: stop publishing until a new subscription has a full round."""
        if self.view is not None:
            self._orphans += list(self.view.singles)
        self.view = None

    def handle(self, event: AccountEvent) -> None:
        if self.view is None:
            return
        if isinstance(event, events.AccountPnL) and event.req_id != PNL_REQ_ID:
            return
        self.view = fold(self.view, event)
        if isinstance(event, events.PortfolioUpdate | events.AccountDownloadEnd):
            self._follow_holdings()

    def _follow_holdings(self) -> None:
        """One reqPnLSingle per held contract: start the new ones, cancel those no longer held."""
        assert self.view is not None
        start, cancel = singles_to_change(self.view)
        if not start and not cancel:
            return
        session, account = self.ctx.session, self.view.account
        for req_id in cancel:
            session.cancel_pnl_single(req_id)
        started = {}
        for con_id in start:
            req_id = next(self._single_ids)
            if session.req_pnl_single(req_id, account, con_id):
                started[req_id] = con_id
        self.view = with_singles(self.view, started, cancel)

    def tick(self) -> None:
        """Publish the account's state if it changed (at most once per interval) or the heartbeat is due."""
        if self.view is None:
            return
        now = self.ctx.wall()
        candidate = account_state(self.view, utc_now())
        if not publish_due(candidate, self.last, self.last_at, now, self.policy):
            return
        assert candidate is not None  # publish_due is False without one
        self.outbox.enqueue(account_states.TOPIC, candidate)
        self.last, self.last_at = candidate, now

    def _observe(self, _options: CallbackOptions) -> list[Observation]:
        last = self.last
        if last is None:
            return []
        return [Observation(last.net_liquidation, {"account": last.account, "currency": last.base_currency})]
