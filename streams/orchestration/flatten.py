"""Flatten: a ``flatten`` control command becomes one market intent per held symbol in its scope.

Pure: (command, the positions orchestration sees, now) → intents. Each intent sells (buys) the whole long (short)
position at market, with no stop or target, and carries the command id in the ``flatten_id`` term, which tells risk
and execution it is a flatten. The order id is ``ids.flatten_order_id(command_id, symbol)``: a redelivered command
makes the same intents, which risk's decided table and execution's orderRef lookup recognise, never a second order.
A command older than ``max_age`` is stale (a replay of the compacted control topic) and makes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from ibstream import ids
from ibstream.contracts import ControlCommand, OrderIntent
from ibstream.contracts.enums import OrderType, Side, TimeInForce
from ibstream.trading_states import ACCOUNT, scope_of


def in_scope(command: ControlCommand, positions: Mapping[str, float], account: str | None = None) -> dict[str, float]:
    """symbol → signed quantity of every position the command closes: all held ones for the account, else its one
    symbol if held."""
    scope = scope_of(command.target, account)
    held = {symbol: quantity for symbol, quantity in positions.items() if quantity != 0}
    if scope == ACCOUNT:
        return held
    return {scope: held[scope]} if scope in held else {}


def is_stale(command: ControlCommand, now: datetime, max_age: timedelta) -> bool:
    """Whether the command was issued longer than ``max_age`` before ``now`` (wall clock, as the API stamps it)."""
    return now - command.issued_time > max_age


def flatten_intents(
    command: ControlCommand, positions: Mapping[str, float], now: datetime, account: str | None = None
) -> list[OrderIntent]:
    """One market intent per held symbol in scope, for the full opposite quantity, tagged with the command id."""
    return [
        OrderIntent(
            order_id=ids.flatten_order_id(command.command_id, symbol),
            symbol=symbol,
            side=Side.SELL if quantity > 0 else Side.BUY,
            quantity=abs(quantity),
            order_type=OrderType.MKT,
            time_in_force=TimeInForce.DAY,
            flatten_id=command.command_id,
            requested_by=f"flatten:{command.actor}",
            created_time=now,
        )
        for symbol, quantity in sorted(in_scope(command, positions, account).items())
    ]
