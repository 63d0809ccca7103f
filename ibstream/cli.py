"""The `ibstream` console script: one entry point for every deployable and operator command.

Deployables are loaded lazily by module name, so the core never imports them (import-linter enforces it) and a
command that needs one deployable does not pay for loading the others.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

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


def _demo(args: argparse.Namespace) -> int:
    # Until the pipeline's deployables exist (issue #11 builds the full demo), the demo brings up the local stack
    # and the topic catalogue and says plainly what is still missing.
    _stack(argparse.Namespace(action="up", registry=False))
    _topics(args)
    _stack(argparse.Namespace(action="status", registry=False))
    missing = [name for name, (module, _) in DEPLOYABLES.items() if not _is_built(module)]
    if missing:
        print(f"\nThe full trading-session demo needs deployables not built yet: {', '.join(missing)} (issue #11).")
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

    demo = commands.add_parser("demo", help="run the demo on embedded defaults")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
