"""ibsim: an IB Gateway simulator speaking the TWS socket protocol (server versions 157 to 178).

The official ``ibapi`` client and ``ib_async`` connect to it unchanged. Pure parts (:mod:`ibsim.market`,
:mod:`ibstream.sim.matching`, :mod:`ibsim.messages`, :mod:`ibsim.wire`, :mod:`ibsim.pacing`) are separate from the I/O.
The I/O: :mod:`ibsim.simulator` (the public :class:`Simulator`: lifecycle, queries, fault methods), :mod:`ibsim.server`
(listener, sessions, the dispatch table, the pump), one module per API area (:mod:`ibsim.market_data`,
:mod:`ibsim.history`, :mod:`ibsim.orders`, :mod:`ibsim.account`) over the shared state in :mod:`ibsim.gateway`;
the fault actions in :mod:`ibsim.faults`, which the HTTP :mod:`ibsim.control` endpoint uses.
"""

from ibsim.config import DEFAULT_UNIVERSE, Instrument, SimConfig
from ibsim.market import Bar, MarketGenerator
from ibsim.simulator import Simulator
from ibstream.sim.ledger import Position
from ibstream.sim.market_view import Quote
from ibstream.sim.order_values import Execution, OrderSnapshot

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
