"""The simulator as tests and the CLI use it: build, start (in a thread or on a running loop), inspect, inject faults.

All mutable state (:class:`ibsim.gateway.Gateway`) is owned by one asyncio event loop. Public methods of
:class:`Simulator` may be called from any thread; they hop onto the loop and wait for the answer, so tests can drive a
simulator that runs in a background thread. The API port is :class:`ibsim.server.ApiServer`; the HTTP control port
(:mod:`ibsim.control`) reads the same queries and acts through the same :class:`ibsim.faults.Faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ibsim.config import SimConfig
from ibsim.control import ControlServer
from ibsim.gateway import Gateway
from ibsim.market import Bar
from ibsim.server import ApiServer
from ibstream.sim.ledger import PnL, Position
from ibstream.sim.market_view import Quote
from ibstream.sim.order_values import Execution, OrderSnapshot

log = logging.getLogger("ibsim")
T = TypeVar("T")


class Simulator:
    """IB Gateway simulator speaking the TWS socket protocol (server versions 157 to 178).

    Use ``Simulator(config).start()`` for a background thread (tests), or
    ``await Simulator(config).serve_forever()`` inside an event loop (CLI).
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.gw = Gateway(config or SimConfig())
        self.config = self.gw.config
        self.account = self.gw.account
        self.clock = self.gw.clock
        self.market = self.gw.market
        self.engine = self.gw.engine
        self.server = ApiServer(self.gw)
        self.faults = self.server.faults
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._control: ControlServer | None = None
        self._stopped: asyncio.Event | None = None
        self.control_port: int | None = None
        self.host = self.config.host

    @property
    def port(self) -> int:
        """The bound API port."""
        return self.server.port

    # ============================================================================================
    # lifecycle

    async def start_async(self) -> None:
        """Bind the API and control ports and start the market pump on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self.server.listen(self.config.port)
        if self.config.control_port is not None:
            self._control = ControlServer(self, self.faults)
            self.control_port = await self._control.start(self.config.host, self.config.control_port)
        self.gw.tasks.append(asyncio.create_task(self.server.pump(), name="ibsim-pump"))
        log.info(
            "ibsim listening on %s:%d (control %s), account %s, speed %sx",
            self.host,
            self.port,
            self.control_port,
            self.account,
            self.config.speed,
        )

    async def stop_async(self) -> None:
        """Close every connection and listener; the instance cannot be restarted."""
        for t in self.gw.tasks:
            t.cancel()
        for t in self.gw.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.gw.tasks.clear()
        await self.server.close()
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._stopped is not None:
            self._stopped.set()

    async def serve_forever(self) -> None:
        """Start and run until :meth:`stop` (or cancellation)."""
        await self.start_async()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.stop_async()

    def start(self, timeout: float = 10.0) -> Simulator:
        """Run the simulator in a daemon thread with its own event loop; returns once bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # surface bind errors to the caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                assert self._stopped is not None
                loop.run_until_complete(self._stopped.wait())
            finally:
                loop.run_until_complete(self.stop_async())
                loop.close()

        self._thread = threading.Thread(target=run, name="ibsim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("ibsim did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a simulator started with :meth:`start` (idempotent)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self._stopped is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the loop thread (directly if already there or not running)."""
        loop = self._loop
        if loop is None or not loop.is_running() or self._in_loop_thread():
            return fn()

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout)

    def _in_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    # ============================================================================================
    # queries (thread-safe)

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.clock.now()

    def ground_truth_bars(
        self, symbol: str, start: float | None = None, end: float | None = None, *, extended: bool = False
    ) -> list[Bar]:
        """Every 5-second bar generated for ``symbol`` in ``[start, end)`` (default: all the live series so far);
        ``extended`` adds pre- and post-market bars."""
        sym = symbol.upper()
        return self._call(
            lambda: self.market.bars(
                sym,
                self.market.first_bar_time() if start is None else start,
                self.clock.now() if end is None else min(end, self.clock.now()),
                extended=extended,
            )
        )

    def quote(self, symbol: str, at: float | None = None) -> Quote:
        """Top of book of ``symbol`` now (or at simulated time ``at``)."""
        sym = symbol.upper()
        return self._call(lambda: self.market.quote(sym, self.clock.now() if at is None else at))

    def orders(self) -> list[OrderSnapshot]:
        """Every order ever placed (any client), with status, orderRef and fills."""
        return self._call(self.engine.orders)

    def executions(self) -> list[Execution]:
        """Every execution, oldest first."""
        return self._call(self.engine.executions)

    def positions(self) -> list[Position]:
        """Positions of the account (flat ones included)."""
        return self._call(self.engine.positions)

    def account_values(self) -> dict[str, float]:
        """NetLiquidation, TotalCashValue, BuyingPower, ... marked at the current last price."""
        return self._call(lambda: self.engine.account_values(self.gw.mark))

    def sent_messages(self, client_id: int, msg_id: int | None = None) -> list[tuple[str, ...]]:
        """What ibsim sent to ``client_id`` (all its connections), as encoded text fields."""

        def get() -> list[tuple[str, ...]]:
            rows = list(self.gw.sent.get(client_id, ()))
            return rows if msg_id is None else [r for r in rows if r[0] == str(msg_id)]

        return self._call(get)

    def connected_client_ids(self) -> list[int]:
        """Client ids of live API sessions."""
        return self._call(lambda: sorted(s.client_id for s in self.gw.ready_sessions() if s.client_id is not None))

    @property
    def next_order_id(self) -> int:
        """The id the next ``nextValidId`` will carry."""
        return self.gw.next_order_id

    def state(self) -> dict[str, Any]:
        """JSON-friendly summary (the control endpoint's ``GET /state``)."""

        def get() -> dict[str, Any]:
            return {
                "sim_time": self.clock.now_dt().isoformat(),
                "sim_epoch": self.clock.now(),
                "speed": self.clock.speed,
                "clock_held": self.clock.held,
                "market_open": self.market.in_session(self.clock.now()),
                "account": self.account,
                "clients": [s.client_id for s in self.gw.ready_sessions()],
                "next_order_id": self.gw.next_order_id,
                "faults": self.faults.summary(),
            }

        return self._call(get)

    # ============================================================================================
    # fault injection (thread-safe): see ibsim.faults.Faults for what each does

    def drop_connections(self) -> int:
        """Close every API connection abruptly; returns how many were dropped."""
        return self._call(self.faults.drop_connections)

    def refuse_connections(self, seconds: float, drop_existing: bool = False) -> None:
        """Stop listening for ``seconds`` wall seconds (clients see "connection refused")."""
        self._call(lambda: self.faults.refuse_connections(seconds, drop_existing))

    def connectivity_loss(
        self, outage_seconds: float, restored_code: int = 1102, keep_subscriptions: bool = True
    ) -> None:
        """Send 1100, pause market data for ``outage_seconds`` wall seconds, then send 1101 (data lost) or 1102."""
        self._call(lambda: self.faults.connectivity_loss(outage_seconds, restored_code, keep_subscriptions))

    def market_data_farm(self, ok: bool, drop_subscriptions: bool = False) -> None:
        """2103/2104 to every client; ``drop_subscriptions`` kills the quote and bar subscriptions with the break."""
        self._call(lambda: self.faults.market_data_farm(ok, drop_subscriptions))

    def hmds_farm(self, ok: bool) -> None:
        """2105/2106 to every client; the break kills the real-time bar subscriptions."""
        self._call(lambda: self.faults.hmds_farm(ok))

    def competing_session(self, active: bool) -> None:
        """A competing live session starts (10197 on every market-data request) or ends."""
        self._call(lambda: self.faults.competing_session(active))

    def subscriptions(self, client_id: int) -> dict[str, list[int]]:
        """The request ids of a connected client's live quote (``mkt``) and real-time bar (``rtb``) subscriptions."""

        def get() -> dict[str, list[int]]:
            s = self.gw.owner(client_id)
            return {"mkt": sorted(s.mkt), "rtb": sorted(s.rtb)} if s is not None else {"mkt": [], "rtb": []}

        return self._call(get)

    def stall(self, symbol: str) -> None:
        """Stale feed: ticks and real-time bars of ``symbol`` stop (the market itself goes on)."""
        self._call(lambda: self.faults.stall(symbol))

    def resume(self, symbol: str) -> None:
        """End a :meth:`stall`; bars generated meanwhile are not replayed (backfill them)."""
        self._call(lambda: self.faults.resume(symbol))

    def reject_next_order(self, code: int = 201, message: str = "Order rejected - reason:Simulated rejection") -> None:
        """The next placeOrder (any client) is refused with ``code``/``message``."""
        self._call(lambda: self.faults.reject_next_order(code, message))

    def set_delays(self, ack_seconds: float = 0.0, fill_seconds: float = 0.0) -> None:
        """Delay order acknowledgements and/or fills by wall seconds (0 to clear)."""
        self._call(lambda: self.faults.set_delays(ack_seconds, fill_seconds))

    def set_pacing(self, enabled: bool) -> None:
        """Turn IB historical-data pacing enforcement on or off."""
        self._call(lambda: self.faults.set_pacing(enabled))

    def set_live_data_entitled(self, entitled: bool) -> None:
        """Toggle the account's live market-data subscription (affects new requests)."""
        self._call(lambda: self.faults.set_live_data_entitled(entitled))

    def restart_gateway(self, downtime_seconds: float = 1.0, rollback: int = 0) -> None:
        """Simulated gateway restart: drop everyone, refuse for ``downtime_seconds``, roll ``nextValidId`` back by
        ``rollback``; untransmitted orders are lost (:meth:`ibsim.faults.Faults.restart_gateway`)."""
        self._call(lambda: self.faults.restart_gateway(downtime_seconds, rollback))

    def lose_next_transmit(self, restart_seconds: float = 0.0) -> None:
        """The next ``placeOrder`` with ``transmit=True`` (any client) is lost in flight with its connection; with
        ``restart_seconds > 0`` the gateway restarts instead (:meth:`ibsim.faults.Faults.lose_next_transmit`)."""
        self._call(lambda: self.faults.lose_next_transmit(restart_seconds))

    def advance_clock(self, seconds: float) -> None:
        """Jump simulated time forward (e.g. to the next open); bars in between are generated."""
        self._call(lambda: self.faults.advance_clock(seconds))

    def release_clock(self) -> None:
        """Let a held simulated clock run (``SimConfig.hold_clock``)."""
        self._call(self.faults.release_clock)

    def halt_trading(self, halted: bool = True) -> None:
        """A trading halt: orders are accepted and cancelled, nothing trades until it ends (e.g. to freeze the book
        while a checker reads it)."""
        self._call(lambda: self.faults.halt_trading(halted))

    def adjust_cash(self, amount: float, as_pnl: bool = False) -> None:
        """Move the account's cash by ``amount`` (deposit/withdrawal; ``as_pnl``: a fee or loss counted as P&L)."""
        self._call(lambda: self.faults.adjust_cash(amount, as_pnl))

    def pnl(self) -> PnL:
        """reqPnL's numbers now (daily, unrealized, realized)."""
        return self._call(lambda: self.engine.ledger.pnl(self.gw.mark))

    def clear_faults(self) -> None:
        """Undo stalls, pending rejections and lost transmits, delays and farm/outage flags (not refusals)."""
        self._call(self.faults.clear)
