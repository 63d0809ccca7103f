"""The ledger of the one simulated account: cash, positions and account values (pure: no I/O, no wall clock).

IB's conventions: fixed-pricing commissions (per share, a per-order minimum, a cap in percent of value), charged
incrementally as an order fills; a position's ``avg_cost`` includes commission (added for buys, subtracted for short
sales); a closing trade realizes P&L net of its commission, an opening one realizes nothing (IB reports UNSET there);
a trade through zero opens the remainder at its price. Account values mark positions with the caller's prices and use
one Reg T style 25 % margin rate.

P&L as reqPnL/reqPnLSingle report it: unrealized is the marked value less the cost basis of open positions; realized
and daily count from the start of the trading day (:meth:`Ledger.start_day`). A contract's daily P&L is its value now
less its value at the day's start plus today's cash flows of its trades (so commissions count), and the account's is
the sum over contracts; a cash transfer (:meth:`Ledger.transfer`) moves cash and NetLiquidation, never P&L, while a
cash adjustment booked as P&L (a fee, a loss) counts in the day's realized and daily P&L.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: The share of gross position value held as (initial and maintenance) margin: Reg T style 25 % maintenance,
#: simplified to one rate. What-if answers use it too (:mod:`ibsim.what_if`).
MARGIN_RATE = 0.25


@dataclass(frozen=True, slots=True)
class Position:
    """Holding in one contract; ``avg_cost`` includes commissions, as IB reports it."""

    symbol: str
    con_id: int
    quantity: float
    avg_cost: float


@dataclass(frozen=True, slots=True)
class PnL:
    """reqPnL's numbers: today's P&L (realized + change in unrealized), open positions' unrealized, today's realized."""

    daily: float
    unrealized: float
    realized: float


@dataclass(frozen=True, slots=True)
class PnLSingle:
    """reqPnLSingle's numbers for one contract; ``value`` is the position's market value."""

    position: float
    daily: float
    unrealized: float
    realized: float
    value: float


@dataclass(frozen=True, slots=True)
class CommissionSchedule:
    """IB fixed pricing: per share with a per-order minimum and a percentage-of-value cap."""

    per_share: float = 0.005
    minimum: float = 1.0
    max_pct: float = 0.01

    def for_order(self, cum_qty: float, cum_value: float) -> float:
        """Total commission of an order that has filled ``cum_qty`` for ``cum_value`` so far."""
        if cum_qty <= 0:
            return 0.0
        raw = max(self.per_share * cum_qty, self.minimum)
        return round(min(raw, self.max_pct * cum_value) if cum_value > 0 else raw, 6)


class Ledger:
    """Cash and positions, booked execution by execution."""

    def __init__(self, initial_cash: float = 1_000_000.0) -> None:
        self.cash = initial_cash
        self.initial_cash = initial_cash
        self.realized_pnl = 0.0
        self._positions: dict[str, Position] = {}
        # Today's books, reset by start_day: each contract's value at the day's start, its trades' cash flows and
        # realized P&L since then, and cash adjustments booked as P&L.
        self._day_values: dict[str, float] = {}
        self._day_flows: dict[str, float] = {}
        self._day_realized: dict[str, float] = {}
        self._day_other_pnl = 0.0
        #: The trading day the day's books are of (None before the first start_day).
        self.day: object = None

    def start_day(self, marks: Callable[[str], float], day: object = None) -> None:
        """Begin trading day ``day``: daily and realized P&L count from here."""
        self.day = day
        self._day_values = {p.symbol: p.quantity * marks(p.symbol) for p in self._positions.values() if p.quantity}
        self._day_flows, self._day_realized, self._day_other_pnl = {}, {}, 0.0

    def transfer(self, amount: float, as_pnl: bool = False) -> None:
        """Move cash in (+) or out (-): a deposit/withdrawal, or with ``as_pnl`` a fee or loss that counts as P&L."""
        self.cash += amount
        if as_pnl:
            self.realized_pnl += amount
            self._day_other_pnl += amount

    def book(self, symbol: str, con_id: int, signed: float, price: float, commission: float) -> float | None:
        """Book one execution (``signed``: + bought, - sold); returns its realized P&L, None for opening trades."""
        self.cash -= signed * price + commission
        self._day_flows[symbol] = self._day_flows.get(symbol, 0.0) - signed * price - commission
        pos = self._positions.get(symbol) or Position(symbol, con_id, 0.0, 0.0)
        realized: float | None = None
        if pos.quantity == 0 or (pos.quantity > 0) == (signed > 0):
            new_qty = pos.quantity + signed
            # IB's avgCost includes commission: added for buys, subtracted for short sales.
            cost = pos.quantity * pos.avg_cost + signed * price + (commission if signed > 0 else -commission)
            new_avg = cost / new_qty
        else:
            closed = min(abs(signed), abs(pos.quantity))
            direction = 1.0 if pos.quantity > 0 else -1.0
            realized = round((price - pos.avg_cost) * closed * direction - commission, 6)
            self.realized_pnl += realized
            self._day_realized[symbol] = self._day_realized.get(symbol, 0.0) + realized
            new_qty = pos.quantity + signed
            if abs(new_qty) < 1e-9:
                new_qty, new_avg = 0.0, 0.0
            elif (new_qty > 0) == (pos.quantity > 0):
                new_avg = pos.avg_cost
            else:  # flipped through zero: the remainder opens at this price
                new_avg = price
        self._positions[symbol] = Position(symbol, con_id, new_qty, round(new_avg, 6))
        return realized

    def positions(self) -> list[Position]:
        """Every contract ever traded, including flat ones (IB keeps reporting them as 0)."""
        return list(self._positions.values())

    def account_values(self, marks: Callable[[str], float]) -> dict[str, float]:
        """Account values that follow fills; ``marks`` gives the current price of a symbol."""
        gross = 0.0
        unrealized = 0.0
        net_stock = 0.0
        for p in self._positions.values():
            if p.quantity == 0:
                continue
            px = marks(p.symbol)
            value = p.quantity * px
            net_stock += value
            gross += abs(value)
            unrealized += value - p.quantity * p.avg_cost
        net_liq = self.cash + net_stock
        init_margin = MARGIN_RATE * gross
        available = net_liq - init_margin
        return {
            "NetLiquidation": round(net_liq, 2),
            "TotalCashValue": round(self.cash, 2),
            "SettledCash": round(self.cash, 2),
            "AccruedCash": 0.0,
            "BuyingPower": round(max(available, 0.0) * 4, 2),
            "EquityWithLoanValue": round(net_liq, 2),
            "GrossPositionValue": round(gross, 2),
            "InitMarginReq": round(init_margin, 2),
            "MaintMarginReq": round(init_margin, 2),
            "FullInitMarginReq": round(init_margin, 2),
            "FullMaintMarginReq": round(init_margin, 2),
            "AvailableFunds": round(available, 2),
            "FullAvailableFunds": round(available, 2),
            "ExcessLiquidity": round(available, 2),
            "FullExcessLiquidity": round(available, 2),
            "Cushion": round(available / net_liq, 6) if net_liq else 0.0,
            "RealizedPnL": round(self.realized_pnl, 2),
            "UnrealizedPnL": round(unrealized, 2),
        }

    def pnl_single(self, symbol: str, marks: Callable[[str], float]) -> PnLSingle:
        """reqPnLSingle for one contract (all zero for one never traded)."""
        p = self._positions.get(symbol)
        quantity = p.quantity if p is not None else 0.0
        value = quantity * marks(symbol) if quantity else 0.0
        unrealized = value - quantity * p.avg_cost if p is not None and quantity else 0.0
        daily = value - self._day_values.get(symbol, 0.0) + self._day_flows.get(symbol, 0.0)
        return PnLSingle(
            quantity,
            round(daily, 2),
            round(unrealized, 2),
            round(self._day_realized.get(symbol, 0.0), 2),
            round(value, 2),
        )

    def pnl(self, marks: Callable[[str], float]) -> PnL:
        """reqPnL for the account: the sum over every contract traded or held today, plus P&L cash adjustments."""
        symbols = set(self._positions) | set(self._day_values) | set(self._day_flows)
        singles = [self.pnl_single(s, marks) for s in symbols]
        return PnL(
            round(sum(x.daily for x in singles) + self._day_other_pnl, 2),
            round(sum(x.unrealized for x in singles), 2),
            round(sum(x.realized for x in singles) + self._day_other_pnl, 2),
        )
