"""Simulator configuration and the default instrument universe.

Everything here is immutable: a running simulator never changes its configuration; faults and
runtime toggles live in the simulator's own state instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from ibstream.market_hours import latest_session

#: Exchange time zone of the simulated venue; TWS reports times in it.
EXCHANGE_TZ = ZoneInfo("America/New_York")
#: Highest TWS server version ibsim fully implements: every message it sends and reads follows the negotiated
#: version up to this one (see ibsim.messages.versions). ibapi 9.81 gets 157, ib_async 2.1 and IB's 10.x client 178.
SERVER_VERSION = 178
#: Oldest client version the handshake still accepts (TWS API "v100+" framing).
MIN_CLIENT_VERSION = 100


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable contract of the simulated universe (US stock or ETF, SMART-routed)."""

    symbol: str
    con_id: int
    start_price: float
    primary_exchange: str = "NASDAQ"
    long_name: str = ""
    stock_type: str = "COMMON"
    currency: str = "USD"
    sec_type: str = "STK"
    min_tick: float = 0.01
    #: Annualised volatility override; ``None`` uses :attr:`SimConfig.volatility`.
    volatility: float | None = None

    @property
    def is_etf(self) -> bool:
        """True for exchange-traded funds (IB reports them as STK with stockType ETF)."""
        return self.stock_type == "ETF"


# Real IB conids so that contracts qualified against ibsim look like the real thing.
DEFAULT_UNIVERSE: tuple[Instrument, ...] = (
    Instrument("AAPL", 265598, 190.0, "NASDAQ", "APPLE INC"),
    Instrument("MSFT", 272093, 410.0, "NASDAQ", "MICROSOFT CORP"),
    Instrument("AMZN", 3691937, 180.0, "NASDAQ", "AMAZON.COM INC"),
    Instrument("GOOGL", 208813719, 150.0, "NASDAQ", "ALPHABET INC-CL A"),
    Instrument("NVDA", 4815747, 120.0, "NASDAQ", "NVIDIA CORP"),
    Instrument("TSLA", 76792991, 240.0, "NASDAQ", "TESLA INC"),
    Instrument("META", 107113386, 500.0, "NASDAQ", "META PLATFORMS INC-CLASS A"),
    Instrument("SPY", 756733, 520.0, "ARCA", "SPDR S&P 500 ETF TRUST", "ETF", volatility=0.15),
    Instrument("QQQ", 320227571, 440.0, "NASDAQ", "INVESCO QQQ TRUST SERIES 1", "ETF", volatility=0.2),
    Instrument("IWM", 9579970, 200.0, "ARCA", "ISHARES RUSSELL 2000 ETF", "ETF", volatility=0.2),
)


def default_start_time(now: dt.datetime | None = None) -> dt.datetime:
    """The open (New York) of today's or the last trading day's session (the exchange's calendar), so a fresh sim
    is trading."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(EXCHANGE_TZ)
    return latest_session(local.date()).open.astimezone(EXCHANGE_TZ)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How a :class:`ibsim.Simulator` behaves.

    Times are simulated unless a name says ``wall``. ``speed`` maps wall seconds to simulated
    seconds (60 means one wall second is one simulated minute).
    """

    host: str = "127.0.0.1"
    #: TWS API port; 0 lets the OS choose (tests), the bound port is ``Simulator.port``.
    port: int = 4002
    #: HTTP control endpoint port; ``None`` disables it, 0 lets the OS choose.
    control_port: int | None = 4003
    seed: int = 42
    speed: float = 1.0
    #: Simulated time at start; ``None`` means :func:`default_start_time` (market open today).
    start_time: dt.datetime | None = None
    #: The simulated clock stands at ``start_time`` until released (control ``POST /clock/release``), so clients
    #: that take a while to start miss none of the session.
    hold_clock: bool = False
    #: Trading sessions before ``start_time``'s that are generated as history (for backfill).
    history_sessions: int = 1
    accounts: tuple[str, ...] = ("DU1234567",)
    universe: tuple[Instrument, ...] = DEFAULT_UNIVERSE
    #: Annualised volatility of the random walk (per instrument override possible).
    volatility: float = 0.30
    #: Bid/ask spread in ticks around the last trade.
    spread_ticks: int = 2
    #: ``"rth"``: 09:30-16:00 New York on weekdays only; ``"24h"``: the market never closes.
    trading_hours: str = "rth"
    #: Whether the account holds live market-data subscriptions. Without them type-1 requests get
    #: error 354 and type-3/4 requests get delayed data with the informational code 10167.
    live_data_entitled: bool = True
    #: Wall seconds between market-data pushes (IB snapshots top of book about every 250 ms).
    tick_interval: float = 0.1
    #: Largest quantity one execution may carry; 0 fills an order in one execution.
    partial_fill_max: float = 0.0
    commission_per_share: float = 0.005
    commission_min: float = 1.0
    #: Cap as a fraction of trade value (IB fixed pricing caps at 1 %).
    commission_max_pct: float = 0.01
    initial_cash: float = 1_000_000.0
    #: Wall seconds between unprompted reqAccountUpdates pushes (IB: every 3 minutes; fills push at once).
    account_update_seconds: float = 180.0
    first_order_id: int = 1
    max_clients: int = 32
    #: Historical-data pacing as IB enforces it (error 162).
    enforce_pacing: bool = True
    #: The gateway's daily auto-restart ("HH:MM", New York, on the simulated clock), as IB Gateway restarts itself
    #: once a day at a configured time; ``None``: never. Each restart drops every client and refuses connections for
    #: ``daily_restart_downtime`` wall seconds.
    daily_restart_time: str | None = None
    daily_restart_downtime: float = 2.0
    #: Largest accepted inbound frame (bytes); TWS drops clients sending garbage lengths.
    max_frame_bytes: int = 1 << 20
    server_version: int = SERVER_VERSION
    farm_notices: tuple[tuple[int, str], ...] = field(
        default=(
            (2104, "Market data farm connection is OK:usfarm"),
            (2106, "HMDS data farm connection is OK:ushmds"),
            (2158, "Sec-def data farm connection is OK:secdefnj"),
        )
    )

    def resolved_start(self) -> dt.datetime:
        """The start time with the default applied, always timezone-aware."""
        start = self.start_time or default_start_time()
        if start.tzinfo is None:
            start = start.replace(tzinfo=EXCHANGE_TZ)
        return start

    def with_symbols(self, symbols: list[str] | tuple[str, ...]) -> SimConfig:
        """A copy restricted to ``symbols``; unknown symbols get synthetic conids and prices."""
        known = {i.symbol: i for i in self.universe}
        chosen: list[Instrument] = []
        for n, sym in enumerate(symbols):
            sym = sym.upper()
            chosen.append(known.get(sym) or Instrument(sym, 90_000_000 + n, 100.0, "NYSE", sym))
        return replace(self, universe=tuple(chosen))

    def instrument(self, symbol: str) -> Instrument | None:
        """Instrument by symbol (case-insensitive) or ``None``."""
        sym = symbol.upper()
        return next((i for i in self.universe if i.symbol == sym), None)
