"""The `ibstream` console script: one entry point for every deployable and operator command.

Deployables and the operator tooling are loaded lazily by module name, so the core never imports them (import-linter
enforces it) and a command that needs one deployable does not pay for loading the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeAlias

import ibstream
from ibstream.config import LOG_LEVELS, get_settings
from ibstream.exceptions import ConfigError, IbstreamError

#: `ibstream run NAME` → module whose ``main(argv)`` runs that deployable.
DEPLOYABLES: dict[str, str] = {
    "producer": "producers.market_data",
    "streams": "streams.app",
    "execution": "consumers.execution",
    "sink": "consumers.warehouse_sink",
    "api": "api.app",
    "agent0": "api.agent0",
}

#: The operator commands (demo, uat, chaos, stack, replay, dlq) live in the tooling package, which the core never
#: imports: `ibstream NAME` calls ``NAME(args)`` of the module named here, loaded by name, with the arguments parsed
#: below.
TOOLING = "tooling.cli"

#: What `ibstream --help` says, for users rather than developers: each command's one line, grouped. Each line is
#: also the description its own `--help` starts with. Kept under 68 characters so the list fits 80 columns.
COMMAND_GROUPS: dict[str, dict[str, str]] = {
    "getting started": {
        "demo": "a simulated trading day through the whole pipeline (~4 minutes)",
    },
    "running the pipeline": {
        "stack": "start, stop or check the local Kafka broker and schema registry",
        "topics": "create the pipeline's Kafka topics and check their settings",
        "run": "run one service: producer, streams, execution, sink, api, agent0",
        "sim": "run the IB Gateway simulator (a simulated market and broker)",
    },
    "operating": {
        "audit": "ready-made warehouse reports: order trails, feed gaps, rejections…",
        "replay": "re-send a topic's records from a time window (e.g. to fill a gap)",
        "dlq": "list, inspect and send back records that could not be processed",
        "token": "issue an access token (viewer, trader or admin for people; service for streams → Agent0)",
        "uat": "acceptance tests on the simulator or a paper account; go/no-go",
        "chaos": "soak test with injected faults, checked for lost or doubled orders",
    },
    "strategy research": {
        "backtest": "replay recorded bars through strategies, risk and sim fills",
        "history": "fetch IB's historical bars into the warehouse (for backtests)",
    },
}
COMMANDS = {name: line for group in COMMAND_GROUPS.values() for name, line in group.items()}

#: `ibstream run --help`: what each service does.
SERVICES = {
    "producer": "IB quotes and 5-second bars into Kafka, backfilling any gaps",
    "streams": "trading signals, orchestration of runs and pre-trade risk checks",
    "agent0": "turns a signal into a sized order plan with entry, stop and target",
    "execution": "places approved orders with IB and reports fills and positions",
    "sink": "copies every Kafka topic into the warehouse",
    "api": "HTTP API and operator console: history, approvals, kill switch",
}

#: `ibstream audit --help`: the ready-made reports (ibstream/warehouse/audits.py has their SQL).
AUDIT_REPORTS = {
    "order-trail": "one order from signal to fills (--order-id)",
    "feed-gaps": "bars, gaps and feed lag by symbol and day",
    "signal-outcomes": "hit rate, average R and P&L by strategy",
    "strategy-scores": "every signal scored: hit rate, expectancy, profit factor by strategy, symbol and day",
    "risk-rejections": "rejected orders by failed risk check and day",
    "unreconciled-orders": "orders whose records disagree (e.g. routed, never acknowledged)",
    "dlq-contents": "records the pipeline could not process",
    "trade-reviews": "closed trades: plan against fills, slippage, P&L, R",
}

DESCRIPTION = """\
ibstream paper-trades on Interactive Brokers: it streams IB market data through
Kafka, turns it into trading signals, plans orders and checks each against
pre-trade risk limits, waits for your approval (or approval rules), places the
approved orders with IB, and keeps every record in a ClickHouse warehouse for
audit and replay."""

EPILOG = """\
Run `ibstream <command> --help` for a command's options. Settings come from
IBSTREAM_* environment variables; README.md in the ibstream repository lists
them and describes every command."""


def _load(module_name: str, attribute: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise IbstreamError(f"{module_name} is not part of this installation of ibstream") from None
        raise
    return getattr(module, attribute)


def _load_main(module_name: str) -> Callable[[list[str]], int]:
    main: Callable[[list[str]], int] = _load(module_name, "main")
    return main


def _load_tool(command: str) -> Callable[[argparse.Namespace], int]:
    handler: Callable[[argparse.Namespace], int] = _load(TOOLING, command)
    return handler


def _tool(args: argparse.Namespace) -> int:
    return _load_tool(args.command)(args)


def _is_built(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


def _topics(args: argparse.Namespace) -> int:
    from ibstream.kafka.clients import create_admin
    from ibstream.kafka.topics import catalogue, ensure_topics

    settings = get_settings()
    report = ensure_topics(
        create_admin(settings), catalogue(settings.kafka.topic_prefix), replication=settings.kafka.topic_replication
    )
    for name in report.created:
        print(f"created     {name}")
    for name, changes in report.reconciled.items():
        summary = ", ".join(f"{key}: {old} → {new}" for key, (old, new) in changes.items())
        print(f"reconciled  {name} ({summary})")
    for name, problem in report.drift.items():
        print(f"DRIFT       {name}: {problem}")
    print(
        f"{len(report.created)} created, {len(report.reconciled)} reconciled, {len(report.unchanged)} unchanged, "
        f"{len(report.drift)} drifted"
    )
    return 0 if report.ok else 1


def _run(args: argparse.Namespace) -> int:
    return _load_main(DEPLOYABLES[args.deployable])(list(args.rest))


def _sim(args: argparse.Namespace) -> int:
    return _load_main("ibsim.cli")(list(args.rest))


def _token(args: argparse.Namespace) -> int:
    # The token code lives with the API (its verifier must agree with it); loaded by name like a deployable.
    argv = ["--role", args.role, "--subject", args.subject] + (["--ttl", args.ttl] if args.ttl else [])
    return _load_main("api.token_cli")(argv)


def _utc_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        expected = "an ISO 8601 time such as 2026-11-24T14:30:00Z"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _audit(args: argparse.Namespace) -> int:
    from ibstream.warehouse import Warehouse, WarehouseLockedError
    from ibstream.warehouse.audits import AuditFilters, audit_parameters, execute_audit, find_audit, render
    from ibstream.warehouse.remote import through_api

    filters = AuditFilters(
        day=args.day,
        start=args.start,
        end=args.end,
        symbol=args.symbol,
        strategy=args.strategy,
        order_id=args.order_id,
    )
    audit_parameters(find_audit(args.name), filters)  # bad input is refused before anything is opened or called
    settings = get_settings()
    try:
        with Warehouse.open(settings) as warehouse:
            result = execute_audit(warehouse, args.name, filters)
    except WarehouseLockedError as locked:
        # The embedded directory is held (by the API, in the embedded default): the same audit through the API.
        reader = through_api(settings, locked)
        try:
            result = reader.audit(args.name, filters)
        finally:
            reader.close()
    print(render(result, args.format))
    return 0


class _VersionAction(argparse.Action):
    """``--version``; reads the package metadata only when asked (argparse's own action wants the text up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"ibstream {ibstream.version()}")
        parser.exit()


def _global_options() -> argparse.ArgumentParser:
    """The options that come before the command, also parsed alone when `run`/`sim` hand the rest through."""
    options = argparse.ArgumentParser(prog="ibstream", add_help=False)
    options.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL for everything this command runs (sets IBSTREAM_LOG_LEVEL; "
        "default INFO)",
    )
    return options


def _commands_text() -> str:
    lines = []
    for group, commands in COMMAND_GROUPS.items():
        lines += [f"{group}:", *(f"  {name + ' ':<8}{line}" for name, line in commands.items()), ""]
    return "\n".join(lines).rstrip()


#: The ``ibstream <command>`` subparsers; one ``_add_<command>`` adds each command and its options.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibstream",
        usage="ibstream [-h] [--version] [--log-level LEVEL] <command> ...",
        description=f"{DESCRIPTION}\n\n{_commands_text()}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options()],
    )
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    # The grouped list in the description replaces argparse's flat one.
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="<command>", help=argparse.SUPPRESS, prog="ibstream"
    )
    for add in (
        _add_stack,
        _add_topics,
        _add_run,
        _add_sim,
        _add_token,
        _add_demo,
        _add_chaos,
        _add_uat,
        _add_replay,
        _add_dlq,
        _add_audit,
        _add_backtest,
        _add_history,
    ):
        add(commands)
    return parser


