"""Orders: placeOrder, cancelOrder, reqGlobalCancel, reqOpenOrders/reqAllOpenOrders, reqCompletedOrders,
reqExecutions; and the delivery of order-book events to the owning client.

placeOrder is validated here (a contract a gateway will not search for or order fields it refuses: 321 with the
reason, :mod:`ibsim.validation`; a contract matching nothing: 200), then handed to the matching engine
(:mod:`ibstream.sim.matching`), which accepts, modifies, holds or rejects it. Engine events go to the client that
placed the order if it is connected, otherwise nowhere (IB does not replay them; the client asks with reqOpenOrders and
reqExecutions): openOrder + orderStatus on each state change; on a fill execDetails, orderStatus, openOrder once filled
and commissionReport, then the account areas' push; 202 on cancel; the rejection code on reject. Faults apply here:
a queued rejection refuses the next new order, a lost transmit drops the connection (or restarts the gateway) instead
of placing, and delays hold back acknowledgements and fills.
"""

from __future__ import annotations

import asyncio
import logging

from ibsim import messages as m
from ibsim.account import Account
from ibsim.clock import exchange_date
from ibsim.config import Instrument
from ibsim.faults import Faults
from ibsim.gateway import Gateway
from ibsim.session import Session
from ibsim.validation import order_refusal
from ibsim.what_if import what_if
from ibsim.wire import ProtocolError
from ibstream.sim.order_values import (
    Event,
    Execution,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderSnapshot,
    OrderUpdated,
)

log = logging.getLogger("ibsim")

#: reqExecutions' side filter -> the side executions carry.
MAP_EXEC_SIDE = {"BUY": "BOT", "SELL": "SLD", "BOT": "BOT", "SLD": "SLD"}


