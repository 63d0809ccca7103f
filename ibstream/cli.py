"""The `ibstream` console script: one entry point for every deployable and operator command.

Deployables are loaded lazily by module name, so the core never imports them (import-linter enforces it) and a
command that needs one deployable does not pay for loading the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from datetime import time as dt_time

from ibstream.config import get_settings
from ibstream.exceptions import ConfigError, IbstreamError

#: `ibstream run NAME` → module whose ``main(argv)`` runs that deployable, and the issue that builds it.
DEPLOYABLES: dict[str, tuple[str, int]] = {
    "producer": ("producers.market_data", 4),
    "streams": ("streams.app", 5),
    "execution": ("consumers.execution", 6),
    "sink": ("consumers.warehouse_sink", 7),
    "api": ("api.app", 8),
    "agent0": ("api.agent0", 5),
}


def _load_main(module_name: str, issue: int) -> Callable[[list[str]], int]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise IbstreamError(f"{module_name} is not built yet (issue #{issue})") from None
        raise
    main: Callable[[list[str]], int] = module.main
    return main


def _is_built(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


def _stack(args: argparse.Namespace) -> int:
    from ibstream.stack import KafkaStack, RegistryStack

    settings = get_settings()
    kafka = KafkaStack(settings)
    registry = RegistryStack(settings)
    if args.action == "up":
        print(kafka.up().describe())
        if args.registry:
            print(registry.up().describe())
    elif args.action == "down":
        stopped_registry = registry.down()
        stopped = kafka.down()
        print("kafka: stopped" if stopped else "kafka: was not running")
        if stopped_registry:
            print("schema registry: stopped")
    else:
        status = kafka.status()
        print(status.describe())
        print(registry.status().describe())
        if status.running:
            from ibstream.kafka.clients import create_admin

            topics = sorted(t for t in create_admin(settings).list_topics(timeout=10).topics if not t.startswith("__"))
            print(f"topics ({len(topics)}):")
            for topic in topics:
                print(f"  {topic}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    from ibstream.kafka.clients import create_admin
    from ibstream.kafka.topics import catalogue, ensure_topics

    settings = get_settings()
    report = ensure_topics(
        create_admin(settings), catalogue(settings.kafka_topic_prefix), replication=settings.kafka_topic_replication
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
    module_name, issue = DEPLOYABLES[args.deployable]
    return _load_main(module_name, issue)(list(args.rest))


def _sim(args: argparse.Namespace) -> int:
    return _load_main("ibsim.cli", 3)(list(args.rest))


def _token(args: argparse.Namespace) -> int:
    # The token code lives with the API (its verifier must agree with it); loaded by name like a deployable.
    argv = ["--role", args.role, "--subject", args.subject] + (["--ttl", args.ttl] if args.ttl else [])
    return _load_main("api.token_cli", 8)(argv)


def _demo(args: argparse.Namespace) -> int:
    from ibstream.demo import DemoConfig, run_demo

    config = DemoConfig(
        speed=args.speed,
        approve=args.approve,
        fault_at=None if args.no_fault else dt_time.fromisoformat(args.fault_at),
        keep=args.keep,
        live_view=not args.no_live and sys.stdout.isatty(),
        session_minutes=args.session_minutes,
    )
    figures = run_demo(config)
    return 0 if figures else 1


def _chaos(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ibstream.chaos.campaign import ChaosConfig, run_campaign

    config = ChaosConfig(
        minutes=args.minutes,
        rate=args.rate,
        seed=args.seed,
        kinds=[kind for kind in args.faults.split(",") if kind] if args.faults else None,
        symbols=tuple(args.symbols) if args.symbols else ChaosConfig().symbols,
        speed=args.speed,
        directory=Path(args.dir) if args.dir else None,
        json_path=Path(args.json),
    )
    report = run_campaign(config)
    return 0 if report["ok"] else 1


def _uat(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ibstream.uat import UatOptions, load_verdict, run_uat

    settings = get_settings()
    if args.verdict:
        decision = load_verdict(settings, args.required)
        print(decision.render())
        return 0 if decision.go else 1
    reports = Path(args.reports_dir) if args.reports_dir else settings.state_dir / "uat"
    options = UatOptions(
        reports_dir=reports,
        sessions=tuple(args.sessions.split(",")) if args.sessions else UatOptions(reports).sessions,
        gateway=args.gateway,
        allow_orders=args.allow_orders,
        gateway_minutes=args.minutes,
    )
    run = run_uat(settings, options)
    for result in run.results:
        print(f"{result.status.upper():4}  {result.id:24} {'; '.join(result.failures)[:160]}")
    print(f"UAT session {run.session_id}: {'PASS' if run.passed else 'FAIL'} in {run.meta['seconds']:.0f}s\n"
          f"report: {run.markdown}\n        {run.html}")
    return 0 if run.passed else 1


def _utc_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        expected = "an ISO 8601 time such as 2026-11-24T14:30:00Z"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _replay(args: argparse.Namespace) -> int:
    from ibstream.replay import parse_symbols, replay

    report = replay(
        get_settings(),
        args.topic,
        args.start,
        args.end,
        symbols=parse_symbols(args.symbols or []),
        target_topic=args.target_topic,
        source=args.source,
        rate=args.rate,
        progress=sys.stderr.isatty(),
    )
    print(
        f"replayed {report.emitted} of {report.read} records from {report.source} {report.topic} to "
        f"{report.target_topic} in {report.seconds:.1f}s ({report.rate:.0f}/s); {report.undecodable} undecodable"
    )
    return 0


def _audit(args: argparse.Namespace) -> int:
    from ibstream.warehouse import Warehouse
    from ibstream.warehouse.audits import render, run_audit

    # Opens the embedded directory directly; if the sink's process holds it, the error says so and what to do.
    with Warehouse.open(get_settings()) as warehouse:
        result = run_audit(warehouse, args.name, day=args.day, order_id=args.order_id)
    print(render(result, args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="local Kafka broker (and optional schema registry)")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--registry", action="store_true", help="also start the Apicurio schema registry")
    stack.set_defaults(handler=_stack)

    topics = commands.add_parser("topics", help="topic catalogue")
    topics.add_argument("action", choices=["ensure"])
    topics.set_defaults(handler=_topics)

    run = commands.add_parser("run", help="run a deployable")
    run.add_argument("deployable", choices=sorted(DEPLOYABLES))
    run.add_argument("rest", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)

    sim = commands.add_parser("sim", help="run the IB Gateway simulator", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(handler=_sim)

    token = commands.add_parser("token", help="issue a local HS256 API token for development")
    token.add_argument("--role", required=True, choices=["viewer", "trader", "admin"])
    token.add_argument("--subject", default="dev", help="token subject, recorded as `actor` on commands (dev)")
    token.add_argument("--ttl", default=None, help="lifetime such as 900, 15m, 8h, 7d (8h)")
    token.set_defaults(handler=_token)

    demo = commands.add_parser("demo", help="run one simulated trading session through the whole pipeline")
    demo.add_argument("--speed", type=float, default=120.0, help="simulated seconds per wall second (120: ~3.5 min)")
    demo.add_argument(
        "--approve",
        choices=["manual", "policy"],
        default="manual",
        help="manual: the demo approves runs through the API as a trader; policy: the rules decide",
    )
    demo.add_argument("--fault-at", default="11:00", help="New York time of the injected gateway drop")
    demo.add_argument("--no-fault", action="store_true", help="no injected gateway drop")
    demo.add_argument("--session-minutes", type=float, default=None, help="stop after this much market time")
    demo.add_argument("--keep", action="store_true", help="leave the stack, ibsim and the API running afterwards")
    demo.add_argument("--no-live", action="store_true", help="no live terminal view (logs only)")
    demo.set_defaults(handler=_demo)

    chaos = commands.add_parser("chaos", help="soak and chaos campaign: the pipeline under a seeded fault schedule")
    chaos.add_argument("--minutes", type=float, default=10.0, help="wall minutes of faults and load")
    chaos.add_argument("--rate", type=float, default=2000.0, help="quotes per second across the universe")
    chaos.add_argument("--seed", type=int, default=1, help="fault schedule seed (printed, for replays)")
    chaos.add_argument("--faults", default=None, help="comma-separated fault kinds (default: all)")
    chaos.add_argument("--symbols", nargs="*", default=None, help="universe (default: ibsim's ten symbols)")
    chaos.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second")
    chaos.add_argument("--dir", default=None, help="state directory (default: a new temporary one)")
    chaos.add_argument("--json", default="chaos-report.json", help="where the JSON report goes")
    chaos.set_defaults(handler=_chaos)

    uat = commands.add_parser("uat", help="user acceptance test campaign against ibsim or a paper gateway")
    uat.add_argument("--verdict", action="store_true", help="print go/no-go from the recorded sessions")
    uat.add_argument("--required", type=int, default=None, help="consecutive passes for go (uat_required_sessions)")
    uat.add_argument("--gateway", default=None, help="HOST:PORT of a real paper gateway instead of ibsim")
    uat.add_argument("--allow-orders", action="store_true", help="with --gateway: place paper orders")
    uat.add_argument("--minutes", type=float, default=5.0, help="with --gateway: wall minutes to run")
    uat.add_argument("--sessions", default=None, help="comma-separated subset of main,close,desk")
    uat.add_argument("--reports-dir", default=None, help="where reports go (default: STATE_DIR/uat)")
    uat.set_defaults(handler=_uat)

    replay = commands.add_parser("replay", help="re-emit a topic's records from a time window (gap recovery)")
    replay.add_argument("--topic", required=True, help="catalogue topic, e.g. md.bars.5s.v1")
    replay.add_argument("--from", dest="start", type=_utc_time, required=True, help="Kafka timestamp ≥ this")
    replay.add_argument("--to", dest="end", type=_utc_time, required=True, help="Kafka timestamp < this")
    replay.add_argument("--symbols", nargs="*", help="only these symbols (space or comma separated)")
    replay.add_argument("--target-topic", help="catalogue-relative topic to write to (default: --topic)")
    replay.add_argument("--source", choices=["kafka", "warehouse"], default="kafka")
    replay.add_argument("--rate", type=float, default=None, help="at most this many records per second")
    replay.set_defaults(handler=_replay)

    audit = commands.add_parser("audit", help="ready-made audit queries over the warehouse")
    audit.add_argument(
        "name",
        # Kept literal so `--help` needs no warehouse import; a unit test checks it matches the audit registry.
        choices=[
            "order-trail",
            "feed-gaps",
            "signal-outcomes",
            "risk-rejections",
            "unreconciled-orders",
            "dlq-contents",
        ],
    )
    audit.add_argument("--day", type=date.fromisoformat, default=None, help="UTC day, YYYY-MM-DD")
    audit.add_argument("--order-id", default=None)
    audit.add_argument("--format", choices=["table", "csv", "json"], default="table")
    audit.set_defaults(handler=_audit)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _passthrough(arguments) or build_parser().parse_args(arguments)
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
