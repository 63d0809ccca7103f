"""One API connection and what it subscribed to.

A session exists from TCP accept until the socket closes. It speaks after the handshake (API prefix, version range,
server hello) and is *ready* from START_API, which gives it a client id, until it closes; only ready sessions get
requests answered or data streamed. Output is written without waiting: a client that stops reading is dropped once
:data:`MAX_WRITE_BUFFER` bytes wait for it, as TWS drops clients that do not read. Subscriptions live here, per
request id, and die with the session (or with a 1101 "data lost").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ibsim import messages as m
from ibsim.wire import Field, encode_message

log = logging.getLogger("ibsim")

#: Sessions whose unsent output exceeds this are dropped, as TWS drops clients that do not read.
MAX_WRITE_BUFFER = 64 * 1024 * 1024


@dataclass
class MktSub:
    """reqMktData: the last values sent per tick type (only changes are sent)."""

    symbol: str
    delayed: bool
    last: dict[int, tuple[float, int] | int | str] = field(default_factory=dict)


@dataclass
class BarSub:
    """reqRealTimeBars: the start of the next bar to send."""

    symbol: str
    next_time: int
    # reqRealTimeBars(useRTH=1): IB sends only bars inside regular trading hours, even where the market trades
    # around the clock (here: --hours 24h).
    rth_only: bool = False


@dataclass
class HistSub:
    """reqHistoricalData(keepUpToDate): the next 5-second bar to fold in and the bucket being updated."""

    symbol: str
    bar_seconds: int
    format_date: int
    next_time: int
    bucket_start: int


class Session:
    """One API connection; ``on_send`` sees every message sent after START_API (the simulator's record)."""

    def __init__(
        self, writer: asyncio.StreamWriter, conn_no: int, on_send: Callable[[Session, list[Field]], None]
    ) -> None:
        self.writer = writer
        self.conn_no = conn_no
        self.on_send = on_send
        self.client_id: int | None = None
        self.version = 0
        self.md_type = 1
        self.md_type_requested = False
        self.mkt: dict[int, MktSub] = {}
        self.rtb: dict[int, BarSub] = {}
        self.hist: dict[int, HistSub] = {}
        self.acct_summary: dict[int, str] = {}
        self.acct_multi: dict[int, str] = {}
        self.acct_updates = False
        #: reqPnL: req_id -> account; reqPnLSingle: req_id -> con_id; the last numbers sent per req_id.
        self.pnl_subs: dict[int, str] = {}
        self.pnl_single_subs: dict[int, int] = {}
        self.pnl_sent: dict[int, tuple[float, ...]] = {}
        #: Wall (monotonic) times of the last P&L and account-updates pushes.
        self.pnl_pushed_at = 0.0
        self.acct_pushed_at = 0.0
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
        self.on_send(self, fields)
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("client %s not reading; dropping it", self.client_id)
            self.close(abort=True)

    def error(self, req_id: int, code: int, text: str | None = None) -> None:
        self.send(m.error(req_id, code, text, version=self.version))

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()

    def drop_subscriptions(self) -> None:
        """Forget every market-data, bar and history subscription (IB's 1101: data lost)."""
        self.mkt.clear()
        self.rtb.clear()
        self.hist.clear()
