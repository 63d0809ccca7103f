"""ibsim: an IB Gateway simulator speaking the TWS socket protocol (server version 157).

The official ``ibapi`` client and ``ib_async`` connect to it unchanged. Pure parts
(:mod:`ibsim.market`, :mod:`ibsim.matching`, :mod:`ibsim.messages`, :mod:`ibsim.wire`,
:mod:`ibsim.pacing`) are separate from the I/O (:mod:`ibsim.server`, :mod:`ibsim.control`).
"""

from ibsim.config import DEFAULT_UNIVERSE, Instrument, SimConfig
from ibsim.market import Bar, MarketGenerator, Quote
from ibsim.matching import Execution, OrderSnapshot, Position
from ibsim.server import Simulator

__all__ = [
    "DEFAULT_UNIVERSE",
    "Bar",
    "Execution",
    "Instrument",
    "MarketGenerator",
    "OrderSnapshot",
    "Position",
    "Quote",
    "SimConfig",
    "Simulator",
]
