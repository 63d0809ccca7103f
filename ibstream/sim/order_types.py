"""The simulated models of IB's trailing stops and Adaptive algo (pure: prices in, prices out).

Trailing stop (``TRAIL``): the trail is ``auxPrice`` dollars or ``trailingPercent`` percent of the last price. The
stop starts at ``trailStopPrice`` when the order gives one, else one trail from the last price when the order starts
working; every second it moves to one trail from the last price if that is in the position's favour (a SELL stop only
rises, a BUY stop only falls), never back. It triggers as a stop does (last at or through the stop) and then fills
as a market order at the touch. The stop is kept on the tick grid (rounded away from the market, as IB does) and is
what ``openOrder`` reports as ``trailStopPrice``.

Adaptive (``algoStrategy`` ``Adaptive``, ``adaptivePriority`` ``Urgent`` | ``Normal`` | ``Patient``, Normal when
absent; on MKT and LMT orders only, as IB allows): IB works the order inside the spread; ibsim models the outcome, not
the working: the order fills, whole and at once as the plain order would, at a price that gives up a share of the
half-spread from the mid by priority: Urgent all of it (the far side, as a plain order), Normal half, Patient none
(the mid). The price is rounded to the tick towards the far side (never better than the model). An Adaptive limit
order fills when that price is within its limit, so a limit between the mid and the touch can fill as Adaptive
where a plain one would rest. Not modelled: the time IB takes (a Patient order can take minutes), partial progress.
"""

from __future__ import annotations

import math

#: The Adaptive algo's name in ``algoStrategy``.
ADAPTIVE = "Adaptive"
#: Share of the half-spread an Adaptive order pays over the mid, by ``adaptivePriority``.
ADAPTIVE_SHARE_OF_HALF_SPREAD = {"Urgent": 1.0, "Normal": 0.5, "Patient": 0.0}
#: Order types the Adaptive algo takes.
ADAPTIVE_ORDER_TYPES = frozenset({"MKT", "LMT"})


def trail_offset(last: float, amount: float | None, percent: float | None) -> float:
    """The trail at ``last``: the amount, or the percent of the last price."""
    if percent is not None:
        return last * percent / 100.0
    return amount or 0.0


def _tick_away(price: float, up: bool) -> float:
    """``price`` on the tick grid, rounded up or down (float noise below a millionth of a tick ignored)."""
    tick = 0.0001 if abs(price) < 1.0 else 0.01
    steps = price / tick
    steps = math.ceil(steps - 1e-6) if up else math.floor(steps + 1e-6)
    return round(steps * tick, 4)


def ratchet(action: str, stop: float | None, last: float, offset: float) -> float:
    """The trailing stop after a second at ``last``: one trail from the last price when that is in the position's
    favour (a SELL's stop rises, a BUY's falls), else where it was; ``stop`` None starts it there."""
    if action == "SELL":
        candidate = _tick_away(last - offset, up=False)
        return candidate if stop is None else max(stop, candidate)
    candidate = _tick_away(last + offset, up=True)
    return candidate if stop is None else min(stop, candidate)


def stop_reached(action: str, stop: float, last: float) -> bool:
    """Whether a stop triggers at ``last``: a SELL stop at or below it, a BUY stop at or above it."""
    return last <= stop + 1e-9 if action == "SELL" else last >= stop - 1e-9


def adaptive_priority(params: tuple[tuple[str, str], ...]) -> str:
    """The ``adaptivePriority`` of an Adaptive order's algoParams (Normal when absent)."""
    return next((value for tag, value in params if tag == "adaptivePriority"), "Normal")


def adaptive_refusal(order_type: str, params: tuple[tuple[str, str], ...]) -> str | None:
    """Why IB refuses an Adaptive order (an order type or a priority it does not take), or None."""
    if order_type not in ADAPTIVE_ORDER_TYPES:
        return f"The Adaptive algo does not take {order_type} orders"
    priority = adaptive_priority(params)
    if priority not in ADAPTIVE_SHARE_OF_HALF_SPREAD:
        return f"Invalid adaptivePriority {priority!r}"
    return None


def adaptive_price(action: str, bid: float, ask: float, priority: str) -> float:
    """The price an Adaptive order of ``priority`` fills at: mid plus its share of the half-spread towards the far
    side, on the tick grid towards the far side, within the spread."""
    share = ADAPTIVE_SHARE_OF_HALF_SPREAD[priority]
    mid, half = (bid + ask) / 2.0, (ask - bid) / 2.0
    if action == "BUY":
        return min(_tick_away(mid + share * half, up=True), ask)
    return max(_tick_away(mid - share * half, up=False), bid)
