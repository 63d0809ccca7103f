"""The state every API area shares: the simulated world, the gateway's own state, and the live sessions.

Owned by the simulator's event loop: only code running on that loop reads or changes it (the :class:`Simulator`
hops there for callers on other threads). The world (clock, market, order book) lives "at IB" and survives a gateway
restart; the gateway's state (next order id, pacing history, sessions) does not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from dataclasses import dataclass, field

from ibsim import messages as m
from ibsim.clock import SimClock
from ibsim.config import EXCHANGE_TZ, Instrument, SimConfig
from ibsim.market import MarketGenerator
from ibsim.pacing import HistoricalPacer
from ibsim.session import Session
from ibsim.validation import contract_refusal
from ibsim.wire import Field, encode_field
from ibstream.sim.ledger import CommissionSchedule
from ibstream.sim.matching import MatchingEngine

#: Messages kept per client id for :meth:`Simulator.sent_messages`.
SENT_LOG_SIZE = 200_000


@dataclass
class FaultState:
    """Active faults, as the API areas consult them (:mod:`ibsim.faults` sets them)."""

    refuse_until: float = 0.0  # wall (monotonic)
    outage: bool = False
    md_farm_down: bool = False
    hmds_farm_down: bool = False
    #: The same username logged in to a live session elsewhere: no market data (10197) until it ends.
    competing_session: bool = False
    stalled: set[str] = field(default_factory=set)
    rejections: deque[tuple[int, str]] = field(default_factory=deque)
    ack_delay: float = 0.0  # wall seconds
    fill_delay: float = 0.0  # wall seconds
    #: One entry per transmitting placeOrder to lose: the gateway downtime of its restart, or 0 (the connection only).
    lost_transmits: deque[float] = field(default_factory=deque)


class Gateway:
    """Shared state of one simulator (see the module docstring for who may touch it)."""

    def __init__(self, config: SimConfig) -> None:
        if not config.accounts:
            raise ValueError("at least one account is required")
        self.config = config
        self.account = config.accounts[0]
        # The market first: it reads the exchange calendar (~0.5 s on first use), which must not eat simulated time.
        self.market = MarketGenerator(config)
        self.clock = SimClock(config.resolved_start(), config.speed, held=config.hold_clock)
        self.engine = MatchingEngine(
            self.market,
            self.account,
            con_ids={i.symbol: i.con_id for i in config.universe},
            commissions=CommissionSchedule(
                config.commission_per_share,
                config.commission_min,
                config.commission_max_pct,
            ),
            initial_cash=config.initial_cash,
            partial_fill_max=config.partial_fill_max,
        )
        self.instruments = {i.symbol: i for i in config.universe}
        self.by_conid = {i.con_id: i for i in config.universe}
        self.pacer = HistoricalPacer()
        self.pacing = config.enforce_pacing
        self.live_entitled = config.live_data_entitled
        self.next_order_id = config.first_order_id
        self.faults = FaultState()
        self.sessions: list[Session] = []
        self.sent: dict[int, deque[tuple[str, ...]]] = {}
        #: Background work (reopening the listener, ending an outage), cancelled when the simulator stops.
        self.tasks: list[asyncio.Future[None]] = []
        #: Simulated time of the next daily auto-restart (None: the gateway never restarts itself).
        self.next_daily_restart = next_daily_restart(config.daily_restart_time, self.clock.now())

    def ready_sessions(self) -> list[Session]:
        return [s for s in self.sessions if s.ready]

    def owner(self, client_id: int) -> Session | None:
        """The ready session of ``client_id``, if it is connected."""
        return next((s for s in self.sessions if s.ready and s.client_id == client_id), None)

    def record(self, s: Session, fields: list[Field]) -> None:
        """Keep what was sent to a client (by client id, across its connections)."""
        if s.client_id is None:
            return
        log_ = self.sent.get(s.client_id)
        if log_ is None:
            log_ = self.sent[s.client_id] = deque(maxlen=SENT_LOG_SIZE)
        log_.append(tuple(encode_field(f) for f in fields))

    def feed_dead(self, symbol: str) -> bool:
        """Whether streaming of ``symbol`` is cut (outage, market-data farm down, or a stalled feed)."""
        f = self.faults
        return f.outage or f.md_farm_down or f.competing_session or symbol in f.stalled

    def mark(self, symbol: str) -> float:
        """The last price of ``symbol`` now (account valuation)."""
        return self.market.quote(symbol, self.clock.now()).last

    def lookup(self, s: Session, req_id: int, c: m.ContractSpec, *, for_order: bool = False) -> Instrument | None:
        """The instrument a request names; otherwise the request's error goes to ``s`` and None comes back: 321 for a
        contract a gateway will not search for (:func:`ibsim.validation.contract_refusal`), 200 for one that matches
        nothing."""
        refusal = contract_refusal(c, for_order=for_order)
        if refusal is not None:
            code, reason = refusal
            s.error(req_id, code, f"{m.ERROR_TEXT[code]} {reason}")
            return None
        inst = self.resolve(c)
        if inst is None:
            s.error(req_id, 200)
        return inst

    def resolve(self, c: m.ContractSpec) -> Instrument | None:
        """The instrument a request's contract names, or None (IB's 200: no security definition)."""
        if c.con_id:
            inst = self.by_conid.get(c.con_id)
            if inst is None or (c.symbol and c.symbol.upper() != inst.symbol):
                return None
            return inst
        inst = self.instruments.get(c.symbol.upper() or c.local_symbol.upper())
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


def next_daily_restart(at: str | None, now: float) -> float | None:
    """The first instant after ``now`` (epoch) at ``at`` ("HH:MM", New York), or None without a restart time."""
    if at is None:
        return None
    hour, minute = (int(part) for part in at.split(":"))
    day = dt.datetime.fromtimestamp(now, EXCHANGE_TZ).date()
    while True:
        candidate = dt.datetime.combine(day, dt.time(hour, minute), EXCHANGE_TZ).timestamp()
        if candidate > now:
            return candidate
        day += dt.timedelta(days=1)
