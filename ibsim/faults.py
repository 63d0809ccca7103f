"""Fault injection and the control knobs: what the control endpoint's POST routes (and the Simulator's methods) do.

Every action runs on the simulator's event loop and takes effect at once; durations are **wall** seconds. The flags
live in :class:`ibsim.gateway.FaultState`, where the API areas consult them: an outage or a broken market-data farm
mutes all streaming, a stall mutes one symbol, queued rejections and lost transmits are taken by the next placeOrder,
delays hold back acknowledgements and fills. A gateway restart keeps what lives "at IB" (transmitted orders,
executions, positions) and loses what lives in the gateway (sessions, untransmitted orders, pacing history), and rolls
``nextValidId`` back on request (LEAN-IB #242).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from ibsim.gateway import Gateway, next_daily_restart

log = logging.getLogger("ibsim")


class Listener(Protocol):
    """The API port, which faults can close and reopen."""

    def stop_listening(self) -> None: ...

    async def resume_listening(self) -> None: ...


class CashBook(Protocol):
    """The account area, which books cash transfers and pushes the new values (:class:`ibsim.account.Account`)."""

    def transfer(self, amount: float, as_pnl: bool = False) -> None: ...


class Faults:
    """Fault actions over the shared state; call them on the event loop only."""

    def __init__(self, gw: Gateway, listener: Listener, cash: CashBook) -> None:
        self.gw = gw
        self.listener = listener
        self.cash = cash

    def summary(self) -> dict[str, Any]:
        """Active faults (the ``faults`` part of ``GET /state``)."""
        f = self.gw.faults
        return {
            "refusing": time.monotonic() < f.refuse_until,
            "outage": f.outage,
            "md_farm_down": f.md_farm_down,
            "hmds_farm_down": f.hmds_farm_down,
            "competing_session": f.competing_session,
            "next_daily_restart": self.gw.next_daily_restart,
            "stalled": sorted(f.stalled),
            "pending_rejections": len(f.rejections),
            "pending_lost_transmits": len(f.lost_transmits),
            "ack_delay": f.ack_delay,
            "fill_delay": f.fill_delay,
            "pacing": self.gw.pacing,
        }

    # -- connections ------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Close every API connection abruptly; returns how many were dropped."""
        live = [s for s in self.gw.sessions if not s.closed]
        for s in live:
            s.close(abort=True)
        return len(live)

    def refuse_connections(self, seconds: float, drop_existing: bool = False) -> None:
        """Stop listening for ``seconds`` (clients see "connection refused")."""
        f = self.gw.faults

        async def reopen() -> None:
            await asyncio.sleep(seconds)
            if f.refuse_until and time.monotonic() >= f.refuse_until - 1e-3:
                await self.listener.resume_listening()
                f.refuse_until = 0.0

        f.refuse_until = time.monotonic() + seconds
        self.listener.stop_listening()
        if drop_existing:
            for s in list(self.gw.sessions):
                s.close(abort=True)
        self.gw.tasks.append(asyncio.ensure_future(reopen()))

    def connectivity_loss(
        self, outage_seconds: float, restored_code: int = 1102, keep_subscriptions: bool = True
    ) -> None:
        """Send 1100, pause market data for ``outage_seconds``, then send 1101/1102.

        With 1101 ("data lost") every market-data and bar subscription is dropped server-side,
        as TWS does; the client must resubscribe. With 1102 subscriptions survive, unless
        ``keep_subscriptions`` is off: the silent death users report, "data maintained" yet nothing flows.
        """
        if restored_code not in (1101, 1102):
            raise ValueError("restored_code must be 1101 or 1102")

        async def restore() -> None:
            await asyncio.sleep(outage_seconds)
            self.gw.faults.outage = False
            for s in self.gw.ready_sessions():
                if restored_code == 1101 or not keep_subscriptions:
                    s.drop_subscriptions()
                s.error(-1, restored_code)

        self.gw.faults.outage = True
        for s in self.gw.ready_sessions():
            s.error(-1, 1100)
        self.gw.tasks.append(asyncio.ensure_future(restore()))

    def restart_gateway(self, downtime_seconds: float = 1.0, rollback: int = 0) -> None:
        """Simulated gateway restart: drop everyone, refuse for ``downtime_seconds``, and roll
        ``nextValidId`` back by ``rollback`` below the last id actually used (LEAN-IB #242).

        Transmitted orders, executions and positions survive: they live at "IB", not in the gateway.
        Untransmitted orders (``transmit=False``, still ``PendingSubmit``) live only in the gateway
        and are lost: a later cancel gets 10147, a later transmit finds no parent.
        """
        gw = self.gw
        # The ids of lost orders were handed out all the same: the rollback counts from them too.
        high = max(gw.engine.max_order_id() + 1, gw.next_order_id)
        gw.next_order_id = max(1, high - rollback)
        gw.pacer.reset()
        gw.engine.new_gateway_session()
        for o in gw.engine.discard_untransmitted():
            log.info(
                "gateway restart: untransmitted order %d of client %d (orderRef %r) lost",
                o.order_id,
                o.client_id,
                o.order_ref,
            )
        self.refuse_connections(downtime_seconds, drop_existing=True)

    # -- market data ------------------------------------------------------------------------------

    def market_data_farm(self, ok: bool, drop_subscriptions: bool = False) -> None:
        """2103 (broken: market data stops) or 2104 (OK: it resumes) to every client. With ``drop_subscriptions``
        the break also kills every quote and real-time bar subscription, so data stays dead after 2104 until the
        client asks again (what users report after a farm reconnect)."""
        self.gw.faults.md_farm_down = not ok
        for s in self.gw.ready_sessions():
            if not ok and drop_subscriptions:
                s.mkt.clear()
                s.rtb.clear()
            s.error(-1, 2104 if ok else 2103)

    def hmds_farm(self, ok: bool) -> None:
        """2105 (broken) or 2106 (OK) to every client. Real-time bars come from the HMDS farm: a break kills every
        real-time bar subscription, which stays dead after 2106 until re-requested (backtrader forum's 2105→2106)."""
        self.gw.faults.hmds_farm_down = not ok
        for s in self.gw.ready_sessions():
            if not ok:
                s.rtb.clear()
            s.error(-1, 2106 if ok else 2105)

    def competing_session(self, active: bool) -> None:
        """A live session of the same username starts (or ends) elsewhere. Starting it ends every market-data and
        real-time bar request with 10197 "No market data during competing live session", and new ones get 10197
        until it ends; its end says nothing: clients find out by asking again."""
        self.gw.faults.competing_session = active
        if not active:
            return
        for s in self.gw.ready_sessions():
            for req_id in [*s.mkt, *s.rtb]:
                s.error(req_id, 10197)
            s.mkt.clear()
            s.rtb.clear()

    def check_daily_restart(self, now: float) -> None:
        """Restart the gateway when the simulated clock passes the configured daily restart time (one restart per
        crossing, however far the clock jumped)."""
        due = self.gw.next_daily_restart
        if due is None or now < due:
            return
        log.info("daily gateway restart (configured at %s)", self.gw.config.daily_restart_time)
        self.gw.next_daily_restart = next_daily_restart(self.gw.config.daily_restart_time, now)
        self.restart_gateway(self.gw.config.daily_restart_downtime)

    def stall(self, symbol: str) -> None:
        """Stale feed: ticks and real-time bars of ``symbol`` stop (the market itself goes on)."""
        self.gw.faults.stalled.add(symbol.upper())

    def resume(self, symbol: str) -> None:
        """End a :meth:`stall`; bars generated meanwhile are not replayed (backfill them)."""
        self.gw.faults.stalled.discard(symbol.upper())

    def set_pacing(self, enabled: bool) -> None:
        """Turn IB historical-data pacing enforcement on or off (either resets the counters)."""
        self.gw.pacing = enabled
        self.gw.pacer.reset()

    def set_live_data_entitled(self, entitled: bool) -> None:
        """Toggle the account's live market-data subscription (affects new requests)."""
        self.gw.live_entitled = entitled

    def release_clock(self) -> None:
        """Let a held simulated clock run (see ``SimConfig.hold_clock``)."""
        self.gw.clock.release()

    def halt_trading(self, halted: bool) -> None:
        """A trading halt (on) or its end (off): orders are still accepted and cancelled, but nothing trades
        while halted, and the halted seconds are never matched afterwards."""
        self.gw.engine.halted = halted

    def advance_clock(self, seconds: float) -> None:
        """Jump simulated time forward (e.g. to the next open); bars in between are generated."""
        self.gw.clock.advance(seconds)

    # -- orders -----------------------------------------------------------------------------------

    def reject_next_order(self, code: int = 201, message: str = "Order rejected - reason:Simulated rejection") -> None:
        """The next placeOrder (any client) is refused with ``code``/``message``."""
        self.gw.faults.rejections.append((code, message))

    def set_delays(self, ack_seconds: float = 0.0, fill_seconds: float = 0.0) -> None:
        """Delay order acknowledgements and/or fills (0 to clear)."""
        self.gw.faults.ack_delay = max(ack_seconds, 0.0)
        self.gw.faults.fill_delay = max(fill_seconds, 0.0)

    def lose_next_transmit(self, restart_seconds: float = 0.0) -> None:
        """The next ``placeOrder`` with ``transmit=True`` (any client) is lost in flight with its
        connection, which drops — e.g. a bracket's last leg, leaving the legs sent before it held
        untransmitted. With ``restart_seconds > 0`` the gateway restarts instead (that downtime,
        no rollback), which loses the held legs too."""
        self.gw.faults.lost_transmits.append(max(restart_seconds, 0.0))

    # -- account ----------------------------------------------------------------------------------

    def adjust_cash(self, amount: float, as_pnl: bool = False) -> None:
        """Move the account's cash by ``amount`` (a deposit, withdrawal, or with ``as_pnl`` a fee or loss counted as
        P&L): NetLiquidation and the funds follow, and every account and P&L subscriber hears of it at once."""
        self.cash.transfer(amount, as_pnl)

    def clear(self) -> None:
        """Undo stalls, pending rejections and lost transmits, delays and farm/outage flags (not refusals)."""
        f = self.gw.faults
        f.stalled.clear()
        f.rejections.clear()
        f.lost_transmits.clear()
        f.ack_delay = f.fill_delay = 0.0
        f.outage = f.md_farm_down = f.hmds_farm_down = f.competing_session = False
