"""Account and portfolio: reqPositions, reqAccountSummary, reqAccountUpdates, reqAccountUpdatesMulti, reqPnL and
reqPnLSingle (and their cancels).

Values come from the order book's ledger (:class:`ibstream.sim.ledger.Ledger`) marked at the current last price. Every
subscription gets its first full answer at once. After that, as IB pushes on change: each fill or cash transfer
re-sends positions, every account summary, the account updates and the P&L to each subscribed session; P&L that moved
with the market is pushed at most once a wall second (IB: about once a second), and the account updates again every
``config.account_update_seconds`` (IB: every three minutes) so their values follow the market too. Daily P&L counts
from the start of the simulated trading day (New York date): the simulator's start, then the first pump tick on each
new date (before that tick's matching). reqAccountUpdatesMulti answers once.

updateAccountValue rows are as a gateway sends them for a single-currency (USD) stock account: the account-wide keys
in the base currency, their ``-S`` (securities) and ``-C`` (commodities) segment rows, and the per-currency keys once
per currency and once as ``BASE``. reqAccountSummary understands the tag list, ``All`` and ``$LEDGER`` /
``$LEDGER:USD`` / ``$LEDGER:ALL``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from ibsim import messages as m
from ibsim.config import EXCHANGE_TZ
from ibsim.gateway import Gateway
from ibsim.session import Session
from ibsim.wire import Field

BASE_CURRENCY = "USD"

#: Seconds between P&L pushes of one session (IB sends reqPnL updates about once a second).
PNL_PUSH_SECONDS = 1.0

#: Keys that also come per segment (``-S`` securities, ``-C`` commodities: zero in a stock account).
_SEGMENTED = (
    "NetLiquidation",
    "EquityWithLoanValue",
    "AvailableFunds",
    "ExcessLiquidity",
    "InitMarginReq",
    "MaintMarginReq",
    "TotalCashValue",
)

#: Per-currency keys (updateAccountValue: once per currency and once as BASE; account summary: the $LEDGER tags).
_LEDGER_KEYS = (
    "CashBalance",
    "TotalCashBalance",
    "NetLiquidationByCurrency",
    "StockMarketValue",
    "UnrealizedPnL",
    "RealizedPnL",
    "ExchangeRate",
)


class Account:
    """Request handlers and the pushes after a change (:meth:`changed`) and over time (:meth:`stream`)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.roll_day(gw.clock.now())

    # -- requests ---------------------------------------------------------------------------------

    def on_req_positions(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.positions_sub = True
        self._send_positions(s)
        s.send(m.position_end())

    def on_cancel_positions(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.positions_sub = False

    def on_req_account_summary(self, s: Session, req: m.ReqAccountSummary, now: float) -> None:
        s.acct_summary[req.req_id] = req.tags
        self._send_summary(s, req.req_id, req.tags)

    def on_cancel_account_summary(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.acct_summary.pop(req.arg, None)

    def on_req_account_updates(self, s: Session, req: m.ReqAccountUpdates, now: float) -> None:
        s.acct_updates = req.subscribe
        if req.subscribe:
            self._send_updates(s, now)

    def on_req_account_updates_multi(self, s: Session, req: m.ReqAccountUpdatesMulti, now: float) -> None:
        s.acct_multi[req.req_id] = req.account
        self._send_multi(s, req.req_id)

    def on_cancel_account_updates_multi(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.acct_multi.pop(req.arg, None)

    def on_req_pnl(self, s: Session, req: m.ReqPnL, now: float) -> None:
        if req.account not in self.gw.config.accounts:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} Account {req.account!r} is not managed")
            return
        s.pnl_subs[req.req_id] = req.account
        self._send_pnl(s, req.req_id, now, force=True)

    def on_req_pnl_single(self, s: Session, req: m.ReqPnL, now: float) -> None:
        if req.account not in self.gw.config.accounts:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} Account {req.account!r} is not managed")
            return
        if req.con_id not in self.gw.by_conid:
            s.error(req.req_id, 200)
            return
        s.pnl_single_subs[req.req_id] = req.con_id
        self._send_pnl(s, req.req_id, now, force=True)

    def on_cancel_pnl(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.pnl_subs.pop(req.arg, None)
        s.pnl_sent.pop(req.arg, None)

    def on_cancel_pnl_single(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        s.pnl_single_subs.pop(req.arg, None)
        s.pnl_sent.pop(req.arg, None)

    # -- pushes -----------------------------------------------------------------------------------

    def changed(self) -> None:
        """Re-send positions, summaries, updates and P&L to every subscribed session (after a fill or transfer)."""
        now = self.gw.clock.now()
        for s in self.gw.ready_sessions():
            if s.positions_sub:
                self._send_positions(s)
            for req_id, tags in s.acct_summary.items():
                self._send_summary(s, req_id, tags)
            if s.acct_updates:
                self._send_updates(s, now)
            for req_id in [*s.pnl_subs, *s.pnl_single_subs]:
                self._send_pnl(s, req_id, now)

    def stream(self, s: Session, now: float) -> None:
        """The pump's part: P&L that moved with the market (once a wall second), account updates every interval."""
        wall = time.monotonic()
        if (s.pnl_subs or s.pnl_single_subs) and wall - s.pnl_pushed_at >= PNL_PUSH_SECONDS:
            s.pnl_pushed_at = wall
            for req_id in [*s.pnl_subs, *s.pnl_single_subs]:
                self._send_pnl(s, req_id, now)
        if s.acct_updates and wall - s.acct_pushed_at >= self.gw.config.account_update_seconds:
            self._send_updates(s, now)

    def transfer(self, amount: float, as_pnl: bool = False) -> None:
        """Cash in (+) or out (-) of the account, e.g. a deposit or withdrawal; with ``as_pnl`` a fee or loss that
        counts as P&L. Pushed to every subscriber at once."""
        self.roll_day(self.gw.clock.now())
        self.gw.engine.ledger.transfer(amount, as_pnl)
        self.changed()

    # -- values -----------------------------------------------------------------------------------

    def roll_day(self, now: float) -> None:
        """Start the ledger's trading day when the simulated New York date changes (daily P&L counts from there);
        the pump calls it every tick before matching, so a new day's first fill already counts in the new day."""
        today = dt.datetime.fromtimestamp(now, EXCHANGE_TZ).date()
        ledger = self.gw.engine.ledger
        if ledger.day != today:
            ledger.start_day(self.gw.mark, today)

    def _frozen_mark(self) -> Callable[[str], float]:
        """Marks at one instant: every value of one push is priced at the same second (the simulated clock runs on
        while a push is being written, and a second boundary crossed between two rows made them disagree)."""
        at = self.gw.clock.now()
        return lambda symbol: self.gw.market.quote(symbol, at).last

    def _values(self, mark: Callable[[str], float] | None = None) -> dict[str, float]:
        return self.gw.engine.account_values(mark or self._frozen_mark())

    def _tags(self, mark: Callable[[str], float] | None = None) -> list[tuple[str, str, str]]:
        """The account-wide keys (the per-currency ones are :meth:`_ledger_rows`)."""
        rows = [("AccountType", "INDIVIDUAL", "")]
        rows += [(k, _text(k, v), BASE_CURRENCY) for k, v in self._values(mark).items() if k not in _LEDGER_KEYS]
        return rows

    def _ledger_rows(
        self, currencies: tuple[str, ...], mark: Callable[[str], float] | None = None
    ) -> list[tuple[str, str, str]]:
        """The per-currency keys, one row per currency asked for (``BASE``: the account's total in its currency)."""
        values = self._values(mark)
        stock_value = values["NetLiquidation"] - values["TotalCashValue"]
        by_key = {
            "CashBalance": values["TotalCashValue"],
            "TotalCashBalance": values["TotalCashValue"],
            "NetLiquidationByCurrency": values["NetLiquidation"],
            "StockMarketValue": stock_value,
            "UnrealizedPnL": values["UnrealizedPnL"],
            "RealizedPnL": values["RealizedPnL"],
            "ExchangeRate": 1.0,
        }
        rows = [("Currency", cur, cur) for cur in currencies]
        rows += [(k, f"{by_key[k]:.2f}", cur) for cur in currencies for k in _LEDGER_KEYS]
        return rows

    def _send_positions(self, s: Session) -> None:
        gw = self.gw
        for p in gw.engine.positions():
            s.send(m.position(gw.account, gw.instruments[p.symbol], p.quantity, p.avg_cost))

    def _send_summary(self, s: Session, req_id: int, tags: str) -> None:
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        everything = not wanted or "All" in wanted
        mark = self._frozen_mark()
        rows = [r for r in self._tags(mark) if everything or r[0] in wanted]
        if "$LEDGER:ALL" in wanted:
            rows += self._ledger_rows((BASE_CURRENCY, "BASE"), mark)
        elif wanted & {"$LEDGER", f"$LEDGER:{BASE_CURRENCY}"}:
            rows += self._ledger_rows((BASE_CURRENCY,), mark)
        for tag, value, cur in rows:
            for acct in self.gw.config.accounts:
                s.send(m.account_summary(req_id, acct, tag, value, cur))
        s.send(m.account_summary_end(req_id))

    def _send_updates(self, s: Session, now: float) -> None:
        gw, account = self.gw, self.gw.account
        self.roll_day(now)
        s.acct_pushed_at = time.monotonic()
        mark = self._frozen_mark()
        s.send(m.account_value("AccountCode", account, "", account))
        s.send(m.account_value("AccountReady", "true", "", account))
        for tag, value, cur in self._tags(mark):
            s.send(m.account_value(tag, value, cur, account))
            if tag in _SEGMENTED:
                s.send(m.account_value(f"{tag}-S", value, cur, account))
                s.send(m.account_value(f"{tag}-C", "0.00", cur, account))
        for key, value, cur in self._ledger_rows((BASE_CURRENCY, "BASE"), mark):
            s.send(m.account_value(key, value, cur, account))
        ledger = gw.engine.ledger
        for p in gw.engine.positions():
            inst = gw.instruments[p.symbol]
            realized = ledger.pnl_single(p.symbol, mark).realized
            s.send(m.portfolio_value(inst, p.quantity, mark(p.symbol), p.avg_cost, realized, account))
        s.send(m.account_update_time(now))
        s.send(m.account_download_end(account))

    def _send_multi(self, s: Session, req_id: int) -> None:
        for tag, value, cur in self._tags():
            s.send(m.account_update_multi(req_id, self.gw.account, "", tag, value, cur))
        s.send(m.account_update_multi_end(req_id))

    def _send_pnl(self, s: Session, req_id: int, now: float, force: bool = False) -> None:
        """One pnl / pnlSingle message, unless the numbers are those sent last (``force``: the first answer)."""
        self.roll_day(now)
        gw = self.gw
        fields: list[Field]
        if req_id in s.pnl_subs:
            p = gw.engine.ledger.pnl(gw.mark)
            numbers: tuple[float, ...] = (p.daily, p.unrealized, p.realized)
            fields = m.pnl(req_id, *numbers)
        elif req_id in s.pnl_single_subs:
            symbol = gw.by_conid[s.pnl_single_subs[req_id]].symbol
            q = gw.engine.ledger.pnl_single(symbol, gw.mark)
            numbers = (q.position, q.daily, q.unrealized, q.realized, q.value)
            fields = m.pnl_single(req_id, *numbers)
        else:
            return
        if not force and s.pnl_sent.get(req_id) == numbers:
            return
        s.pnl_sent[req_id] = numbers
        s.send(fields)


def _text(key: str, value: float) -> str:
    """IB's text for an account value: two decimals, the cushion as a fraction with six."""
    return f"{value:.6f}" if key == "Cushion" else f"{value:.2f}"
