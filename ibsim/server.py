"""The TWS API server: the listener, sessions, request dispatch, and the market pump.

A connection: the 4-byte ``API\\0`` prefix, then the client's version range; the server answers with its version
(at most ``config.server_version``, at least 100, or it closes) and connection time. Requests before START_API are
ignored, as TWS does; START_API is refused with 326 for a client id already connected and with 502 past
``config.max_clients``, and otherwise answered with managedAccounts, nextValidId and the farm notices. Each request
then goes by message id to its API area's handler (:attr:`ApiServer.routes`): market data, history, orders, account;
a request ibsim does not implement gets 321 on its own request id (so the caller fails at once instead of waiting),
and the lists it has nothing in are answered empty; an id that parses but has no handler (setServerLogLevel,
reqAutoOpenOrders, cancelHeadTimestamp: nothing to answer) is accepted silently. A request that fails to parse gets
320, one that fails validation 321, one that crashes its handler 322; a framing error ends the connection after 320,
and a crash in a session costs that connection only. Each pump tick advances the matching engine (fills go to their
owners), then streams every ready session's subscriptions.

Everything here runs on the simulator's event loop (:mod:`ibsim.simulator` hops there for other threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ibsim import messages as m
from ibsim.account import Account
from ibsim.faults import Faults
from ibsim.gateway import Gateway
from ibsim.history import History
from ibsim.market_data import MarketData
from ibsim.orders import Orders
from ibsim.session import Session
from ibsim.wire import API_PREFIX, Field, FrameDecoder, ProtocolError, encode_message
from ibsim.wire import parse_version_range as _parse_version_range

log = logging.getLogger("ibsim")

#: Requests answered with an empty list: request message id -> the answer (ibapi's IN ids: familyCodes 78,
#: mktDepthExchanges 80, newsProviders 85, softDollarTiers 77 with its request id).
EMPTY_ANSWERS: dict[int, Callable[[int], list[Field]]] = {
    80: lambda req_id: [78, 0],  # reqFamilyCodes
    82: lambda req_id: [80, 0],  # reqMktDepthExchanges
    85: lambda req_id: [85, 0],  # reqNewsProviders
    79: lambda req_id: [77, req_id, 0],  # reqSoftDollarTiers
}

#: Tick intervals below this keep a fixed schedule (the chaos campaign's 5 ms), where the sleep's overshoot would halve
#: the rate; slower ones sleep after each tick as they always did, keeping the timing the 300x end-to-end tests know.
SCHEDULED_PUMP_BELOW = 0.05

#: A request handler: the session, the parsed request (the type its message id parses to), simulated now.
Handler = Callable[[Session, Any, float], None]


class ApiServer:
    """The API port and its sessions; owns the API areas and the fault actions (which close and reopen the port)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.config = gw.config
        self.accounts = Account(gw)
        self.faults = Faults(gw, self, self.accounts)
        self.market_data = MarketData(gw)
        self.history = History(gw)
        self.orders = Orders(gw, self.accounts, self.faults)
        self.routes = self._routes()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._conn_counter = 0

    def _routes(self) -> dict[int, Handler]:
        """Message id -> handler. Ids that parse but are missing here are accepted silently."""
        out, md, hist, orders, acct = m.Out, self.market_data, self.history, self.orders, self.accounts
        return {
            out.REQ_CURRENT_TIME: lambda s, req, now: s.send(m.current_time(now)),
            out.REQ_IDS: lambda s, req, now: s.send(m.next_valid_id(self.gw.next_order_id)),
            out.REQ_MANAGED_ACCTS: lambda s, req, now: s.send(m.managed_accounts(self.config.accounts)),
            out.REQ_CONTRACT_DATA: md.on_contract_details,
            out.REQ_MARKET_DATA_TYPE: md.on_market_data_type,
            out.REQ_MKT_DATA: md.on_req_mkt_data,
            out.CANCEL_MKT_DATA: md.on_cancel_mkt_data,
            out.REQ_REAL_TIME_BARS: md.on_req_rt_bars,
            out.CANCEL_REAL_TIME_BARS: md.on_cancel_rt_bars,
            out.REQ_HISTORICAL_DATA: hist.on_req_historical,
            out.CANCEL_HISTORICAL_DATA: hist.on_cancel_historical,
            out.REQ_HEAD_TIMESTAMP: hist.on_head_timestamp,
            out.PLACE_ORDER: orders.on_place_order,
            out.CANCEL_ORDER: orders.on_cancel_order,
            out.REQ_GLOBAL_CANCEL: orders.on_global_cancel,
            out.REQ_OPEN_ORDERS: orders.on_open_orders,
            out.REQ_ALL_OPEN_ORDERS: orders.on_all_open_orders,
            out.REQ_COMPLETED_ORDERS: orders.on_completed_orders,
            out.REQ_EXECUTIONS: orders.on_req_executions,
            out.REQ_POSITIONS: acct.on_req_positions,
            out.CANCEL_POSITIONS: acct.on_cancel_positions,
            out.REQ_ACCOUNT_SUMMARY: acct.on_req_account_summary,
            out.CANCEL_ACCOUNT_SUMMARY: acct.on_cancel_account_summary,
            out.REQ_ACCT_DATA: acct.on_req_account_updates,
            out.REQ_ACCOUNT_UPDATES_MULTI: acct.on_req_account_updates_multi,
            out.CANCEL_ACCOUNT_UPDATES_MULTI: acct.on_cancel_account_updates_multi,
            out.REQ_PNL: acct.on_req_pnl,
            out.CANCEL_PNL: acct.on_cancel_pnl,
            out.REQ_PNL_SINGLE: acct.on_req_pnl_single,
            out.CANCEL_PNL_SINGLE: acct.on_cancel_pnl_single,
            # setServerLogLevel, reqAutoOpenOrders, cancelHeadTimestamp: nothing to say
        }

    # ============================================================================================
    # the listener (faults close and reopen it)

    async def listen(self, port: int) -> None:
        """Bind the API port (0 = any free port); :attr:`port` is the bound one."""
        self._server = await asyncio.start_server(
            self._handle, self.config.host, port, reuse_address=True, limit=1 << 16
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop_listening(self) -> None:
        """Close the API port (existing connections stay)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def resume_listening(self) -> None:
        """Listen again on the same port."""
        await self.listen(self.port)

    async def close(self) -> None:
        """Abort every session, wait for their handlers to end, stop listening."""
        for s in list(self.gw.sessions):
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

    # ============================================================================================
    # connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conn_counter += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        s = Session(writer, self._conn_counter, self.gw.record)
        self.gw.sessions.append(s)
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
            self.gw.sessions.remove(s)
            if task is not None:
                self._handlers.discard(task)
            log.info("client %s disconnected", s.client_id)

    async def _serve(self, s: Session, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder(self.config.max_frame_bytes)
        pending = await self._handshake(s, reader, decoder)
        if pending is None:
            return
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

    async def _handshake(self, s: Session, reader: asyncio.StreamReader, decoder: FrameDecoder) -> list[bytes] | None:
        """Prefix, version range, server hello; returns the frames that came after, or None to close."""
        prefix = await asyncio.wait_for(reader.readexactly(4), 30)
        if prefix != API_PREFIX:
            log.info("connection from %s without API prefix; closing", s.peer)
            return None
        frames: list[bytes] = []
        while not frames:
            data = await asyncio.wait_for(reader.read(4096), 30)
            if not data:
                return None
            try:
                frames = decoder.feed(data)
            except ProtocolError:
                return None
        try:
            lo, hi = _parse_version_range(frames.pop(0).decode("latin-1").rstrip("\0"))
        except ProtocolError:
            return None
        version = min(hi, self.config.server_version)
        if version < lo or version < 100:
            log.info("client wants v%d..%d, ibsim speaks up to %d; closing", lo, hi, version)
            return None
        s.version = version
        # The hello is not recorded: it is not a message with an id.
        s.writer.write(encode_message(m.server_hello(version, self.gw.clock.now())))
        return frames

    def _dispatch(self, s: Session, fields: list[str]) -> None:
        try:
            req = m.parse_request(fields, version=s.version)
        except ProtocolError as exc:
            s.error(m.request_id_of(fields), 320, f"{m.ERROR_TEXT[320]} {exc}")
            return
        if isinstance(req, m.StartApi):
            self._on_start_api(s, req)
            return
        if not s.ready:
            # TWS ignores requests before START_API; answering would confuse the handshake.
            return
        if isinstance(req, m.UnknownRequest):
            self._on_unimplemented(s, req.msg_id, fields)
            return
        handler = self.routes.get(int(fields[0]))
        if handler is None:
            return
        try:
            handler(s, req, self.gw.clock.now())
        except ProtocolError as exc:
            s.error(m.request_id_of(fields), 321, f"{m.ERROR_TEXT[321]} {exc}")
        except Exception as exc:
            log.exception("request %s failed", fields[:3])
            s.error(m.request_id_of(fields), 322, f"{m.ERROR_TEXT[322]} {type(exc).__name__}")

    def _on_unimplemented(self, s: Session, msg_id: int, fields: list[str]) -> None:
        """A request ibsim does not implement fails at once, on its own id when it has one (never a silent hang).

        Lists this gateway has nothing in (family codes, depth exchanges, news providers, soft-dollar tiers) are
        answered empty, as a gateway with none answers them.
        """
        empty = EMPTY_ANSWERS.get(msg_id)
        if empty is not None:
            s.send(empty(m.request_id_of(fields)))
            return
        s.error(m.request_id_of(fields), 321, f"{m.ERROR_TEXT[321]} ibsim does not implement message id {msg_id}")

    def _on_start_api(self, s: Session, req: m.StartApi) -> None:
        if s.client_id is not None:
            return
        if any(o.ready and o.client_id == req.client_id for o in self.gw.sessions):
            s.error(-1, 326)
            s.close()
            return
        if len(self.gw.ready_sessions()) >= self.config.max_clients:
            text = f"Couldn't connect to TWS. Maximum of {self.config.max_clients} API clients reached."
            s.error(-1, 502, text)
            s.close()
            return
        s.client_id = req.client_id
        s.send(m.managed_accounts(self.config.accounts))
        s.send(m.next_valid_id(self.gw.next_order_id))
        for code, text in self.config.farm_notices:
            s.error(-1, code, text)
        log.info("client %d connected from %s (v%d)", req.client_id, s.peer, s.version)

    # ============================================================================================
    # the pump: matching and streaming

    async def pump(self) -> None:
        interval = max(self.config.tick_interval, 0.0)
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                self.pump_once()
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

    def pump_once(self) -> None:
        now = self.gw.clock.now()
        self.faults.check_daily_restart(now)
        self.accounts.roll_day(now)
        self.orders.advance(now)
        for s in self.gw.ready_sessions():
            self.market_data.stream(s, now)
            self.history.stream(s, now)
            self.accounts.stream(s, now)
