"""Execution consumer: risk-approved orders (``orders.routed.v1``) → IB, IB callbacks → ``orders.events.v1``,
``executions.v1``, ``positions.v1`` and ``ops.alerts.v1``; reconciliation on start and after every reconnect.

``ibstream run execution`` calls ``main``. See ``placement`` for the crash-safety protocol, ``service`` for the
state machine.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from consumers.execution.crash import CrashPoints
from consumers.execution.exceptions import ExecutorLockedError, FencedError
from consumers.execution.journal import Journal
from consumers.execution.service import COMPONENT, Executor
from ibstream.config import LOG_LEVELS, Settings, load_settings
from ibstream.health import HealthServer
from ibstream.ib.session import IbSession
from ibstream.kafka.topics import check_cluster
from ibstream.telemetry import configure

__all__ = ["Executor", "build", "check_kafka", "main"]

log = logging.getLogger(__name__)


def check_kafka(settings: Settings, timeout: float = 10.0) -> None:
    """Kafka reachable and the topics there, or a ConfigError naming the setting."""
    check_cluster(settings, timeout)


def build(settings: Settings) -> Executor:
    """The executor with its IB session, journal and crash points (the journal is locked by ``Executor.run``'s
    caller; crash points come from the test hooks in the environment, see ``crash``)."""
    session = IbSession(settings.ib.host, settings.ib.port, settings.execution.client_id)
    journal = Journal(settings.state_dir / "execution", settings.execution.client_id)
    return Executor(settings, session, journal, crash=CrashPoints.from_env())


def main(argv: list[str] | None = None) -> int:
    """Run the executor until SIGTERM/SIGINT; exit 3 when another executor holds the account or fenced us."""
    parser = argparse.ArgumentParser(
        prog="ibstream run execution",
        description="Places risk-approved orders with IB and publishes their status, fills and positions; checks "
        "its records against IB at startup and after every reconnect. One executor per account.",
    )
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv or [])
    settings = load_settings()
    configure(COMPONENT, args.log_level or settings.log_level)
    # ibapi logs every request and answer at INFO: thousands of lines that drown ours.
    logging.getLogger("ibapi").setLevel(max(logging.WARNING, logging.getLogger().level))
    check_kafka(settings)
    executor = build(settings)
    try:
        executor.journal.open()
    except ExecutorLockedError as error:
        log.error("another executor runs with this client id on this host", extra={"error": str(error)})
        return 3
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    health = HealthServer("0.0.0.0", settings.execution.health_port, executor.readiness).start()
    log.info(
        "execution started",
        extra={"ib_port": settings.ib.port, "client_id": settings.execution.client_id, "health_port": health.port},
    )
    try:
        executor.run(stop)
    except FencedError as error:
        log.error("fenced: another executor took over this account; stopping", extra={"error": str(error)})
        return 3
    finally:
        health.stop()
        executor.journal.close()
        log.info("execution stopped")
    return 0