def _add_stack(commands: _Commands) -> None:
    stack = commands.add_parser("stack", description=COMMANDS["stack"])
    stack.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start (a second `up` reports the running broker); down: stop what `up` started; "
        "status: state and topics",
    )
    stack.add_argument("--registry", action="store_true", help="also start the Apicurio schema registry")
    stack.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="up: 1 (default) for a single broker, 3 for a KRaft cluster on consecutive port pairs from "
        "IBSTREAM_STACK_KAFKA_PORT (replication 3, min ISR 2)",
    )
    stack.set_defaults(handler=_tool)


def _add_topics(commands: _Commands) -> None:
    topics = commands.add_parser("topics", description=COMMANDS["topics"])
    topics.add_argument(
        "action",
        choices=["ensure"],
        help="create missing topics and their dead-letter topics, align retention and cleanup "
        "settings, report a partition count that differs (exit 1) without changing it",
    )
    topics.set_defaults(handler=_topics)


def _add_run(commands: _Commands) -> None:
    run = commands.add_parser(
        "run",
        description=f"{COMMANDS['run']}\n\n" + "\n".join(f"  {n:<11}{line}" for n, line in SERVICES.items()),
        epilog="`ibstream run NAME --help` lists a service's own options, e.g. --log-level.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("deployable", choices=sorted(DEPLOYABLES), metavar="NAME", help="the service to run (above)")
    run.add_argument("rest", nargs=argparse.REMAINDER, metavar="...", help="the service's own options")
    run.set_defaults(handler=_run)


def _add_sim(commands: _Commands) -> None:
    sim = commands.add_parser("sim", description=COMMANDS["sim"], add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(handler=_sim)


def _add_token(commands: _Commands) -> None:
    token = commands.add_parser("token", description=COMMANDS["token"])
    token.add_argument(
        "--role",
        required=True,
        choices=["viewer", "trader", "admin", "service"],
        help="viewer reads; trader also starts, approves and rejects runs; admin also flips the kill switch; "
        "service is streams' identity towards Agent0 (plans only, reads nothing of the API)",
    )
    token.add_argument(
        "--subject",
        default="dev",
        help="who the token is for, recorded as the actor of every command sent with it (default: dev)",
    )
    token.add_argument("--ttl", default=None, help="how long it is valid: 900 (seconds), 15m, 8h, 7d (default: 8h)")
    token.set_defaults(handler=_token)


def _add_demo(commands: _Commands) -> None:
    demo = commands.add_parser("demo", description=COMMANDS["demo"])
    demo.add_argument(
        "--speed",
        type=float,
        default=120.0,
        help="simulated seconds per wall second (default 120: a trading day in about 3.5 minutes)",
    )
    demo.add_argument(
        "--approve",
        choices=["manual", "policy"],
        default="manual",
        help="manual: the demo approves runs through the API as a trader; policy: the rules decide",
    )
    demo.add_argument(
        "--fault-at", default="11:00", help="New York time the simulated gateway drops its connections (default 11:00)"
    )
    demo.add_argument("--no-fault", action="store_true", help="no simulated gateway drop")
    demo.add_argument("--session-minutes", type=float, default=None, help="stop after this much market time")
    demo.add_argument(
        "--keep", action="store_true", help="leave the Kafka broker, the simulator and the API running afterwards"
    )
    demo.add_argument("--no-live", action="store_true", help="no live terminal view (logs only)")
    demo.set_defaults(handler=_tool)


def _add_chaos(commands: _Commands) -> None:
    chaos = commands.add_parser("chaos", description=COMMANDS["chaos"])
    chaos.add_argument("--minutes", type=float, default=10.0, help="wall minutes of faults and load (default 10)")
    chaos.add_argument("--rate", type=float, default=2000.0, help="quotes per second across all symbols (default 2000)")
    chaos.add_argument("--seed", type=int, default=1, help="fault schedule seed: the same seed, the same faults")
    chaos.add_argument("--faults", default=None, help="comma-separated fault kinds (default: all)")
    chaos.add_argument(
        "--max-faults", type=int, default=None, help="at most this many faults, the schedule's first (default: all)"
    )
    chaos.add_argument("--symbols", nargs="*", default=None, help="symbols to trade (default: the simulator's ten)")
    chaos.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second")
    chaos.add_argument("--dir", default=None, help="state directory (default: a new temporary one)")
    chaos.add_argument("--json", default="chaos-report.json", help="where the JSON report goes")
    chaos.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="1: a single private broker; 3: a private KRaft cluster (replication 3, min ISR 2) with the cluster "
        "faults (leader kills, rolling restarts) in the catalogue",
    )
    chaos.add_argument("--broker-port", type=int, default=None, help="the cluster's first port (default: free ports)")
    chaos.set_defaults(handler=_tool)


def _add_uat(commands: _Commands) -> None:
    uat = commands.add_parser("uat", description=COMMANDS["uat"])
    uat.add_argument(
        "--verdict", action="store_true", help="print go/no-go from the recorded sessions (exit 0 only on go)"
    )
    uat.add_argument(
        "--sign-off",
        action="store_true",
        help="record a sign-off of the current verdict (--by, --note); a no-go is refused with exit 1",
    )
    uat.add_argument("--by", default=None, help="with --sign-off: who signs off")
    uat.add_argument("--note", default=None, help="with --sign-off: why (free text, recorded)")
    uat.add_argument(
        "--required",
        type=int,
        default=None,
        help="consecutive passing trading days on a paper gateway needed for go "
        "(default: IBSTREAM_UAT_REQUIRED_SESSIONS)",
    )
    uat.add_argument("--gateway", default=None, help="HOST:PORT of a real paper gateway instead of the simulator")
    uat.add_argument("--allow-orders", action="store_true", help="with --gateway: place paper orders")
    uat.add_argument("--minutes", type=float, default=5.0, help="with --gateway: wall minutes to run")
    uat.add_argument(
        "--full-session",
        action="store_true",
        help="with --gateway: run until today's close (start before the open to cover the full session)",
    )
    uat.add_argument("--sessions", default=None, help="comma-separated subset of main,close,desk")
    uat.add_argument("--reports-dir", default=None, help="where reports go (default: STATE_DIR/uat)")
    uat.set_defaults(handler=_tool)


def _add_replay(commands: _Commands) -> None:
    replay = commands.add_parser("replay", description=COMMANDS["replay"])
    replay.add_argument(
        "--topic",
        required=True,
        help="a market-data topic (md.*) without the prefix, e.g. md.bars.5s.v1; trading and control topics refused",
    )
    replay.add_argument(
        "--from",
        dest="start",
        type=_utc_time,
        required=True,
        help="records at or after this time (ISO 8601; UTC unless it has an offset)",
    )
    replay.add_argument("--to", dest="end", type=_utc_time, required=True, help="records before this time")
    replay.add_argument("--symbols", nargs="*", help="only these symbols (space or comma separated)")
    replay.add_argument("--target-topic", help="topic to write to, without the prefix (default: --topic)")
    replay.add_argument(
        "--source",
        choices=["kafka", "warehouse"],
        default="kafka",
        help="read from Kafka, or from the warehouse once Kafka no longer holds the window (default: kafka); "
        "while the API holds the embedded warehouse, through the API with an admin IBSTREAM_API_TOKEN",
    )
    replay.add_argument("--rate", type=float, default=None, help="at most this many records per second")
    replay.set_defaults(handler=_tool)


def _add_dlq(commands: _Commands) -> None:
    dlq = commands.add_parser(
        "dlq",
        description=f"{COMMANDS['dlq']}\n\n"
        "  list     a topic's dead letters: origin, error, whether sent back\n"
        "  show     one dead letter in full: key, value, headers, stack trace\n"
        "  redrive  send dead letters back to their topic once the cause is\n"
        "           fixed: original bytes, key and headers; never twice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dlq.add_argument("action", choices=["list", "show", "redrive"], help="what to do (above)")
    dlq.add_argument(
        "--topic",
        required=True,
        help="the topic, without the prefix, e.g. md.quotes.v1 (or its dead-letter topic, md.quotes.dlq.v1)",
    )
    dlq.add_argument(
        "--from",
        dest="start",
        type=_utc_time,
        default=None,
        help="dead letters written at or after this time (ISO 8601; UTC unless it has an offset)",
    )
    dlq.add_argument("--to", dest="end", type=_utc_time, default=None, help="dead letters written before this time")
    dlq.add_argument(
        "--offset",
        type=int,
        nargs="+",
        default=[],
        help="only the dead letters at these offsets of the dead-letter topic (show: exactly one)",
    )
    dlq.add_argument("--dry-run", action="store_true", help="redrive: list what would be sent back, and send nothing")
    dlq.set_defaults(handler=_tool)


def _add_backtest(commands: _Commands) -> None:
    backtest = commands.add_parser(
        "backtest",
        description=f"{COMMANDS['backtest']}\n\n"
        "The same strategy code, orchestration policy, risk checks and simulated\n"
        "matching (fills, commissions, brackets) as the pipeline, in one process.\n"
        "The report (HTML, equity PNG, JSON) goes to STATE_DIR/backtests/<time>/.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backtest.add_argument(
        "--strategies", nargs="*", default=[], help="instance or strategy names (default: every enabled instance)"
    )
    backtest.add_argument("--symbols", nargs="*", default=[], help="symbols (space or comma separated; default: all)")
    backtest.add_argument(
        "--from", dest="start", type=_utc_time, required=True, help="bars starting at or after this time (ISO 8601)"
    )
    backtest.add_argument("--to", dest="end", type=_utc_time, required=True, help="bars starting before this time")
    backtest.add_argument(
        "--source",
        nargs="+",
        default=["warehouse"],
        metavar="SOURCE",
        help="warehouse (default), kafka, or csv FILE (columns symbol,start,open,high,low,close[,volume])",
    )
    backtest.add_argument(
        "--approve",
        choices=["all", "policy", "none"],
        default="all",
        help="all: every planned run is approved (default); policy: only what the approval policy approves; "
        "none: nothing is (signals and plans only)",
    )
    backtest.add_argument("--cash", type=float, default=None, help="starting cash (default: IBSTREAM_ACCOUNT_EQUITY)")
    backtest.set_defaults(handler=_tool)


def _add_history(commands: _Commands) -> None:
    history = commands.add_parser(
        "history",
        description=f"{COMMANDS['history']}\n\n"
        "Requests are paced to IB's historical data limits (60 per 10 minutes), so a\n"
        "long window takes a while; fetching a window again replaces its bars.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("action", choices=["fetch"], help="fetch: ask IB for the bars and store them")
    history.add_argument("--symbols", nargs="+", required=True, help="symbols (space or comma separated)")
    history.add_argument(
        "--from", dest="start", type=_utc_time, required=True, help="bars starting at or after this time (ISO 8601)"
    )
    history.add_argument("--to", dest="end", type=_utc_time, required=True, help="bars starting before this time")
    history.add_argument(
        "--bar-size",
        default="5 secs",
        choices=["5 secs", "1 min", "5 mins", "15 mins", "1 hour", "1 day"],
        help="IB's bar size (default: 5 secs, what backtests replay)",
    )
    history.add_argument("--client-id", type=int, default=41, help="IB API client id of this connection (default: 41)")
    history.set_defaults(handler=_tool)


def _add_audit(commands: _Commands) -> None:
    audit = commands.add_parser(
        "audit",
        description=f"{COMMANDS['audit']}\n\n" + "\n".join(f"  {n:<21}{line}" for n, line in AUDIT_REPORTS.items()),
        epilog="A filter a report does not take is refused, naming it. While the API holds\n"
        "the embedded warehouse, the report is read through it: set IBSTREAM_API_TOKEN\n"
        "(a viewer token) and, if it is not on this machine's IBSTREAM_API_PORT,\n"
        "IBSTREAM_API_URL.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Kept literal so `--help` needs no warehouse import; a unit test checks it matches the audit registry.
    audit.add_argument("name", choices=list(AUDIT_REPORTS), metavar="REPORT", help="the report to run (above)")
    audit.add_argument("--day", type=date.fromisoformat, default=None, help="UTC day, YYYY-MM-DD (or --from/--to)")
    audit.add_argument(
        "--from",
        dest="start",
        type=_utc_time,
        default=None,
        metavar="TIME",
        help="at or after this time (ISO 8601; UTC unless it has an offset)",
    )
    audit.add_argument("--to", dest="end", type=_utc_time, default=None, metavar="TIME", help="before this time")
    audit.add_argument("--symbol", default=None, help="one symbol")
    audit.add_argument("--strategy", default=None, help="one strategy (signal-outcomes, trade-reviews)")
    audit.add_argument("--order-id", default=None, help="the order to trace (order-trail)")
    audit.add_argument("--format", choices=["table", "csv", "json"], default="table", help="default: table")
    audit.set_defaults(handler=_audit)


def _bench(args: argparse.Namespace) -> int:
    # bench/ lives in the checkout, not in the installed package: run it from the project root.
    from ibstream.config import PROJECT_ROOT

    return subprocess.call([sys.executable, "-m", "bench", *args.rest], cwd=PROJECT_ROOT)


def _passthrough(argv: list[str]) -> argparse.Namespace | None:
    """`sim` and `run NAME` hand every later argument to the deployable's own parser (argparse's REMAINDER
    does not pass options like --port through a subparser)."""
    if argv[:1] == ["sim"]:
        return argparse.Namespace(handler=_sim, rest=argv[1:])
    if argv[:1] == ["bench"]:
        return argparse.Namespace(handler=_bench, rest=argv[1:])
    if argv[:1] == ["run"] and len(argv) >= 2 and argv[1] in DEPLOYABLES:
        return argparse.Namespace(handler=_run, deployable=argv[1], rest=argv[2:])
    return None


def _split_log_level(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--log-level LEVEL`` given before the command, and the command with everything after it."""
    split = 0
    while split < len(argv) and (argv[split] == "--log-level" or argv[split].startswith("--log-level=")):
        split += 1 if "=" in argv[split] else 2
    return argv[:split], argv[split:]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    leading, command = _split_log_level(arguments)
    args = _passthrough(command)
    if args is None:
        args = build_parser().parse_args(arguments)
    else:
        args.log_level = _global_options().parse_args(leading).log_level
    if args.log_level is not None:
        # Through the environment rather than argv: it reaches the deployable run in this process (its --log-level
        # still wins) and every process demo, uat and chaos start, which inherit the environment.
        os.environ["IBSTREAM_LOG_LEVEL"] = args.log_level
        get_settings.cache_clear()
    try:
        code: int = args.handler(args)
        return code
    except ConfigError as error:
        print(f"ibstream: {error}", file=sys.stderr)
        return 2
    except IbstreamError as error:
        print(f"ibstream: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
