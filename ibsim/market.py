"""Deterministic market generator (pure: no I/O, no wall clock).

The market is a geometric random walk sampled once per simulated second inside trading
sessions. Every series is a pure function of ``(seed, symbol, session date)`` plus the previous
session's close, so the bars are the same whether or not anyone watched them: the series *is* the
ground truth, and a backfill after a disconnect returns exactly what was missed.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from array import array
from bisect import bisect_left
from dataclasses import dataclass

from ibsim.clock import BAR_SECONDS, exchange_date, previous_sessions, session_for
from ibsim.config import Instrument, SimConfig
from ibsim.extended_history import (
    DEEP_HISTORY_DAYS,
    POST_MARKET_SECONDS,
    fill_backward,
    fill_bridge,
    fill_walk,
    post_market_window,
    pre_market_window,
)
from ibstream.sim.market_view import Quote, Session

_SECONDS_PER_YEAR_OF_TRADING = 252 * 23_400


@dataclass(frozen=True, slots=True)
class Bar:
    """A 5-second (or aggregated) OHLCV bar; ``time`` is the bar's start in epoch seconds."""

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


class _DaySeries:
    """One symbol's per-second path for one session."""

    __slots__ = ("_bars", "_times", "ask_sizes", "bid_sizes", "cum_volume", "last_sizes", "prices", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.prices = array("d")
        self.last_sizes = array("i")
        self.bid_sizes = array("i")
        self.ask_sizes = array("i")
        self.cum_volume = array("q")
        self._bars: list[Bar] | None = None
        self._times: list[int] | None = None

    def times(self) -> list[int]:
        if self._times is None:
            self._times = [b.time for b in self.bars()]
        return self._times

    def bars(self) -> list[Bar]:
        if self._bars is None:
            out: list[Bar] = []
            p, sz = self.prices, self.last_sizes
            for k in range(0, len(p), BAR_SECONDS):
                px = p[k : k + BAR_SECONDS]
                sizes = sz[k : k + BAR_SECONDS]
                vol = sum(sizes)
                wap = sum(a * b for a, b in zip(px, sizes, strict=True)) / vol
                out.append(
                    Bar(
                        time=self.session.open + k,
                        open=px[0],
                        high=max(px),
                        low=min(px),
                        close=px[-1],
                        volume=vol * 100,
                        wap=round(wap, 4),
                        # a trade per second plus odd-lot prints, deterministic from the sizes
                        count=sum(1 + s % 3 for s in sizes),
                    )
                )
            self._bars = out
        return self._bars


class MarketGenerator:
    """Per-symbol random walks over trading sessions, generated lazily and cached.

    ``anchor`` is the first generated session; nothing exists before it (IB would say "HMDS query
    returned no data").
    """

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        start = config.resolved_start()
        start_day = exchange_date(start.timestamp())
        history = previous_sessions(start_day, config.history_sessions, config.trading_hours)
        own = session_for(start_day, config.trading_hours)
        first = history[0] if history else own
        if first is None:  # started on a weekend without history: anchor at the next session
            d = start_day
            while first is None:
                d += dt.timedelta(days=1)
                first = session_for(d, config.trading_hours)
        self.anchor: Session = first
        self._instruments = {i.symbol: i for i in config.universe}
        self._series: dict[str, list[_DaySeries]] = {s: [] for s in self._instruments}
        #: Sessions before the anchor, newest first, generated backwards on demand (:mod:`ibsim.extended_history`).
        self._early: dict[str, list[_DaySeries]] = {s: [] for s in self._instruments}
        #: The previous close the oldest early session started from (where the next older one must close).
        self._early_floor_close: dict[str, float] = {}
        self.history_floor = first.day - dt.timedelta(days=DEEP_HISTORY_DAYS)
        self._extended: dict[tuple[str, dt.date], list[Bar]] = {}

    # -- generation -------------------------------------------------------------------------------

    def _sigma_per_second(self, inst: Instrument) -> float:
        vol = inst.volatility if inst.volatility is not None else self._config.volatility
        return vol / math.sqrt(_SECONDS_PER_YEAR_OF_TRADING)

    def _generate(self, inst: Instrument, session: Session, prev_close: float) -> _DaySeries:
        rng = random.Random(f"{self._config.seed}|{inst.symbol}|{session.day.isoformat()}")
        sigma = self._sigma_per_second(inst)
        tick = inst.min_tick
        series = _DaySeries(session)
        # overnight gap: about a third of a day's move, so sessions do not join seamlessly
        p = prev_close * math.exp(rng.gauss(0.0, sigma * math.sqrt(23_400) * 0.3))
        cum = 0
        prices, lasts, bids, asks, cvol = (
            series.prices,
            series.last_sizes,
            series.bid_sizes,
            series.ask_sizes,
            series.cum_volume,
        )
        gauss, rand = rng.gauss, rng.random
        for _ in range(session.close - session.open):
            p *= math.exp(sigma * gauss(0.0, 1.0))
            prices.append(round(round(p / tick) * tick, 6))
            r = rand()
            last_size = 1 + int(r * 10)
            lasts.append(last_size)
            bids.append(1 + int(r * 977) % 20)
            asks.append(1 + int(r * 6133) % 20)
            cum += last_size * 100
            cvol.append(cum)
        return series

    def _days(self, symbol: str, until: dt.date) -> list[_DaySeries]:
        """All sessions of ``symbol`` from the anchor through ``until``, generating as needed."""
        inst = self._instruments[symbol]
        days = self._series[symbol]
        next_day = days[-1].session.day + dt.timedelta(days=1) if days else self.anchor.day
        while next_day <= until:
            s = session_for(next_day, self._config.trading_hours)
            if s is not None:
                prev_close = days[-1].prices[-1] if days else inst.start_price
                days.append(self._generate(inst, s, prev_close))
            next_day += dt.timedelta(days=1)
        return days

    def _early_days(self, symbol: str, since: dt.date) -> list[_DaySeries]:
        """Sessions before the anchor from ``since`` (not before :attr:`history_floor`), oldest first."""
        inst = self._instruments[symbol]
        early = self._early[symbol]
        since = max(since, self.history_floor)
        day = early[-1].session.day if early else self.anchor.day
        close = self._early_floor_close.get(symbol, inst.start_price)
        while day > since:
            day -= dt.timedelta(days=1)
            session = session_for(day, self._config.trading_hours)
            if session is None:
                continue
            rng = random.Random(f"{self._config.seed}|{inst.symbol}|{day.isoformat()}")
            series = _DaySeries(session)
            seconds = session.close - session.open
            close = fill_backward(series, rng, self._sigma_per_second(inst), inst.min_tick, seconds, close)
            early.append(series)
            self._early_floor_close[symbol] = close
        return [d for d in reversed(early) if d.session.day >= since]

    def _series_on(self, symbol: str, day: dt.date) -> _DaySeries | None:
        """The generated session of ``day`` (None on a closed day or before the history floor)."""
        days = self._early_days(symbol, day) if day < self.anchor.day else self._days(symbol, day)
        return next((d for d in days if d.session.day == day), None)

    def _extended_bars(self, symbol: str, session: Session) -> list[Bar]:
        """Pre- and post-market 5-second bars of ``session``'s day (cached)."""
        key = (symbol, session.day)
        if key not in self._extended:
            inst = self._instruments[symbol]
            regular = self._series_on(symbol, session.day)
            assert regular is not None
            before = self._series_on(symbol, previous_sessions(session.day, 1, self._config.trading_hours)[0].day)
            prev_close = before.prices[-1] if before is not None else regular.prices[0]
            rng = random.Random(f"{self._config.seed}|{inst.symbol}|{session.day.isoformat()}|extended")
            sigma, tick = self._sigma_per_second(inst), inst.min_tick
            pre, post = _DaySeries(pre_market_window(session)), _DaySeries(post_market_window(session))
            fill_bridge(pre, rng, sigma, tick, session.open - pre.session.open, prev_close, regular.prices[0])
            fill_walk(post, rng, sigma, tick, POST_MARKET_SECONDS, regular.prices[-1])
            self._extended[key] = pre.bars() + post.bars()
        return self._extended[key]

    def _day_at(self, symbol: str, t: float) -> _DaySeries | None:
        """The last session that opened at or before ``t`` (None before the anchor)."""
        days = self._days(symbol, exchange_date(t))
        for d in reversed(days):
            if d.session.open <= t:
                return d
        return None

    # -- queries ----------------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols of the universe in configuration order."""
        return tuple(self._instruments)

    def spread(self, symbol: str) -> float:
        """Quoted spread in price units."""
        return self._config.spread_ticks * self._instruments[symbol].min_tick

    def quote(self, symbol: str, t: float) -> Quote:
        """Top of book at simulated time ``t``; frozen at the last close outside sessions."""
        inst = self._instruments[symbol]
        day = self._day_at(symbol, t)
        if day is None:
            price, idx, in_session = inst.start_price, -1, False
            sizes = (1, 1, 1)
            vol = 0
            second = int(t)
        else:
            idx = min(int(t) - day.session.open, len(day.prices) - 1)
            in_session = day.session.contains(t)
            price = day.prices[idx]
            sizes = (day.bid_sizes[idx], day.ask_sizes[idx], day.last_sizes[idx])
            vol = day.cum_volume[idx]
            second = day.session.open + idx
            millisecond = int((t - int(t)) * 1000)
            if in_session and millisecond:
                # Displayed sizes move many times a second while prices (and so bars) keep one value per second: the
                # pump sends a quote at each tick, so the quote rate follows --tick-interval, not the clock's speed.
                mix = ((second * 1000 + millisecond) * 2654435761 + inst.con_id) & 0xFFFFFFFF
                sizes = (max(1, sizes[0] + mix % 7 - 3), max(1, sizes[1] + (mix >> 8) % 7 - 3), sizes[2])
        tick = inst.min_tick
        half_down = (self._config.spread_ticks // 2) * tick
        bid = round(price - half_down, 6)
        ask = round(bid + self._config.spread_ticks * tick, 6)
        return Quote(second, bid, ask, price, sizes[0], sizes[1], sizes[2], vol, in_session)

    def in_session(self, t: float) -> bool:
        """Whether the market is open at simulated time ``t``."""
        s = session_for(exchange_date(t), self._config.trading_hours)
        return s is not None and s.contains(t)

    def session_at(self, t: float) -> Session | None:
        """The session containing ``t`` if the market is open."""
        s = session_for(exchange_date(t), self._config.trading_hours)
        return s if s is not None and s.contains(t) else None

    def bars(self, symbol: str, start: float, end: float, *, extended: bool = False) -> list[Bar]:
        """Completed 5-second bars with ``start <= bar.time`` and ``bar.time + 5 <= end``; regular hours only unless
        ``extended`` (then pre- and post-market bars too, in time order)."""
        if symbol not in self._instruments:
            raise KeyError(symbol)
        days = self._days(symbol, exchange_date(end))
        if start < self.anchor.open:
            days = self._early_days(symbol, exchange_date(start)) + days
        out = self._regular_bars(days, start, end)
        if extended and self._config.trading_hours == "rth":
            eth = [
                b
                for d in days
                if d.session.open - 6 * 3600 < end and d.session.close + POST_MARKET_SECONDS > start
                for b in self._extended_bars(symbol, d.session)
                if start <= b.time and b.time + BAR_SECONDS <= end
            ]
            out = sorted(out + eth, key=lambda b: b.time)
        return out

    @staticmethod
    def _regular_bars(days: list[_DaySeries], start: float, end: float) -> list[Bar]:
        out: list[Bar] = []
        for day in days:
            if day.session.close <= start or day.session.open >= end:
                continue
            day_bars = day.bars()
            lo = bisect_left(day.times(), math.ceil(start))
            for b in day_bars[lo:]:
                if b.time + BAR_SECONDS > end:
                    break
                out.append(b)
        return out

    def first_bar_time(self) -> int:
        """Start of the first session walked forward (the anchor session's open): the live series' beginning."""
        return self.anchor.open

    def earliest_bar_time(self) -> int:
        """Start of the earliest bar history has (the first session on or after :attr:`history_floor`)."""
        day = self.history_floor
        while (s := session_for(day, self._config.trading_hours)) is None:
            day += dt.timedelta(days=1)
        return s.open


def aggregate(bars: list[Bar], seconds: int, origin: int = 0) -> list[Bar]:
    """Combine consecutive bars into ``seconds``-wide buckets aligned to ``origin``.

    IB aligns intraday bars to the clock (09:30:00, 09:31:00, ...) and daily bars to the session;
    callers pass the session open as ``origin`` for daily buckets.
    """
    if seconds <= BAR_SECONDS:
        return list(bars)
    out: list[Bar] = []
    bucket: list[Bar] = []
    key: int | None = None
    for b in bars:
        k = origin + ((b.time - origin) // seconds) * seconds
        if key is not None and k != key:
            out.append(_merge(key, bucket))
            bucket = []
        key = k
        bucket.append(b)
    if bucket and key is not None:
        out.append(_merge(key, bucket))
    return out


def _merge(t: int, bucket: list[Bar]) -> Bar:
    # IB labels a bucket that starts before the open (09:00 hourly bar) with the first bar's time.
    t = max(t, bucket[0].time)
    vol = sum(b.volume for b in bucket)
    wap = sum(b.wap * b.volume for b in bucket) / vol if vol else bucket[-1].close
    return Bar(
        time=t,
        open=bucket[0].open,
        high=max(b.high for b in bucket),
        low=min(b.low for b in bucket),
        close=bucket[-1].close,
        volume=vol,
        wap=round(wap, 4),
        count=sum(b.count for b in bucket),
    )
