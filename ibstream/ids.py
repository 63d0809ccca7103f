"""Deterministic ids (uuid5) for everything a retry or a replay could otherwise duplicate.

The same input always gives the same id, in every process: a redelivered bar, signal or intent produces records
with the ids the first delivery used, so downstream dedup (risk's decided table, execution's ``orderRef`` lookup,
the warehouse) recognises the duplicate. Each id kind hashes a distinct prefix so two kinds never collide.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from functools import lru_cache

#: The project's uuid5 namespace (fixed forever: changing it changes every id).
NAMESPACE = uuid.UUID("5f0c2a1e-7b6d-5c3e-9a41-1b2f3e4d5c6a")


#: SHA-1 already fed the namespace: each id copies it and adds its name (what ``uuid.uuid5`` hashes, done once).
_HASHED_NAMESPACE = hashlib.sha1(NAMESPACE.bytes, usedforsecurity=False)


def _uuid(kind: str, *parts: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, "kind|part|…"))`` without building a ``UUID`` (a backtest makes thousands of
    ids a second): the first 16 bytes of the SHA-1, version 5 and the RFC 4122 variant set, in the 8-4-4-4-12 form."""
    sha = _HASHED_NAMESPACE.copy()
    sha.update("|".join((kind, *parts)).encode())
    digest = bytearray(sha.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def signal_id(symbol: str, strategy: str, bar_start: datetime) -> str:
    """One signal per (symbol, strategy, bar): the bar that triggered it names it."""
    return _uuid("signal", symbol, strategy, bar_start.isoformat())


def run_id(signal_id: str) -> str:
    """One orchestration run per signal."""
    return _uuid("run", signal_id)


@lru_cache(maxsize=1 << 12)
def order_id(run_id: str) -> str:
    """``order_id = uuid5(NAMESPACE, run_id)``: an approved run can only ever produce this one order. Cached: a run's
    entry is asked for its order id at every step (``RunEntry.order_id``)."""
    return _uuid("order", run_id)


def flatten_order_id(command_id: str, symbol: str) -> str:
    """One order per flatten command and symbol: a redelivered command cannot make a second flatten order."""
    return _uuid("flatten", command_id, symbol)


def plan_id(signal_id: str, equity: float, risk_pct: float) -> str:
    """Agent0's plan for a signal under one sizing policy: the same signal and policy give the same plan."""
    return _uuid("plan", signal_id, f"{float(equity):.2f}", f"{float(risk_pct):.4f}")


def decision_id(order_id: str) -> str:
    """One risk decision per order intent; a re-decision after a crash carries the same id."""
    return _uuid("decision", order_id)


def transition_id(signal_id: str, to_status: str, cause: str = "") -> str:
    """One transition record per (signal, new status, cause), so a replayed transition keeps its id."""
    return _uuid("transition", signal_id, to_status, cause)
