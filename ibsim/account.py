"""Account and portfolio: reqPositions, reqAccountSummary, reqAccountUpdates, reqAccountUpdatesMulti.

Values come from the order book (:class:`ibsim.matching.MatchingEngine`) marked at the current last price. Every
subscription gets its first full answer at once; after that, each fill re-sends positions, every account summary and
the account updates to each subscribed session (IB pushes on change). reqAccountUpdatesMulti answers once.
"""

from __future__ import annotations

from ibsim import messages as m
from ibsim.gateway import Gateway
from ibsim.session import Session


class Account:
    """Request handlers and the push after a fill (:meth:`changed`)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

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

    # -- pushes -----------------------------------------------------------------------------------

    def changed(self) -> None:
        """Re-send positions, summaries and updates to every subscribed session (after a fill)."""
        now = self.gw.clock.now()
        for s in self.gw.ready_sessions():
            if s.positions_sub:
                self._send_positions(s)
            for req_id, tags in s.acct_summary.items():
                self._send_summary(s, req_id, tags)
            if s.acct_updates:
                self._send_updates(s, now)

    def _tags(self) -> list[tuple[str, str, str]]:
        values = self.gw.engine.account_values(self.gw.mark)
        rows = [("AccountType", "INDIVIDUAL", "")]
        rows += [(k, f"{v:.2f}" if k != "Cushion" else f"{v:.6f}", "USD") for k, v in values.items()]
        return rows

    def _send_positions(self, s: Session) -> None:
        gw = self.gw
        for p in gw.engine.positions():
            s.send(m.position(gw.account, gw.instruments[p.symbol], p.quantity, p.avg_cost))

    def _send_summary(self, s: Session, req_id: int, tags: str) -> None:
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        everything = not wanted or "All" in wanted
        for tag, value, cur in self._tags():
            if everything or tag in wanted:
                for acct in self.gw.config.accounts:
                    s.send(m.account_summary(req_id, acct, tag, value, cur))
        s.send(m.account_summary_end(req_id))

    def _send_updates(self, s: Session, now: float) -> None:
        gw, account = self.gw, self.gw.account
        s.send(m.account_value("AccountCode", account, "", account))
        for tag, value, cur in self._tags():
            s.send(m.account_value(tag, value, cur, account))
        s.send(m.account_value("Currency", "USD", "USD", account))
        for p in gw.engine.positions():
            inst = gw.instruments[p.symbol]
            s.send(m.portfolio_value(inst, p.quantity, gw.mark(p.symbol), p.avg_cost, 0.0, account))
        s.send(m.account_update_time(now))
        s.send(m.account_download_end(account))

    def _send_multi(self, s: Session, req_id: int) -> None:
        for tag, value, cur in self._tags():
            s.send(m.account_update_multi(req_id, self.gw.account, "", tag, value, cur))
        s.send(m.account_update_multi_end(req_id))
