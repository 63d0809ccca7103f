"""The account's values and P&L from IB's callbacks, folded into an ``AccountState`` (pure: no I/O, no clock).

IB reports the account in pieces: reqAccountUpdates sends one ``updateAccountValue`` per key and currency (the
account-wide keys in the base currency, ``-S``/``-C`` segment rows, the per-currency keys once per currency and once
as ``BASE``), then ``accountDownloadEnd``; reqPnL sends ``pnl`` about once a second. :func:`fold` keeps the newest
text of every row for our account and the newest P&L; :func:`account_state` turns that into a record once a full
round has arrived since the subscription (the base currency is the currency of the ``NetLiquidation`` row, and every
amount is read in it); :func:`publish_due` decides when a record goes out: at most one per ``min_interval`` seconds
(so a burst of callbacks makes one record), at once when the values changed, and as a heartbeat every ``heartbeat``
seconds otherwise, so readers can judge freshness by the record's time.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace

from ibstream.contracts import AccountState
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


AccountEvent = events.AccountValue | events.AccountDownloadEnd | events.AccountPnL


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
