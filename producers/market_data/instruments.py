"""The configured symbols as IB contracts: qualified once at the first connection, then subscribed by request id."""

from __future__ import annotations

import itertools
import queue
from collections.abc import Callable
from dataclasses import dataclass

from ibstream.exceptions import ConfigError
from ibstream.ib import events
from ibstream.ib.codes import CodeKind
from ibstream.ib.protocol import Session
from ibstream.ib.session import stock_contract

QUALIFY_TIMEOUT_SECONDS = 15.0


@dataclass
class Instrument:
    symbol: str
    con_id: int
    primary_exchange: str
    quote_req: int = 0
    bar_req: int = 0


def qualify(
    session: Session,
    symbols: list[str],
    req_ids: itertools.count[int],
    wall: Callable[[], float],
    dispatch: Callable[[events.IbEvent], None],
) -> dict[str, events.ContractDetail]:
    """IB's contract for every symbol (other events meanwhile go to ``dispatch``); ConfigError naming the setting
    for a symbol IB does not know or did not qualify in time."""
    pending: dict[int, str] = {}
    for symbol in symbols:
        req_id = next(req_ids)
        pending[req_id] = symbol
        session.req_contract_details(req_id, stock_contract(symbol))
    deadline = wall() + QUALIFY_TIMEOUT_SECONDS
    found: dict[str, events.ContractDetail] = {}
    while pending and wall() < deadline:
        try:
            event = session.events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, events.ContractDetail) and event.req_id in pending:
            found.setdefault(pending[event.req_id], event)
        elif isinstance(event, events.ContractDetailsEnd) and event.req_id in pending:
            pending.pop(event.req_id)
        elif isinstance(event, events.IbError) and event.req_id in pending:
            if event.kind is CodeKind.NO_SECURITY:
                raise ConfigError("IBSTREAM_SYMBOLS", f"IB knows no stock {pending[event.req_id]!r} ({event.message})")
            pending.pop(event.req_id)
        else:
            dispatch(event)
    missing = [symbol for symbol in symbols if symbol not in found]
    if missing:
        raise ConfigError(
            "IBSTREAM_SYMBOLS", f"IB did not qualify {', '.join(missing)} within {QUALIFY_TIMEOUT_SECONDS:.0f}s"
        )
    return found
