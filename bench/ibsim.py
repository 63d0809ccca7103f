"""How many messages per second ibsim sustains to one official ibapi client.

Subscribes one client to market data for the whole universe, several request ids per symbol,
with the clock at high speed and the pump at its tightest interval, then counts the messages the
client's decoder actually dispatched (tickPrice/tickSize/tickString) over a fixed wall window.

    .venv/bin/python bench/ibsim.py [--seconds 10] [--subs-per-symbol 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's own directory comes first on sys.path and "ibsim" would import
# this very file instead of the package; drop that entry before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from ibapi.client import EClient  # noqa: E402
from ibapi.contract import Contract  # noqa: E402
from ibapi.wrapper import EWrapper  # noqa: E402

from bench.history import emit_figures  # noqa: E402
from ibsim import SimConfig, Simulator  # noqa: E402
from ibsim.config import EXCHANGE_TZ  # noqa: E402


class Counter(EWrapper, EClient):  # type: ignore[misc]
    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.n = 0
        self.synthetic = 0
        self.ready = threading.Event()

    def nextValidId(self, orderId: int) -> None:  # noqa: N802, N803
        self.ready.set()

    def tickPrice(self, req_id: int, tick_type: int, *a: Any) -> None:  # noqa: N802
        self.n += 1
        if tick_type in (1, 2, 4):  # ibapi fires a tickSize of its own for these, not on the wire
            self.synthetic += 1

    def tickSize(self, *a: Any) -> None:  # noqa: N802
        self.n += 1

    def tickString(self, *a: Any) -> None:  # noqa: N802
        self.n += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--subs-per-symbol", type=int, default=10)
    ap.add_argument("--speed", type=float, default=600.0)
    args = ap.parse_args()
    cfg = SimConfig(
        port=0,
        control_port=None,
        speed=args.speed,
        tick_interval=0.0,
        start_time=dt.datetime(2025, 1, 6, 9, 30, tzinfo=EXCHANGE_TZ),
    )
    sim = Simulator(cfg).start()
    app = Counter()
    app.connect("127.0.0.1", sim.port, 1)
    threading.Thread(target=app.run, daemon=True).start()
    app.ready.wait(5)
    req = 0
    for inst in cfg.universe:
        for _ in range(args.subs_per_symbol):
            c = Contract()
            c.symbol, c.secType, c.exchange, c.currency = inst.symbol, "STK", "SMART", "USD"
            req += 1
            app.reqMktData(req, c, "", False, False, [])
    time.sleep(1.0)  # warm-up: subscriptions established, history generated
    n0, s0, t0 = app.n, app.synthetic, time.perf_counter()
    time.sleep(args.seconds)
    n1, s1, t1 = app.n, app.synthetic, time.perf_counter()
    app.disconnect()
    sim.stop()
    wire = ((n1 - n0) - (s1 - s0)) / (t1 - t0)
    callbacks = (n1 - n0) / (t1 - t0)
    print(
        f"ibsim -> 1 ibapi client: {wire:,.0f} wire messages/s received and decoded "
        f"({callbacks:,.0f} wrapper callbacks/s incl. ibapi's synthetic tickSize); "
        f"{req} subscriptions, {args.seconds:.0f} s window, clock {args.speed:g}x"
    )
    emit_figures({"wire_messages_per_s": wire, "callbacks_per_s": callbacks})


if __name__ == "__main__":
    main()
