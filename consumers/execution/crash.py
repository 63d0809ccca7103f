"""Crash points of the placement protocol (``placement``), for the crash tests and the chaos checker's self-test.

``build()`` reads them from the environment once and injects them; an executor built otherwise has none. The points
are named after the protocol's steps: ``before_place`` (ids journaled, nothing sent), ``mid_bracket`` (a bracket's
parent sent, its children not), ``after_place`` (every leg sent, no event committed) and ``after_event`` (the
events are on the broker inside the open transaction, not committed).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Test hook (crash tests only): SIGKILL this process at the named point of the placement protocol.
CRASH_AT_ENV = "IBSTREAM_EXECUTION_CRASH_AT"
#: Test hook: only for this order id (unset: the first order that reaches the point).
CRASH_ORDER_ENV = "IBSTREAM_EXECUTION_CRASH_ORDER"
CRASH_POINTS = frozenset({"before_place", "mid_bracket", "after_place", "after_event"})
#: Test hook (chaos checker's self-test only, never set in a deployment): "1" deliberately breaks the placement
#: protocol — no orderRef lookup at IB and no journaled ids — so a re-delivered order is placed a second time. It
#: exists to prove the chaos checker reports duplicate orders.
NO_DEDUP_ENV = "IBSTREAM_EXECUTION_TEST_NO_DEDUP"


@dataclass(frozen=True)
class CrashPoints:
    """Where to SIGKILL ourselves (nowhere by default), and whether to skip the duplicate check."""

    at: str = ""
    order_id: str = ""
    no_dedup: bool = False

    def __post_init__(self) -> None:
        if self.at and self.at not in CRASH_POINTS:
            raise ValueError(f"{CRASH_AT_ENV}={self.at!r}: expected one of {sorted(CRASH_POINTS)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CrashPoints:
        points = cls(environ.get(CRASH_AT_ENV, ""), environ.get(CRASH_ORDER_ENV, ""), environ.get(NO_DEDUP_ENV) == "1")
        if points.no_dedup:
            log.error("test hook %s=1: duplicate orders are possible; never run like this in production", NO_DEDUP_ENV)
        return points

    def hit(self, point: str, order_id: str) -> None:
        """SIGKILL ourselves if ``point`` (for ``order_id``) is the configured crash point."""
        if self.at != point or (self.order_id and self.order_id != order_id):
            return
        log.warning("test hook: SIGKILL at %s", point, extra={"order_id": order_id})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
