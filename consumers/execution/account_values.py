"""The account's values and P&L from IB's callbacks, folded into an ``AccountState`` (pure: no I/O, no clock).

IB reports the account in pieces: reqAccountUpdates sends one ``updateAccountValue`` per key and currency (the
account-wide keys in the base currency, ``-S``/``-C`` segment rows, the per-currency keys once per currency and once
as ``BASE``) and one ``updatePortfolio`` per position, then ``accountDownloadEnd``; reqPnL sends ``pnl`` about once a
second, and reqPnLSingle (one per held contract, :func:`singles_to_change` says which to start and stop) ``pnlSingle``.
:func:`fold` keeps the newest text of every row for our account, the held contracts and the newest P&L of the account
and of each held contract; :func:`account_state` turns that into a record once a full
round has arrived since the subscription (the base currency is the currency of the ``NetLiquidation`` row, and every
amount is read in it); :func:`publish_due` decides when a record goes out: at most one per ``min_interval`` seconds
(so a burst of callbacks makes one record), at once when the values changed, and as a heartbeat every ``heartbeat``
seconds otherwise, so readers can judge freshness by the record's time.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace

from ibstream.contracts import AccountState, PositionPnL
from ibstream.ib import events

#: The contract's amounts and the updateAccountValue keys they come from.
FIELD_KEYS: dict[str, str] = {
    "net_liquidation": "NetLiquidation",
    "buying_power": "BuyingPower",
    "available_funds": "AvailableFunds",
    "excess_liquidity": "ExcessLiquidity",
    "gross_position_value": "GrossPositionValue",
}

#: IB's currency for the per-currency rows that total every currency in the base currency.
BASE = "BASE"


@dataclass(frozen=True)
class AccountView:
    """What IB has told us about one account since the current subscription."""

    account: str
    #: Newest text per (key, currency) of our account's updateAccountValue rows.
    values: dict[tuple[str, str], str] = field(default_factory=dict)
    #: A full round (accountDownloadEnd) arrived since the subscription: the values are complete.
    complete: bool = False
    daily_pnl: float | None = None
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None
    #: Held contracts (non-zero positions from updatePortfolio): con_id -> symbol.
    held: dict[int, str] = field(default_factory=dict)
    #: Live reqPnLSingle subscriptions: request id -> con_id.
    singles: dict[int, int] = field(default_factory=dict)
    #: The newest pnlSingle per con_id.
    single_pnl: dict[int, events.PositionPnL] = field(default_factory=dict)


AccountEvent = (
    events.AccountValue | events.AccountDownloadEnd | events.AccountPnL | events.PortfolioUpdate | events.PositionPnL
)


def fold(view: AccountView, event: AccountEvent) -> AccountView:
    """The view after one IB callback; rows of other accounts change nothing."""
    match event:
        case events.AccountValue(key=key, value=value, currency=currency, account=account):
            if account not in ("", view.account):
                return view
            return replace(view, values={**view.values, (key, currency): value})
        case events.AccountDownloadEnd(account=account):
            return view if account not in ("", view.account) else replace(view, complete=True)
        case events.AccountPnL(daily=daily, unrealized=unrealized, realized=realized):
            return replace(view, daily_pnl=daily, unrealized_pnl=unrealized, realized_pnl=realized)
        case events.PortfolioUpdate(account=account, con_id=con_id, symbol=symbol, position=position):
            if account not in ("", view.account):
                return view
            held = {c: s for c, s in view.held.items() if c != con_id}
            if position != 0:
                held[con_id] = symbol
            return replace(view, held=held)
        case events.PositionPnL(req_id=req_id):
            subscribed = view.singles.get(req_id)
            if subscribed is None:
                return view
            return replace(view, single_pnl={**view.single_pnl, subscribed: event})


def singles_to_change(view: AccountView) -> tuple[list[int], list[int]]:
    """(con_ids to start reqPnLSingle for, request ids to cancel): one subscription per held contract."""
    subscribed = set(view.singles.values())
    start = sorted(c for c in view.held if c not in subscribed)
    cancel = sorted(r for r, c in view.singles.items() if c not in view.held)
    return start, cancel


def with_singles(view: AccountView, started: dict[int, int], cancelled: list[int]) -> AccountView:
    """The view after starting ``started`` (request id -> con_id) and cancelling ``cancelled`` subscriptions."""
    singles = {r: c for r, c in view.singles.items() if r not in cancelled} | started
    live = set(singles.values())
    return replace(view, singles=singles, single_pnl={c: e for c, e in view.single_pnl.items() if c in live})


def position_pnls(view: AccountView) -> list[PositionPnL]:
    """The held contracts' newest pnlSingle, by symbol."""
    out = [
        PositionPnL(
            symbol=view.held[con_id],
            con_id=con_id,
            position=e.position,
            daily_pnl=e.daily,
            unrealized_pnl=e.unrealized,
            realized_pnl=e.realized,
            market_value=e.value,
        )
        for con_id, e in view.single_pnl.items()
        if con_id in view.held
    ]
    return sorted(out, key=lambda p: p.symbol)


def base_currency(view: AccountView) -> str | None:
    """The currency IB states NetLiquidation in (never ``BASE``), or None before that row arrived."""
    found = sorted(c for k, c in view.values if k == "NetLiquidation" and c not in ("", BASE))
    return found[0] if found else None


def _amount(view: AccountView, key: str, currency: str) -> float | None:
    text = view.values.get((key, currency))
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def account_state(view: AccountView, time: dt.datetime) -> AccountState | None:
    """The record of the view read at ``time``, or None while a full round with every amount is missing."""
    currency = base_currency(view)
    if not view.complete or currency is None:
        return None
    amounts = {name: _amount(view, key, currency) for name, key in FIELD_KEYS.items()}
    if any(v is None for v in amounts.values()):
        return None
    return AccountState(
        account=view.account,
        base_currency=currency,
        daily_pnl=view.daily_pnl,
        unrealized_pnl=view.unrealized_pnl,
        realized_pnl=view.realized_pnl,
        positions=position_pnls(view),
        time=time,
        **{name: float(v) for name, v in amounts.items() if v is not None},
    )


def same_values(a: AccountState, b: AccountState) -> bool:
    """Whether two records say the same thing (their read times aside)."""
    return a.model_copy(update={"time": b.time}) == b


@dataclass(frozen=True)
class PublishPolicy:
    """At most one record per ``min_interval`` seconds; one at least every ``heartbeat`` seconds."""

    min_interval: float
    heartbeat: float


def publish_due(
    candidate: AccountState | None,
    last: AccountState | None,
    last_at: float | None,
    now: float,
    policy: PublishPolicy,
) -> bool:
    """Whether ``candidate`` goes out now, given the last record published (at ``last_at``, wall seconds)."""
    if candidate is None:
        return False
    if last is None or last_at is None:
        return True
    elapsed = now - last_at
    if elapsed < policy.min_interval:
        return False
    return elapsed >= policy.heartbeat or not same_values(candidate, last)
