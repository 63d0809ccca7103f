"""History beyond the live walk (pure): sessions before the first generated one, and pre- and post-market trading.

The live market (:mod:`ibsim.market`) walks forward from its anchor session. History older than the anchor is
generated *backwards*: a session's walk is drawn from ``(seed, symbol, day)`` starting at 1.0, then scaled so that it
closes exactly where the next session's walk started from (its previous close). Nothing generated forward changes,
and each older session is a pure function of the newer ones, so deep history is the same whoever asks first.

Extended hours (IB's ``useRTH=0``, US stocks): pre-market 04:00 to the open and post-market from the close to four
hours later (20:00, or 17:00 after a 13:00 half-day close), on trading days only. The pre-market walk is a Brownian
bridge from the previous session's close to the session's first price, so it joins both; the post-market walk starts
at the close. Both trade thinly (one to three lots a second). The live feed stays regular-hours only: quotes stand
at the last close outside the session, as they always have (ibsim's documented gap).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from array import array
from typing import Protocol

from ibsim.config import EXCHANGE_TZ
from ibstream.sim.market_view import Session

#: Pre-market opens at 04:00 New York; post-market runs this long after the close.
PRE_MARKET_OPEN = dt.time(4, 0)
POST_MARKET_SECONDS = 4 * 3600
#: The pre-market's length before a 09:30 open.
PRE_MARKET_SECONDS = 5 * 3600 + 1800

#: How far before the anchor session history exists (IB serves a year of small bars).
DEEP_HISTORY_DAYS = 366


class PricePath(Protocol):
    """What a generated day is made of (the arrays of :class:`ibsim.market._DaySeries`)."""

    prices: array[float]
    last_sizes: array[int]
    bid_sizes: array[int]
    ask_sizes: array[int]
    cum_volume: array[int]


def pre_market_window(session: Session) -> Session:
    """04:00 to the open of ``session``'s day."""
    start = dt.datetime.combine(session.day, PRE_MARKET_OPEN, EXCHANGE_TZ)
    return Session(session.day, int(start.timestamp()), session.open)


def post_market_window(session: Session) -> Session:
    """The close of ``session`` to four hours later."""
    return Session(session.day, session.close, session.close + POST_MARKET_SECONDS)


def fill_backward(out: PricePath, rng: random.Random, sigma: float, tick: float, seconds: int, close: float) -> float:
    """Fill ``out`` with a session of ``seconds`` that ends at ``close``; returns the previous session's close.

    The walk (overnight gap, then one step a second) is drawn from 1.0 and scaled by ``close / end``, so the last
    price rounds to ``close`` and the scale itself is the previous close the walk started from.
    """
    p = math.exp(rng.gauss(0.0, sigma * math.sqrt(23_400) * 0.3))
    raw: list[float] = []
    sizes: list[float] = []
    for _ in range(seconds):
        p *= math.exp(sigma * rng.gauss(0.0, 1.0))
        raw.append(p)
        sizes.append(rng.random())
    scale = close / raw[-1]
    _append(out, [x * scale for x in raw], sizes, tick, lots=10)
    return scale


def fill_bridge(
    out: PricePath, rng: random.Random, sigma: float, tick: float, seconds: int, a: float, b: float
) -> None:
    """Fill ``out`` with a walk of ``seconds`` from ``a`` to ``b`` (a Brownian bridge in log price), thinly traded."""
    w = [0.0]
    for _ in range(seconds):
        w.append(w[-1] + sigma * rng.gauss(0.0, 1.0))
    drift = math.log(b) - math.log(a) - w[-1]
    path = [a * math.exp(w[k] + drift * k / seconds) for k in range(1, seconds + 1)]
    _append(out, path, [rng.random() for _ in range(seconds)], tick, lots=3)


def fill_walk(out: PricePath, rng: random.Random, sigma: float, tick: float, seconds: int, start: float) -> None:
    """Fill ``out`` with a free walk of ``seconds`` from ``start``, thinly traded."""
    p = start
    path: list[float] = []
    for _ in range(seconds):
        p *= math.exp(sigma * rng.gauss(0.0, 1.0))
        path.append(p)
    _append(out, path, [rng.random() for _ in range(seconds)], tick, lots=3)


def _append(out: PricePath, path: list[float], draws: list[float], tick: float, lots: int) -> None:
    """Prices on the tick grid and sizes from uniform draws, as the live walk derives them."""
    cum = out.cum_volume[-1] if out.cum_volume else 0
    for p, r in zip(path, draws, strict=True):
        out.prices.append(round(round(p / tick) * tick, 6))
        size = 1 + int(r * lots)
        out.last_sizes.append(size)
        out.bid_sizes.append(1 + int(r * 977) % 20)
        out.ask_sizes.append(1 + int(r * 6133) % 20)
        cum += size * 100
        out.cum_volume.append(cum)
