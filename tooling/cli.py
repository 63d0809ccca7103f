"""The operator commands of the ``ibstream`` console script: ``demo``, ``uat``, ``chaos``, ``stack``, ``replay``,
``dlq``.

``ibstream/cli.py`` declares their arguments (so ``--help`` needs none of this) and calls the function named after
the command with the parsed arguments, loaded by module name: the core never imports the tooling.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path

from ibstream.config import Settings, get_settings


def stack(args: argparse.Namespace) -> int:
    """``ibstream stack up|down|status``."""
    from tooling.stack import KafkaStack, RegistryStack

    settings = get_settings()
    if _stack_cluster(args, settings):
        return 0
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


def _stack_cluster(args: argparse.Namespace, settings: Settings) -> bool:
    """``stack up --brokers N`` (N ≥ 2), and ``up``/``down``/``status`` while the cluster it left runs; True if it
    handled the action (else the single broker's ``stack`` goes on)."""
    from tooling.stack import KafkaCluster, RegistryStack

    brokers = getattr(args, "brokers", 1)
    # A plain `up` while the cluster runs reports it (as a second `up` reports the running broker).
    found = KafkaCluster.from_state(settings)
    cluster = KafkaCluster(settings, brokers) if args.action == "up" and brokers > 1 else found
    if cluster is None or (cluster is found and not cluster.status().any_running):
        return False
    if args.action == "up":
        print(cluster.up().describe())
        print(
            f"clients: IBSTREAM_KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap} "
            f"IBSTREAM_KAFKA_TOPIC_REPLICATION={cluster.layout.brokers}"
        )
        if args.registry:
            print(RegistryStack(settings).up().describe())
    elif args.action == "down":
        stopped_registry = RegistryStack(settings).down()
        print("kafka cluster: stopped" if cluster.down() else "kafka cluster: was not running")
        if stopped_registry:
            print("schema registry: stopped")
    else:
        print(cluster.status().describe())
        print(RegistryStack(settings).status().describe())
    return True


def demo(args: argparse.Namespace) -> int:
    """``ibstream demo``."""
    from tooling.demo import DemoConfig, run_demo

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


def chaos(args: argparse.Namespace) -> int:
    """``ibstream chaos``."""
    from tooling.chaos.campaign import ChaosConfig, run_campaign

    config = ChaosConfig(
        minutes=args.minutes,
        rate=args.rate,
        seed=args.seed,
        kinds=[kind for kind in args.faults.split(",") if kind] if args.faults else None,
        max_faults=args.max_faults,
        symbols=tuple(args.symbols) if args.symbols else ChaosConfig().symbols,
        speed=args.speed,
        directory=Path(args.dir) if args.dir else None,
        json_path=Path(args.json),
        brokers=args.brokers,
        broker_port=args.broker_port,
    )
    report = run_campaign(config)
    return 0 if report["ok"] else 1


def uat(args: argparse.Namespace) -> int:
    """``ibstream uat [--verdict | --sign-off --by NAME --note TEXT]``."""
    from tooling.uat import UatOptions, load_verdict, run_uat, sign_off

    settings = get_settings()
    reports = Path(args.reports_dir) if args.reports_dir else settings.state_dir / "uat"
    if args.sign_off:
        if not args.by or not args.note:
            print("uat --sign-off needs --by NAME and --note TEXT", file=sys.stderr)
            return 2
        signed = sign_off(settings, args.by, args.note, reports, args.required)
        print(signed.decision.render())
        if signed.refused or signed.signoff is None:
            print(f"sign-off {signed.refused}", file=sys.stderr)
            return 1
        print(f"recorded: {signed.signoff.render()}\nreport: {signed.report}")
        return 0
    if args.verdict:
        decision = load_verdict(settings, args.required)
        print(decision.render())
        return 0 if decision.go else 1
    minutes = args.minutes
    if args.full_session:
        from tooling.uat.verdict import minutes_to_close

        minutes = minutes_to_close(datetime.now(UTC))
        if minutes is None:
            print("uat --full-session: no session left today on the exchange calendar", file=sys.stderr)
            return 2
    options = UatOptions(
        reports_dir=reports,
        sessions=tuple(args.sessions.split(",")) if args.sessions else UatOptions(reports).sessions,
        gateway=args.gateway,
        allow_orders=args.allow_orders,
        gateway_minutes=minutes,
    )
    from tooling.progress import Progress, use

    with use(Progress.to_stderr("uat")):  # live progress on stderr; stdout keeps the results
        run = run_uat(settings, options)
    for result in run.results:
        print(f"{result.status.upper():4}  {result.id:24} {'; '.join(result.failures)[:160]}")
    print(
        f"UAT session {run.session_id}: {'PASS' if run.passed else 'FAIL'} in {run.meta['seconds']:.0f}s\n"
        f"report: {run.markdown}\n        {run.html}"
    )
    return 0 if run.passed else 1


def replay(args: argparse.Namespace) -> int:
    """``ibstream replay``."""
    from tooling.replay import parse_symbols
    from tooling.replay import replay as run_replay

    report = run_replay(
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


def dlq(args: argparse.Namespace) -> int:
    """``ibstream dlq list|show|redrive --topic T [--from --to] [--offset N …] [--dry-run]``."""
    from tooling.dlq import redrive, render_list, render_show, view

    settings = get_settings()
    if args.action == "redrive":
        report = redrive(
            settings, args.topic, start=args.start, end=args.end, offsets=args.offset, dry_run=args.dry_run
        )
        print(report.render())
        return 1 if report.plan.refused else 0
    if args.action == "show" and len(args.offset) != 1:
        print("dlq show needs one --offset (`ibstream dlq list` shows them)", file=sys.stderr)
        return 2
    found = view(settings, args.topic, start=args.start, end=args.end, offsets=args.offset)
    if args.action == "list":
        print(render_list(found.entries, found.ledger))
        return 0
    if not found.entries:
        print(f"no dead letter at offset {args.offset[0]} of {found.topic}", file=sys.stderr)
        return 1
    print(render_show(found.entries[0], found.ledger))
    return 0


def backtest(args: argparse.Namespace) -> int:
    """``ibstream backtest --from --to [--strategies …] [--symbols …] [--source warehouse|kafka|csv FILE]``."""
    from tooling.backtest.run import BacktestOptions, run_backtest
    from tooling.progress import Progress, use
    from tooling.replay import parse_symbols

    source, *rest = args.source
    if source not in ("warehouse", "kafka", "csv") or len(rest) != (1 if source == "csv" else 0):
        print("backtest --source takes warehouse, kafka, or csv FILE", file=sys.stderr)
        return 2
    options = BacktestOptions(
        start=args.start,
        end=args.end,
        symbols=parse_symbols(args.symbols),
        strategies=parse_symbols(args.strategies),
        source="csv" if source == "csv" else "kafka" if source == "kafka" else "warehouse",
        csv_path=Path(rest[0]) if rest else None,
        approve=args.approve,
        cash=args.cash,
    )
    with use(Progress.to_stderr("backtest")):  # the progress bar on stderr; stdout keeps the results
        run = run_backtest(get_settings(), options)
    summary = run.result
    print(
        f"backtest {run.meta['id']}: {summary.bars:,} bars, {len(summary.signals):,} signals, "
        f"{len(summary.trades):,} orders in {run.seconds:.1f}s ({run.bars_per_second:,.0f} bars/s)\n"
        f"report: {run.directory / 'report.html'}\n        {run.directory / 'equity.png'}\n"
        f"        {run.directory / 'figures.json'}"
    )
    return 0


def history(args: argparse.Namespace) -> int:
    """``ibstream history fetch --symbols … --from --to [--bar-size] [--client-id]``."""
    from tooling.history import fetch_history
    from tooling.progress import Progress, use
    from tooling.replay import parse_symbols

    symbols = parse_symbols(args.symbols)
    with use(Progress.to_stderr("history")) as progress:
        progress.phase(f"fetching {args.bar_size} bars of {', '.join(symbols)} from IB")
        report = fetch_history(
            get_settings(),
            symbols,
            args.start,
            args.end,
            args.bar_size,
            args.client_id,
            lambda done, total, bars: progress.status(f"{done}/{total} requests, {bars:,} bars"),
        )
    print(f"stored {report.bars:,} bars from {report.requests} requests in {report.seconds:.0f}s ({report.table})")
    return 0
