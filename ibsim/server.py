"""The simulator's I/O: TWS socket sessions, market-data pumps, fault injection.

All mutable state is owned by one asyncio event loop. Public methods of :class:`Simulator` may be
called from any thread; they hop onto the loop and wait for the answer, so tests can drive a
simulator that runs in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ibsim import messages as m
from ibsim.clock import BAR_SECONDS, SimClock, exchange_date, session_for
from ibsim.config import Instrument, SimConfig
from ibsim.market import Bar, MarketGenerator, Quote, aggregate
from ibsim.matching import (
    CommissionSchedule,
    Event,
    Execution,
    MatchingEngine,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderSnapshot,
    OrderUpdated,
    Position,
)
from ibsim.pacing import PACING_TEXT, HistKey, HistoricalPacer
from ibsim.wire import API_PREFIX, Field, FrameDecoder, ProtocolError, encode_field, encode_message
from ibsim.wire import parse_version_range as _parse_version_range

log = logging.getLogger("ibsim")
T = TypeVar("T")

#: Sessions whose unsent output exceeds this are dropped, as TWS drops clients that do not read.
MAX_WRITE_BUFFER = 64 * 1024 * 1024
DELAY_SECONDS = 900  # IB delayed data lags 15 minutes


#: Tick intervals below this keep a fixed schedule (the chaos campaign's 5 ms), where the sleep's overshoot would halve
#: the rate; slower ones sleep after each tick as they always did, keeping the timing the 300x end-to-end tests know.
SCHEDULED_PUMP_BELOW = 0.05


@dataclass
class _MktSub:
    symbol: str
    delayed: bool
    last: dict[int, tuple[float, int] | int | str] = field(default_factory=dict)


def _in_rth(t: float) -> bool:
    """Whether simulated time ``t`` falls in regular trading hours (09:30-16:00 New York, weekdays)."""
    rth = session_for(exchange_date(t), "rth")
    return rth is not None and rth.contains(t)


@dataclass
class _BarSub:
    symbol: str
    next_time: int
    # reqRealTimeBars(useRTH=1): IB sends only bars inside regular trading hours, even where the market trades
    # around the clock (here: --hours 24h).
    rth_only: bool = False


@dataclass
class _HistSub:
    symbol: str
    bar_seconds: int
    format_date: int
    next_time: int
    bucket_start: int


@dataclass
class _Faults:
    refuse_until: float = 0.0  # wall (monotonic)
    outage: bool = False
    md_farm_down: bool = False
    stalled: set[str] = field(default_factory=set)
    rejections: deque[tuple[int, str]] = field(default_factory=deque)
    ack_delay: float = 0.0  # wall seconds
    fill_delay: float = 0.0  # wall seconds
    #: One entry per transmitting placeOrder to lose: the gateway downtime of its restart, or 0 (the connection only).
    lost_transmits: deque[float] = field(default_factory=deque)


class _Session:
    """One API connection."""

    def __init__(self, sim: Simulator, writer: asyncio.StreamWriter, conn_no: int) -> None:
        self.sim = sim
        self.writer = writer
        self.conn_no = conn_no
        self.client_id: int | None = None
        self.version = 0
        self.md_type = 1
        self.md_type_requested = False
        self.mkt: dict[int, _MktSub] = {}
        self.rtb: dict[int, _BarSub] = {}
        self.hist: dict[int, _HistSub] = {}
        self.acct_summary: dict[int, str] = {}
        self.acct_multi: dict[int, str] = {}
        self.acct_updates = False
        self.positions_sub = False
        self.closed = False
        self.peer = str(writer.get_extra_info("peername"))

    @property
    def ready(self) -> bool:
        return self.client_id is not None and not self.closed

    def send(self, fields: list[Field]) -> None:
        if self.closed:
            return
        if self.writer.transport.is_closing():
            # peer went away; the reader task will notice EOF, the pump must not keep writing
            self.closed = True
            return
        frame = encode_message(fields)
        self.writer.write(frame)
        self.sim._record(self, fields)
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("client %s not reading; dropping it", self.client_id)
            self.close(abort=True)

    def error(self, req_id: int, code: int, text: str | None = None) -> None:
        self.send(m.error(req_id, code, text))

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()


class Simulator:
    """IB Gateway simulator speaking the TWS socket protocol (server version 157).

    Use ``Simulator(config).start()`` for a background thread (tests), or
    ``await Simulator(config).serve_forever()`` inside an event loop (CLI).
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        if not self.config.accounts:
            raise ValueError("at least one account is required")
        self.account = self.config.accounts[0]
        self.clock = SimClock(self.config.resolved_start(), self.config.speed)
        self.market = MarketGenerator(self.config)
        self.engine = MatchingEngine(
            self.market,
            self.account,
            con_ids={i.symbol: i.con_id for i in self.config.universe},
            commissions=CommissionSchedule(
                self.config.commission_per_share, self.config.commission_min,
                self.config.commission_max_pct,
            ),
            initial_cash=self.config.initial_cash,
            partial_fill_max=self.config.partial_fill_max,
        )
        self._instruments = {i.symbol: i for i in self.config.universe}
        self._by_conid = {i.con_id: i for i in self.config.universe}
        self._pacer = HistoricalPacer()
        self._faults = _Faults()
        self._pacing = self.config.enforce_pacing
        self._live_entitled = self.config.live_data_entitled
        self._next_order_id = self.config.first_order_id
        self._sessions: list[_Session] = []
        self._conn_counter = 0
        self._sent: dict[int, deque[tuple[str, ...]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._control: Any = None
        self._tasks: list[asyncio.Future[None]] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopped: asyncio.Event | None = None
        self.port = 0
        self.control_port: int | None = None
        self.host = self.config.host

    # ============================================================================================
    # lifecycle

    async def start_async(self) -> None:
        """Bind the API and control ports and start the market pump on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self._listen(self.config.port)
        if self.config.control_port is not None:
            from ibsim.control import ControlServer  # local import: control depends on server

            self._control = ControlServer(self)
            self.control_port = await self._control.start(self.config.host, self.config.control_port)
        self._tasks.append(asyncio.create_task(self._pump(), name="ibsim-pump"))
        log.info("ibsim listening on %s:%d (control %s), account %s, speed %sx",
                 self.host, self.port, self.control_port, self.account, self.config.speed)

    async def stop_async(self) -> None:
        """Close every connection and listener; the instance cannot be restarted."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for s in list(self._sessions):
            s.close(abort=True)
        if self._handlers:
            # Aborted transports end each handler by EOF; cancelling them instead makes asyncio's
            # stream callback log spurious errors.
            await asyncio.wait(list(self._handlers), timeout=2)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
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

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.config.host, port, reuse_address=True, limit=1 << 16
        )
        self.port = self._server.sockets[0].getsockname()[1]

    # ============================================================================================
    # queries (thread-safe)

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.clock.now()

    def ground_truth_bars(self, symbol: str, start: float | None = None, end: float | None = None) -> list[Bar]:
        """Every 5-second bar generated for ``symbol`` in ``[start, end)`` (default: all so far)."""
        sym = symbol.upper()
        return self._call(lambda: self.market.bars(
            sym, self.market.first_bar_time() if start is None else start,
            self.clock.now() if end is None else min(end, self.clock.now())))

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
        return self._call(lambda: self.engine.account_values(self._mark))

    def sent_messages(self, client_id: int, msg_id: int | None = None) -> list[tuple[str, ...]]:
        """What ibsim sent to ``client_id`` (all its connections), as encoded text fields."""
        def get() -> list[tuple[str, ...]]:
            rows = list(self._sent.get(client_id, ()))
            return rows if msg_id is None else [r for r in rows if r[0] == str(msg_id)]
        return self._call(get)

    def connected_client_ids(self) -> list[int]:
        """Client ids of live API sessions."""
        return self._call(lambda: sorted(s.client_id for s in self._sessions if s.ready and s.client_id is not None))

    @property
    def next_order_id(self) -> int:
        """The id the next ``nextValidId`` will carry."""
        return self._next_order_id

    def state(self) -> dict[str, Any]:
        """JSON-friendly summary (the control endpoint's ``GET /state``)."""
        def get() -> dict[str, Any]:
            f = self._faults
            return {
                "sim_time": self.clock.now_dt().isoformat(),
                "sim_epoch": self.clock.now(),
                "speed": self.clock.speed,
                "market_open": self.market.in_session(self.clock.now()),
                "account": self.account,
                "clients": [s.client_id for s in self._sessions if s.ready],
                "next_order_id": self._next_order_id,
                "faults": {
                    "refusing": time.monotonic() < f.refuse_until,
                    "outage": f.outage,
                    "md_farm_down": f.md_farm_down,
                    "stalled": sorted(f.stalled),
                    "pending_rejections": len(f.rejections),
                    "pending_lost_transmits": len(f.lost_transmits),
                    "ack_delay": f.ack_delay,
                    "fill_delay": f.fill_delay,
                    "pacing": self._pacing,
                },
            }
        return self._call(get)

    # ============================================================================================
    # fault injection (thread-safe)

    def drop_connections(self) -> int:
        """Close every API connection abruptly; returns how many were dropped."""
        def do() -> int:
            live = [s for s in self._sessions if not s.closed]
            for s in live:
                s.close(abort=True)
            return len(live)
        return self._call(do)

    def refuse_connections(self, seconds: float, drop_existing: bool = False) -> None:
        """Stop listening for ``seconds`` wall seconds (clients see "connection refused")."""
        async def reopen() -> None:
            await asyncio.sleep(seconds)
            if self._faults.refuse_until and time.monotonic() >= self._faults.refuse_until - 1e-3:
                await self._listen(self.port)
                self._faults.refuse_until = 0.0

        def do() -> None:
            self._faults.refuse_until = time.monotonic() + seconds
            if self._server is not None:
                self._server.close()
                self._server = None
            if drop_existing:
                for s in list(self._sessions):
                    s.close(abort=True)
            self._tasks.append(asyncio.ensure_future(reopen()))
        self._call(do)

    def connectivity_loss(self, outage_seconds: float, restored_code: int = 1102) -> None:
        """Send 1100, pause market data for ``outage_seconds`` wall seconds, then send 1101/1102.

        With 1101 ("data lost") every market-data and bar subscription is dropped server-side,
        as TWS does; the client must resubscribe. With 1102 subscriptions survive.
        """
        if restored_code not in (1101, 1102):
            raise ValueError("restored_code must be 1101 or 1102")

        async def restore() -> None:
            await asyncio.sleep(outage_seconds)
            self._faults.outage = False
            for s in self._ready_sessions():
                if restored_code == 1101:
                    s.mkt.clear()
                    s.rtb.clear()
                    s.hist.clear()
                s.error(-1, restored_code)

        def do() -> None:
            self._faults.outage = True
            for s in self._ready_sessions():
                s.error(-1, 1100)
            self._tasks.append(asyncio.ensure_future(restore()))
        self._call(do)

    def market_data_farm(self, ok: bool) -> None:
        """2103 (broken: market data stops) or 2104 (OK: it resumes) to every client."""
        def do() -> None:
            self._faults.md_farm_down = not ok
            for s in self._ready_sessions():
                s.error(-1, 2104 if ok else 2103)
        self._call(do)

    def stall(self, symbol: str) -> None:
        """Stale feed: ticks and real-time bars of ``symbol`` stop (the market itself goes on)."""
        sym = symbol.upper()
        self._call(lambda: self._faults.stalled.add(sym))

    def resume(self, symbol: str) -> None:
        """End a :meth:`stall`; bars generated meanwhile are not replayed (backfill them)."""
        sym = symbol.upper()
        self._call(lambda: self._faults.stalled.discard(sym))

    def reject_next_order(self, code: int = 201, message: str = "Order rejected - reason:Simulated rejection") -> None:
        """The next placeOrder (any client) is refused with ``code``/``message``."""
        self._call(lambda: self._faults.rejections.append((code, message)))

    def set_delays(self, ack_seconds: float = 0.0, fill_seconds: float = 0.0) -> None:
        """Delay order acknowledgements and/or fills by wall seconds (0 to clear)."""
        def do() -> None:
            self._faults.ack_delay = max(ack_seconds, 0.0)
            self._faults.fill_delay = max(fill_seconds, 0.0)
        self._call(do)

    def set_pacing(self, enabled: bool) -> None:
        """Turn IB historical-data pacing enforcement on or off."""
        def do() -> None:
            self._pacing = enabled
            self._pacer.reset()
        self._call(do)

    def set_live_data_entitled(self, entitled: bool) -> None:
        """Toggle the account's live market-data subscription (affects new requests)."""
        def do() -> None:
            self._live_entitled = entitled
        self._call(do)

    def restart_gateway(self, downtime_seconds: float = 1.0, rollback: int = 0) -> None:
        """Simulated gateway restart: drop everyone, refuse for ``downtime_seconds``, and roll
        ``nextValidId`` back by ``rollback`` below the last id actually used (LEAN-IB #242).

        Transmitted orders, executions and positions survive: they live at "IB", not in the gateway.
        Untransmitted orders (``transmit=False``, still ``PendingSubmit``) live only in the gateway
        and are lost: a later cancel gets 10147, a later transmit finds no parent.
        """
        def do() -> None:
            # The ids of lost orders were handed out all the same: the rollback counts from them too.
            high = max(self.engine.max_order_id() + 1, self._next_order_id)
            self._next_order_id = max(1, high - rollback)
            self._pacer.reset()
            for o in self.engine.discard_untransmitted():
                log.info(
                    "gateway restart: untransmitted order %d of client %d (orderRef %r) lost",
                    o.order_id, o.client_id, o.order_ref,
                )  # fmt: skip
        self._call(do)
        self.refuse_connections(downtime_seconds, drop_existing=True)

    def lose_next_transmit(self, restart_seconds: float = 0.0) -> None:
        """The next ``placeOrder`` with ``transmit=True`` (any client) is lost in flight with its
        connection, which drops — e.g. a bracket's last leg, leaving the legs sent before it held
        untransmitted. With ``restart_seconds > 0`` the gateway restarts instead (that downtime,
        no rollback), which loses the held legs too."""
        self._call(lambda: self._faults.lost_transmits.append(max(restart_seconds, 0.0)))

    def advance_clock(self, seconds: float) -> None:
        """Jump simulated time forward (e.g. to the next open); bars in between are generated."""
        self._call(lambda: self.clock.advance(seconds))

    def clear_faults(self) -> None:
        """Undo stalls, pending rejections and lost transmits, delays and farm/outage flags (not refusals)."""
        def do() -> None:
            f = self._faults
            f.stalled.clear()
            f.rejections.clear()
            f.lost_transmits.clear()
            f.ack_delay = f.fill_delay = 0.0
            f.outage = f.md_farm_down = False
        self._call(do)

    # ============================================================================================
    # connection handling

    def _ready_sessions(self) -> list[_Session]:
        return [s for s in self._sessions if s.ready]

    def _record(self, s: _Session, fields: list[Field]) -> None:
        if s.client_id is None:
            return
        log_ = self._sent.get(s.client_id)
        if log_ is None:
            log_ = self._sent[s.client_id] = deque(maxlen=200_000)
        log_.append(tuple(encode_field(f) for f in fields))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conn_counter += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        s = _Session(self, writer, self._conn_counter)
        self._sessions.append(s)
        try:
            await self._serve(s, reader)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must cost one connection, never the simulator
            log.exception("session %s crashed", s.peer)
        finally:
            s.close()
            self._sessions.remove(s)
            if task is not None:
                self._handlers.discard(task)
            log.info("client %s disconnected", s.client_id)

    async def _serve(self, s: _Session, reader: asyncio.StreamReader) -> None:
        prefix = await asyncio.wait_for(reader.readexactly(4), 30)
        if prefix != API_PREFIX:
            log.info("connection from %s without API prefix; closing", s.peer)
            return
        decoder = FrameDecoder(self.config.max_frame_bytes)
        frames: list[bytes] = []
        while not frames:
            data = await asyncio.wait_for(reader.read(4096), 30)
            if not data:
                return
            try:
                frames = decoder.feed(data)
            except ProtocolError:
                return
        try:
            lo, hi = _parse_version_range(frames.pop(0).decode("latin-1").rstrip("\0"))
        except ProtocolError:
            return
        version = min(hi, self.config.server_version)
        if version < lo or version < 100:
            log.info("client wants v%d..%d, ibsim speaks up to %d; closing", lo, hi, version)
            return
        s.version = version
        # The hello is not recorded: it is not a message with an id.
        s.writer.write(encode_message(m.server_hello(version, self.clock.now())))
        pending = frames
        while True:
            for payload in pending:
                fields = payload.decode("latin-1").split("\0")
                if fields and fields[-1] == "":
                    fields.pop()
                self._dispatch(s, fields)
                if s.closed:
                    return
            await s.writer.drain()
            data = await reader.read(1 << 16)
            if not data:
                return
            try:
                pending = decoder.feed(data)
            except ProtocolError as exc:
                log.info("client %s: %s; closing", s.client_id, exc)
                s.error(-1, 320, f"{m.ERROR_TEXT[320]} {exc}")
                await asyncio.sleep(0)
                return

    def _dispatch(self, s: _Session, fields: list[str]) -> None:
        try:
            req = m.parse_request(fields)
        except ProtocolError as exc:
            s.error(m.request_id_of(fields), 320, f"{m.ERROR_TEXT[320]} {exc}")
            return
        if isinstance(req, m.StartApi):
            self._on_start_api(s, req)
            return
        if not s.ready:
            # TWS ignores requests before START_API; answering would confuse the handshake.
            return
        try:
            self._handle_request(s, req)
        except ProtocolError as exc:
            s.error(m.request_id_of(fields), 321, f"{m.ERROR_TEXT[321]} {exc}")
        except Exception as exc:
            log.exception("request %s failed", fields[:3])
            s.error(m.request_id_of(fields), 322, f"{m.ERROR_TEXT[322]} {type(exc).__name__}")

    def _on_start_api(self, s: _Session, req: m.StartApi) -> None:
        if s.client_id is not None:
            return
        if any(o.ready and o.client_id == req.client_id for o in self._sessions):
            s.send(m.error(-1, 326))
            s.close()
            return
        if len(self._ready_sessions()) >= self.config.max_clients:
            text = f"Couldn't connect to TWS. Maximum of {self.config.max_clients} API clients reached."
            s.send(m.error(-1, 502, text))
            s.close()
            return
        s.client_id = req.client_id
        s.send(m.managed_accounts(self.config.accounts))
        s.send(m.next_valid_id(self._next_order_id))
        for code, text in self.config.farm_notices:
            s.error(-1, code, text)
        log.info("client %d connected from %s (v%d)", req.client_id, s.peer, s.version)

    # ============================================================================================
    # requests

    def _handle_request(self, s: _Session, req: m.Request) -> None:
        now = self.clock.now()
        match req:
            case m.SimpleRequest(msg_id=m.Out.REQ_CURRENT_TIME):
                s.send(m.current_time(now))
            case m.SimpleRequest(msg_id=m.Out.REQ_IDS):
                s.send(m.next_valid_id(self._next_order_id))
            case m.SimpleRequest(msg_id=m.Out.REQ_MANAGED_ACCTS):
                s.send(m.managed_accounts(self.config.accounts))
            case m.ReqContractDetails():
                self._contract_details(s, req)
            case m.SimpleRequest(msg_id=m.Out.REQ_MARKET_DATA_TYPE, arg=kind):
                s.md_type, s.md_type_requested = kind, True
            case m.ReqMktData():
                self._req_mkt_data(s, req, now)
            case m.SimpleRequest(msg_id=m.Out.CANCEL_MKT_DATA, arg=req_id):
                s.mkt.pop(req_id, None)
            case m.ReqRealTimeBars():
                self._req_rt_bars(s, req, now)
            case m.SimpleRequest(msg_id=m.Out.CANCEL_REAL_TIME_BARS, arg=req_id):
                s.rtb.pop(req_id, None)
            case m.ReqHistoricalData():
                self._req_historical(s, req, now)
            case m.SimpleRequest(msg_id=m.Out.CANCEL_HISTORICAL_DATA, arg=req_id):
                s.hist.pop(req_id, None)
            case m.ReqHeadTimestamp():
                inst = self._resolve(req.contract)
                if inst is None:
                    s.error(req.req_id, 200)
                else:
                    s.send(m.head_timestamp(req.req_id, self.market.first_bar_time(), req.format_date))
            case m.PlaceOrder():
                self._place_order(s, req, now)
            case m.SimpleRequest(msg_id=m.Out.CANCEL_ORDER, arg=order_id):
                assert s.client_id is not None
                self._deliver(self.engine.cancel(s.client_id, order_id, now))
            case m.SimpleRequest(msg_id=m.Out.REQ_GLOBAL_CANCEL):
                self._deliver(self.engine.cancel_all(now))
            case m.SimpleRequest(msg_id=m.Out.REQ_OPEN_ORDERS):
                self._open_orders(s, all_clients=False)
            case m.SimpleRequest(msg_id=m.Out.REQ_ALL_OPEN_ORDERS):
                self._open_orders(s, all_clients=True)
            case m.SimpleRequest(msg_id=m.Out.REQ_COMPLETED_ORDERS):
                s.send(m.completed_orders_end())
            case m.ReqExecutions():
                self._req_executions(s, req, now)
            case m.SimpleRequest(msg_id=m.Out.REQ_POSITIONS):
                s.positions_sub = True
                self._send_positions(s)
                s.send(m.position_end())
            case m.SimpleRequest(msg_id=m.Out.CANCEL_POSITIONS):
                s.positions_sub = False
            case m.ReqAccountSummary():
                s.acct_summary[req.req_id] = req.tags
                self._send_account_summary(s, req.req_id, req.tags)
            case m.SimpleRequest(msg_id=m.Out.CANCEL_ACCOUNT_SUMMARY, arg=req_id):
                s.acct_summary.pop(req_id, None)
            case m.ReqAccountUpdates():
                s.acct_updates = req.subscribe
                if req.subscribe:
                    self._send_account_updates(s, now)
            case m.ReqAccountUpdatesMulti():
                s.acct_multi[req.req_id] = req.account
                self._send_account_multi(s, req.req_id)
            case m.SimpleRequest(msg_id=m.Out.CANCEL_ACCOUNT_UPDATES_MULTI, arg=req_id):
                s.acct_multi.pop(req_id, None)
            case m.SimpleRequest():
                pass  # setServerLogLevel, reqAutoOpenOrders, cancelHeadTimestamp: nothing to say
            case m.UnknownRequest(msg_id=msg_id):
                s.error(-1, 321, f"{m.ERROR_TEXT[321]} Unsupported message id {msg_id}")

    def _resolve(self, c: m.ContractSpec) -> Instrument | None:
        if c.con_id:
            inst = self._by_conid.get(c.con_id)
            if inst is None or (c.symbol and c.symbol.upper() != inst.symbol):
                return None
            return inst
        inst = self._instruments.get(c.symbol.upper() or c.local_symbol.upper())
        if inst is None:
            return None
        if c.sec_type and c.sec_type.upper() != inst.sec_type:
            return None
        if c.currency and c.currency.upper() != inst.currency:
            return None
        venues = {"SMART", inst.primary_exchange, "ISLAND" if inst.primary_exchange == "NASDAQ" else "SMART"}
        if c.exchange and c.exchange.upper() not in venues:
            return None
        return inst

    def _contract_details(self, s: _Session, req: m.ReqContractDetails) -> None:
        inst = self._resolve(req.contract)
        if inst is None:
            s.error(req.req_id, 200)
            return
        today = exchange_date(self.clock.now())
        days = [today + dt.timedelta(days=k) for k in range(7)]
        days = [d for d in days if session_for(d, "rth") is not None][:5]
        s.send(m.contract_data(req.req_id, inst, days))
        s.send(m.contract_data_end(req.req_id))

    # -- market data ------------------------------------------------------------------------------

    def _req_mkt_data(self, s: _Session, req: m.ReqMktData, now: float) -> None:
        inst = self._resolve(req.contract)
        if inst is None:
            s.error(req.req_id, 200)
            return
        delayed = False
        if not self._live_entitled:
            if s.md_type in (3, 4):
                delayed = True
                s.error(req.req_id, 10167)
            else:
                s.error(req.req_id, 354)
                return
        if s.md_type_requested or delayed:
            kind = 3 if delayed else (1 if self.market.in_session(now) or s.md_type == 1 else 2)
            s.send(m.market_data_type(req.req_id, kind))
        sub = _MktSub(inst.symbol, delayed)
        self._push_quote(s, req.req_id, sub, now, initial=True)
        if req.snapshot or req.regulatory_snapshot:
            s.send([57, 1, req.req_id])  # tickSnapshotEnd
            return
        s.mkt[req.req_id] = sub

    def _push_quote(self, s: _Session, req_id: int, sub: _MktSub, now: float, initial: bool = False) -> None:
        t = now - DELAY_SECONDS if sub.delayed else now
        q = self.market.quote(sub.symbol, t)
        if not initial and not q.in_session and sub.last.get(-1) == q.time:
            return
        def tick(kind: m.Tick) -> m.Tick:
            return m.MAP_DELAYED_TICK.get(kind, kind) if sub.delayed else kind

        last = sub.last
        if initial:
            close = self._previous_close(sub.symbol, t)
            if close is not None:
                s.send(m.tick_price(req_id, tick(m.Tick.CLOSE), close, 0))
        if last.get(m.Tick.BID) != (q.bid, q.bid_size):
            s.send(m.tick_price(req_id, tick(m.Tick.BID), q.bid, q.bid_size, 1))
            last[m.Tick.BID] = (q.bid, q.bid_size)
        if last.get(m.Tick.ASK) != (q.ask, q.ask_size):
            s.send(m.tick_price(req_id, tick(m.Tick.ASK), q.ask, q.ask_size, 1))
            last[m.Tick.ASK] = (q.ask, q.ask_size)
        if last.get(-1) != q.time:
            s.send(m.tick_price(req_id, tick(m.Tick.LAST), q.last, q.last_size))
            s.send(m.tick_size(req_id, tick(m.Tick.VOLUME), q.volume // 100))
            s.send(m.tick_string(req_id, tick(m.Tick.LAST_TIMESTAMP), str(q.time)))
            last[-1] = q.time

    def _previous_close(self, symbol: str, t: float) -> float | None:
        first = self.market.first_bar_time()
        day = exchange_date(t)
        sess = session_for(day, self.config.trading_hours)
        cutoff = sess.open if sess is not None and sess.open <= t else t
        if cutoff <= first:
            return None
        return self.market.quote(symbol, cutoff - 1).last

    def _req_rt_bars(self, s: _Session, req: m.ReqRealTimeBars, now: float) -> None:
        inst = self._resolve(req.contract)
        if inst is None:
            s.error(req.req_id, 200)
            return
        if req.bar_size != BAR_SECONDS:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} Invalid bar size {req.bar_size}: only 5 second bars")
            return
        s.rtb[req.req_id] = _BarSub(inst.symbol, int(now) // BAR_SECONDS * BAR_SECONDS, req.use_rth)

    def _req_historical(self, s: _Session, req: m.ReqHistoricalData, now: float) -> None:
        inst = self._resolve(req.contract)
        if inst is None:
            s.error(req.req_id, 200)
            return
        bar_seconds = m.MAP_BAR_SIZE.get(req.bar_size.strip())
        if bar_seconds is None:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} Historical data bar size setting is invalid.")
            return
        try:
            n, unit = m.duration_seconds(req.duration)
            end = min(m.parse_ib_datetime(req.end_date_time, now), now)
        except ProtocolError as exc:
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} {exc}")
            return
        if req.keep_up_to_date and req.end_date_time.strip():
            s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} End date not supported with live updates")
            return
        if self._pacing:
            key = HistKey(inst.con_id, req.contract.exchange, req.what_to_show, req.end_date_time,
                          req.bar_size, req.duration, req.use_rth)
            violation = self._pacer.check(key, bar_seconds, time.monotonic())
            if violation is not None:
                log.info("pacing violation for client %s: %s", s.client_id, violation)
                s.error(req.req_id, 162, PACING_TEXT)
                return
        start = self._sessions_back(end, n) if unit == "D" else end - n * m.MAP_DURATION_UNIT[unit]
        if bar_seconds < 86_400:
            # IB returns whole bars: the first one is the bucket containing the start
            start = start // bar_seconds * bar_seconds
        five = self.market.bars(inst.symbol, max(start, self.market.first_bar_time()), end)
        origin = 0
        if bar_seconds >= 86_400 and five:
            origin = session_for(exchange_date(five[0].time), self.config.trading_hours).open  # type: ignore[union-attr]
            bars = _daily(five, self.config.trading_hours)
        else:
            bars = aggregate(five, bar_seconds, origin)
        if not bars:
            s.error(req.req_id, 162, f"{m.ERROR_TEXT[162]}HMDS query returned no data: "
                                     f"{inst.symbol}@SMART {req.what_to_show.title()}")
            return
        s.send(m.historical_data(req.req_id, start, end, bars, bar_seconds, req.format_date))
        if req.keep_up_to_date:
            nxt = five[-1].time + BAR_SECONDS if five else int(end) // BAR_SECONDS * BAR_SECONDS
            s.hist[req.req_id] = _HistSub(inst.symbol, bar_seconds, req.format_date, nxt, bars[-1].time)

    def _sessions_back(self, end: float, n: int) -> float:
        """Open of the n-th most recent session starting before ``end`` ("N D" = N trading days)."""
        day = exchange_date(end)
        found = 0
        start = end
        for _ in range(n * 7 + 14):
            sess = session_for(day, self.config.trading_hours)
            if sess is not None and sess.open < end:
                found += 1
                start = sess.open
                if found == n:
                    break
            day -= dt.timedelta(days=1)
        return start

    # -- orders -----------------------------------------------------------------------------------

    def _place_order(self, s: _Session, req: m.PlaceOrder, now: float) -> None:
        assert s.client_id is not None
        if req.transmit and self._faults.lost_transmits:
            restart_seconds = self._faults.lost_transmits.popleft()
            log.info(
                "fault: placeOrder %d of client %d lost in flight; %s",
                req.order_id, s.client_id,
                f"gateway restarts for {restart_seconds:g} s" if restart_seconds else "connection dropped",
            )  # fmt: skip
            if restart_seconds:
                self.restart_gateway(restart_seconds)
            else:
                s.close(abort=True)
            return
        inst = self._resolve(req.contract)
        order_req = OrderRequest(
            order_id=req.order_id, client_id=s.client_id,
            con_id=inst.con_id if inst else req.contract.con_id,
            symbol=inst.symbol if inst else req.contract.symbol.upper(),
            action=req.action, quantity=req.quantity, order_type=req.order_type,
            lmt_price=req.lmt_price, aux_price=req.aux_price, tif=req.tif or "DAY",
            oca_group=req.oca_group, account=req.account or self.account, order_ref=req.order_ref,
            transmit=req.transmit, parent_id=req.parent_id, outside_rth=req.outside_rth,
        )
        if req.order_id >= self._next_order_id:
            self._next_order_id = req.order_id + 1
        if inst is None:
            s.error(req.order_id, 200)
            return
        if req.action not in ("BUY", "SELL"):
            s.error(req.order_id, 321, f"{m.ERROR_TEXT[321]} Invalid action {req.action!r}")
            return
        if req.account and req.account not in self.config.accounts:
            s.error(req.order_id, 321, f"{m.ERROR_TEXT[321]} Invalid account {req.account}")
            return
        if self._faults.rejections and self.engine.order(s.client_id, req.order_id) is None:
            code, text = self._faults.rejections.popleft()
            events: list[Event] = [self.engine.record_rejection(order_req, now, code, text)]
        else:
            events = self.engine.place(order_req, now, self.clock.wall_to_sim(self._faults.fill_delay))
        if self._faults.ack_delay > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(self._faults.ack_delay, self._deliver, events)
        else:
            self._deliver(events)

    def _open_orders(self, s: _Session, all_clients: bool) -> None:
        for o in self.engine.orders():
            if not o.is_active or o.status == "PendingSubmit":
                continue
            if not all_clients and o.client_id != s.client_id and s.client_id != 0:
                continue
            inst = self._instruments[o.request.symbol]
            s.send(m.open_order(o, inst, self.account))
            s.send(m.order_status(o))
        s.send(m.open_order_end())

    def _req_executions(self, s: _Session, req: m.ReqExecutions, now: float) -> None:
        since = None
        if req.time.strip():
            try:
                since = m.parse_ib_datetime(req.time, now)
            except ProtocolError as exc:
                s.error(req.req_id, 321, f"{m.ERROR_TEXT[321]} {exc}")
                return
        side = {"BUY": "BOT", "SELL": "SLD", "BOT": "BOT", "SLD": "SLD"}.get(req.side.upper(), "")
        execs = {e.exec_id: e for e in self.engine.executions()}
        for e in execs.values():
            if req.client_id and e.client_id != req.client_id:
                continue
            if req.account and e.account != req.account:
                continue
            if since is not None and e.time < since:
                continue
            if req.symbol and e.symbol != req.symbol.upper():
                continue
            if req.sec_type and req.sec_type.upper() != "STK":
                continue
            if req.exchange and req.exchange.upper() not in (e.exchange, "SMART"):
                continue
            if side and e.side != side:
                continue
            inst = self._instruments[e.symbol]
            s.send(m.exec_details(req.req_id, e, inst))
            s.send(m.commission_report(e, inst.currency))
        s.send(m.exec_details_end(req.req_id))

    def _deliver(self, events: list[Event]) -> None:
        """Turn engine events into messages for the owning client (if it is connected)."""
        touched_account = False
        for ev in events:
            owner = self._owner(self._event_client(ev))
            match ev:
                case OrderUpdated(order=o):
                    if owner:
                        owner.send(m.open_order(o, self._instruments[o.request.symbol], self.account))
                        owner.send(m.order_status(o))
                case OrderFilled(order=o, execution=e):
                    touched_account = True
                    if owner:
                        inst = self._instruments[o.request.symbol]
                        owner.send(m.exec_details(-1, e, inst))
                        owner.send(m.order_status(o))
                        if o.status == "Filled":
                            owner.send(m.open_order(o, inst, self.account))
                        owner.send(m.commission_report(e, inst.currency))
                case OrderCancelled(order=o):
                    if owner:
                        owner.send(m.order_status(o))
                        owner.error(o.order_id, 202, f"{m.ERROR_TEXT[202]}{ev.reason}")
                case OrderRejected(order_id=oid, code=code, message=text):
                    if owner:
                        owner.error(oid, code, text)
        if touched_account:
            self._account_changed()

    @staticmethod
    def _event_client(ev: Event) -> int:
        if isinstance(ev, OrderRejected):
            return ev.client_id
        return ev.order.client_id

    def _owner(self, client_id: int) -> _Session | None:
        return next((s for s in self._sessions if s.ready and s.client_id == client_id), None)

    # -- account ----------------------------------------------------------------------------------

    def _mark(self, symbol: str) -> float:
        return self.market.quote(symbol, self.clock.now()).last

    def _send_positions(self, s: _Session) -> None:
        for p in self.engine.positions():
            s.send(m.position(self.account, self._instruments[p.symbol], p.quantity, p.avg_cost))

    def _account_tags(self) -> list[tuple[str, str, str]]:
        values = self.engine.account_values(self._mark)
        rows = [("AccountType", "INDIVIDUAL", "")]
        rows += [(k, f"{v:.2f}" if k != "Cushion" else f"{v:.6f}", "USD") for k, v in values.items()]
        return rows

    def _send_account_summary(self, s: _Session, req_id: int, tags: str) -> None:
        wanted = {t.strip() for t in tags.split(",") if t.strip()}
        everything = not wanted or "All" in wanted
        for tag, value, cur in self._account_tags():
            if everything or tag in wanted:
                for acct in self.config.accounts:
                    s.send(m.account_summary(req_id, acct, tag, value, cur))
        s.send(m.account_summary_end(req_id))

    def _send_account_updates(self, s: _Session, now: float) -> None:
        s.send(m.account_value("AccountCode", self.account, "", self.account))
        for tag, value, cur in self._account_tags():
            s.send(m.account_value(tag, value, cur, self.account))
        s.send(m.account_value("Currency", "USD", "USD", self.account))
        for p in self.engine.positions():
            inst = self._instruments[p.symbol]
            s.send(m.portfolio_value(inst, p.quantity, self._mark(p.symbol), p.avg_cost, 0.0, self.account))
        s.send(m.account_update_time(now))
        s.send(m.account_download_end(self.account))

    def _send_account_multi(self, s: _Session, req_id: int) -> None:
        for tag, value, cur in self._account_tags():
            s.send(m.account_update_multi(req_id, self.account, "", tag, value, cur))
        s.send(m.account_update_multi_end(req_id))

    def _account_changed(self) -> None:
        now = self.clock.now()
        for s in self._ready_sessions():
            if s.positions_sub:
                self._send_positions(s)
            for req_id, tags in s.acct_summary.items():
                self._send_account_summary(s, req_id, tags)
            if s.acct_updates:
                self._send_account_updates(s, now)

    # ============================================================================================
    # the pump: matching and streaming

    async def _pump(self) -> None:
        interval = max(self.config.tick_interval, 0.0)
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                self._pump_once()
            except Exception:  # keep streaming whatever one bad iteration did
                log.exception("pump iteration failed")
            if interval >= SCHEDULED_PUMP_BELOW:
                await asyncio.sleep(interval)
                continue
            # At high tick rates ticks keep to their schedule: the work and the sleep's overshoot (a few ms on a busy
            # machine) would otherwise halve the rate. One that fell far behind restarts the schedule, no burst.
            due += interval
            delay = due - loop.time()
            if delay < -10 * interval:
                due, delay = loop.time(), 0.0
            await asyncio.sleep(max(delay, 0.0))

    def _pump_once(self) -> None:
        now = self.clock.now()
        self._deliver(self.engine.advance(now))
        f = self._faults
        muted = f.outage or f.md_farm_down
        for s in self._ready_sessions():
            for req_id, sub in list(s.mkt.items()):
                if muted or sub.symbol in f.stalled:
                    continue
                self._push_quote(s, req_id, sub, now)
            for req_id, bsub in list(s.rtb.items()):
                bars = self.market.bars(bsub.symbol, bsub.next_time, now)
                if not bars:
                    continue
                bsub.next_time = bars[-1].time + BAR_SECONDS
                if muted or bsub.symbol in f.stalled:
                    continue  # the feed is dead: those bars are gone for this subscriber
                for b in bars:
                    if bsub.rth_only and not _in_rth(b.time):
                        continue
                    s.send(m.realtime_bar(req_id, b))
            for req_id, hsub in list(s.hist.items()):
                self._push_hist_update(s, req_id, hsub, now, muted or hsub.symbol in f.stalled)

    def _push_hist_update(self, s: _Session, req_id: int, h: _HistSub, now: float, muted: bool) -> None:
        new = self.market.bars(h.symbol, h.next_time, now)
        if not new:
            return
        h.next_time = new[-1].time + BAR_SECONDS
        if muted:
            return
        width = h.bar_seconds
        bucket = new[-1].time // width * width if width < 86_400 else h.bucket_start
        bucket = max(bucket, h.bucket_start)
        current = self.market.bars(h.symbol, bucket, h.next_time)
        if not current:
            return
        merged = aggregate(current, max(width, BAR_SECONDS), bucket if width >= 86_400 else 0)[-1]
        h.bucket_start = merged.time
        s.send(m.historical_data_update(req_id, merged, width, h.format_date))


def _daily(five: list[Bar], trading_hours: str) -> list[Bar]:
    """One bar per session, dated by the session's day."""
    out: list[Bar] = []
    by_day: dict[dt.date, list[Bar]] = {}
    for b in five:
        by_day.setdefault(exchange_date(b.time), []).append(b)
    for day, bars in by_day.items():
        sess = session_for(day, trading_hours)
        origin = sess.open if sess else bars[0].time
        out += aggregate(bars, 10**9, origin)
    return out