class Orders:
    """Request handlers, the engine's clock tick (:meth:`advance`) and event delivery."""

    def __init__(self, gw: Gateway, account: Account, faults: Faults) -> None:
        self.gw = gw
        self.account = account
        self.faults = faults

    # -- requests ---------------------------------------------------------------------------------

    def on_place_order(self, s: Session, req: m.PlaceOrder, now: float) -> None:
        assert s.client_id is not None
        gw, f = self.gw, self.gw.faults
        if req.transmit and f.lost_transmits:
            self._lose(s, req, f.lost_transmits.popleft())
            return
        if req.order_id >= gw.next_order_id:
            gw.next_order_id = req.order_id + 1
        inst = gw.lookup(s, req.order_id, req.contract, for_order=True)
        if inst is None:
            return
        refusal = order_refusal(req, gw.config.accounts)
        if refusal is not None:
            code, reason = refusal
            s.error(req.order_id, code, f"{m.ERROR_TEXT[code]} {reason}")
            return
        order_req = OrderRequest(
            order_id=req.order_id,
            client_id=s.client_id,
            con_id=inst.con_id,
            symbol=inst.symbol,
            action=req.action,
            quantity=req.quantity,
            order_type=req.order_type,
            lmt_price=req.lmt_price,
            aux_price=req.aux_price,
            tif=(req.tif or "DAY").upper(),
            oca_group=req.oca_group,
            account=req.account or gw.account,
            order_ref=req.order_ref,
            transmit=req.transmit,
            parent_id=req.parent_id,
            outside_rth=req.outside_rth,
            oca_type=req.tail.oca_type,
            trail_stop_price=req.tail.trail_stop_price,
            trailing_percent=req.tail.trailing_percent,
            algo_strategy=req.tail.algo_strategy,
            algo_params=req.tail.algo_params,
            lmt_price_offset=req.tail.lmt_price_offset,
        )
        if req.what_if:
            self._answer_what_if(s, order_req, inst, now)
            return
        if f.rejections and gw.engine.order(s.client_id, req.order_id) is None:
            code, text = f.rejections.popleft()
            events: list[Event] = [gw.engine.record_rejection(order_req, now, code, text)]
        else:
            events = gw.engine.place(order_req, now, gw.clock.wall_to_sim(f.fill_delay))
        if f.ack_delay > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(f.ack_delay, self.deliver, events)
        else:
            self.deliver(events)

    def _answer_what_if(self, s: Session, req: OrderRequest, inst: Instrument, now: float) -> None:
        """The margin and commission the order would cost, in one openOrder; the order is never placed."""
        gw = self.gw
        mark = gw.mark(inst.symbol)
        price = {"LMT": req.lmt_price, "STP LMT": req.lmt_price, "STP": req.aux_price}.get(req.order_type) or mark
        values = gw.engine.account_values(gw.mark)
        held = sum(p.quantity for p in gw.engine.ledger.positions() if p.symbol == inst.symbol)
        state = what_if(
            gross_position_value=values["GrossPositionValue"],
            equity_with_loan=values["EquityWithLoanValue"],
            position=held,
            signed_quantity=req.quantity if req.action == "BUY" else -req.quantity,
            price=price,
            commission=gw.engine.commissions.for_order(req.quantity, req.quantity * price),
            currency=inst.currency,
        )
        snapshot = OrderSnapshot(req, 0, "PreSubmitted", 0.0, req.quantity, 0.0, 0.0, now, now)
        s.send(m.open_order(snapshot, inst, gw.account, what_if=state, version=s.version))

    def _lose(self, s: Session, req: m.PlaceOrder, restart_seconds: float) -> None:
        """A transmitting placeOrder lost in flight: its connection drops, or the whole gateway restarts."""
        log.info(
            "fault: placeOrder %d of client %d lost in flight; %s",
            req.order_id,
            s.client_id,
            f"gateway restarts for {restart_seconds:g} s" if restart_seconds else "connection dropped",
        )
        if restart_seconds:
            self.faults.restart_gateway(restart_seconds)
        else:
            s.close(abort=True)

    def on_cancel_order(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        assert s.client_id is not None
        self.deliver(self.gw.engine.cancel(s.client_id, req.arg, now))

    def on_global_cancel(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        self.deliver(self.gw.engine.cancel_all(now))

    def on_open_orders(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        self._open_orders(s, all_clients=False)

    def on_all_open_orders(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        self._open_orders(s, all_clients=True)

    def on_completed_orders(self, s: Session, req: m.SimpleRequest, now: float) -> None:
        """The trading day's completed orders (filled, cancelled, rejected) of every client, oldest first, as a
        gateway answers reqCompletedOrders; orders still working and untransmitted ones are not completed."""
        today = exchange_date(now)
        for o in self.gw.engine.orders():
            if o.is_active or exchange_date(o.updated_at) != today:
                continue
            s.send(m.completed_order(o, self.gw.instruments[o.request.symbol], self.gw.account, version=s.version))
        s.send(m.completed_orders_end())

    def _open_orders(self, s: Session, all_clients: bool) -> None:
        for o in self.gw.engine.orders():
            if not o.is_active or o.status == "PendingSubmit":
                continue
            if not all_clients and o.client_id != s.client_id and s.client_id != 0:
                continue
            inst = self.gw.instruments[o.request.symbol]
            s.send(m.open_order(o, inst, self.gw.account, version=s.version))
            s.send(m.order_status(o))
        s.send(m.open_order_end())

    def on_req_executions(self, s: Session, req: m.ReqExecutions, now: float) -> None:
        since = None
        if req.time.strip():
            try:
                since = m.parse_ib_datetime(req.time, now)
            except ProtocolError as exc:
                s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} {exc}")
                return
        execs = {e.exec_id: e for e in self.gw.engine.executions()}
        for e in execs.values():
            if not _matches(req, e, since):
                continue
            inst = self.gw.instruments[e.symbol]
            s.send(m.exec_details(req.req_id, e, inst, version=s.version))
            s.send(m.commission_report(e, inst.currency))
        s.send(m.exec_details_end(req.req_id))

    # -- events -----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Let the engine fill what the market now allows, and tell the owners."""
        self.deliver(self.gw.engine.advance(now))

    def deliver(self, events: list[Event]) -> None:
        """Turn engine events into messages for the owning client (if it is connected)."""
        touched_account = False
        for ev in events:
            owner = self.gw.owner(ev.client_id if isinstance(ev, OrderRejected) else ev.order.client_id)
            touched_account |= isinstance(ev, OrderFilled)
            if owner is not None:
                self._send_event(owner, ev)
        if touched_account:
            self.account.changed()

    def _send_event(self, owner: Session, ev: Event) -> None:
        account = self.gw.account
        match ev:
            case OrderUpdated(order=o):
                owner.send(m.open_order(o, self.gw.instruments[o.request.symbol], account, version=owner.version))
                owner.send(m.order_status(o))
            case OrderFilled(order=o, execution=e):
                inst = self.gw.instruments[o.request.symbol]
                owner.send(m.exec_details(-1, e, inst, version=owner.version))
                owner.send(m.order_status(o))
                if o.status == "Filled":
                    owner.send(m.open_order(o, inst, account, version=owner.version))
                owner.send(m.commission_report(e, inst.currency))
            case OrderCancelled(order=o):
                owner.send(m.order_status(o))
                owner.error(o.order_id, 202, f"{m.ERROR_TEXT[202]}{ev.reason}")
            case OrderRejected(order_id=oid, code=code, message=text):
                owner.error(oid, code, text)


def _matches(req: m.ReqExecutions, e: Execution, since: float | None) -> bool:
    """Whether execution ``e`` passes reqExecutions' filter (empty fields match everything)."""
    side = MAP_EXEC_SIDE.get(req.side.upper(), "")
    return not (
        (req.client_id and e.client_id != req.client_id)
        or (req.account and e.account != req.account)
        or (since is not None and e.time < since)
        or (req.symbol and e.symbol != req.symbol.upper())
        or (req.sec_type and req.sec_type.upper() != "STK")
        or (req.exchange and req.exchange.upper() not in (e.exchange, "SMART"))
        or (side and e.side != side)
    )
