"""Command line entry: ``python -m ibsim`` / ``ibstream sim``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
from dataclasses import replace

from ibsim.config import EXCHANGE_TZ, SimConfig
from ibsim.simulator import Simulator
from ibstream import telemetry
from ibstream.config import LOG_LEVELS, load_settings
from ibstream.exceptions import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """Argument parser (exposed so ``ibstream sim --help`` can reuse it)."""
    p = argparse.ArgumentParser(
        prog="ibsim",
        description="A stand-in for IB Gateway with a simulated market and broker: IB's own client libraries "
        "connect to it unchanged (TWS API v157 up to v178).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address")
    p.add_argument("--port", type=int, default=4002, help="TWS API port (0 = any free port)")
    p.add_argument("--control-port", type=int, default=4003, help="HTTP control port; -1 disables it")
    p.add_argument("--seed", type=int, default=42, help="random seed: the same seed gives the same prices")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument(
        "--start", default=None, help="simulated start, ISO 8601 (naive = New York), default today's 09:30 open"
    )
    p.add_argument(
        "--hold-clock",
        action="store_true",
        help="the simulated clock stands at --start until POST /clock/release on the control port",
    )
    p.add_argument(
        "--account", action="append", default=None, help="managed account (repeatable); default DU1234567 (paper)"
    )
    p.add_argument("--symbols", nargs="+", default=None, help="universe, e.g. AAPL MSFT SPY")
    p.add_argument("--volatility", type=float, default=None, help="annualised volatility")
    p.add_argument("--spread-ticks", type=int, default=None, help="bid/ask spread in ticks (default 2)")
    p.add_argument(
        "--hours",
        choices=("rth", "24h"),
        default="rth",
        help="rth: the NYSE calendar (09:30-16:00 New York on trading days, 13:00 on half days); 24h: always open",
    )
    p.add_argument("--partial-fill", type=float, default=0.0, help="max shares per execution (0 = all)")
    p.add_argument(
        "--no-pacing", action="store_true", help="do not enforce IB's limits on historical data requests (error 162)"
    )
    p.add_argument(
        "--delayed-only",
        action="store_true",
        help="act like an account without live market data: delayed quotes only (IB errors 354, 10167)",
    )
    p.add_argument(
        "--tick-interval",
        type=float,
        default=None,
        help="wall seconds between market-data pushes per symbol (default 0.1; chaos/soak load)",
    )
    p.add_argument(
        "--daily-restart",
        metavar="HH:MM",
        default=None,
        help="restart the gateway every day at this New York time on the simulated clock (IB Gateway's auto-restart)",
    )
    p.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Translate parsed arguments into a :class:`SimConfig`."""
    cfg = SimConfig(
        host=args.host,
        port=args.port,
        control_port=None if args.control_port < 0 else args.control_port,
        seed=args.seed,
        speed=args.speed,
        trading_hours=args.hours,
        partial_fill_max=args.partial_fill,
        enforce_pacing=not args.no_pacing,
        live_data_entitled=not args.delayed_only,
        hold_clock=args.hold_clock,
    )
    if args.start:
        start = dt.datetime.fromisoformat(args.start)
        cfg = replace(cfg, start_time=start if start.tzinfo else start.replace(tzinfo=EXCHANGE_TZ))
    if args.account:
        cfg = replace(cfg, accounts=tuple(args.account))
    if args.symbols:
        cfg = cfg.with_symbols(args.symbols)
    if args.volatility is not None:
        cfg = replace(cfg, volatility=args.volatility)
    if args.spread_ticks is not None:
        cfg = replace(cfg, spread_ticks=args.spread_ticks)
    if args.tick_interval is not None:
        if args.tick_interval <= 0:
            raise ValueError("--tick-interval must be positive")
        cfg = replace(cfg, tick_interval=args.tick_interval)
    if args.daily_restart is not None:
        cfg = replace(cfg, daily_restart_time=_hh_mm(args.daily_restart))
    return cfg


def _hh_mm(text: str) -> str:
    """A time of day as HH:MM, or ValueError naming the flag."""
    try:
        return dt.datetime.strptime(text.strip(), "%H:%M").strftime("%H:%M")
    except ValueError:
        raise ValueError(f"--daily-restart must be HH:MM, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:  # `python -m ibsim` has no CLI around it to report this
        print(f"ibsim: {exc}", file=sys.stderr)
        return 2
    # JSON lines like every deployable's, so one log pipeline reads them all.
    telemetry.configure("ibsim", args.log_level or settings.log_level)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        logging.getLogger("ibsim").error("bad arguments: %s", exc)
        return 2
    sim = Simulator(cfg)

    async def run() -> None:
        task = asyncio.create_task(sim.serve_forever())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    except OSError as exc:
        logging.getLogger("ibsim").error("cannot start: %s", exc)
        return 1
    return 0
