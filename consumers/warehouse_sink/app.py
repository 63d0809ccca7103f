"""``ibstream run sink``: load settings, open the warehouse, run the sink until SIGTERM/SIGINT, clean up."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from consumers.warehouse_sink.sink import COMPONENT, WarehouseSink
from ibstream import telemetry
from ibstream.config import LOG_LEVELS, get_settings
from ibstream.health import HealthServer
from ibstream.warehouse import Warehouse
from ibstream.warehouse.metrics import default_metrics

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    """Run the warehouse sink; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="ibstream run sink",
        description="Copies every Kafka topic, dead-letter topics included, into the warehouse (embedded, or the "
        "ClickHouse server at IBSTREAM_CLICKHOUSE_URL).",
    )
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long (benchmarks)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="overrides IBSTREAM_LOG_LEVEL")
    args = parser.parse_args(argv)
    settings = get_settings()
    telemetry.configure(COMPONENT, args.log_level or settings.log_level)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if args.max_seconds is not None:
        timer = threading.Timer(args.max_seconds, stop.set)
        timer.daemon = True
        timer.start()
    warehouse = Warehouse.open(settings)
    health: HealthServer | None = None
    try:
        sink = WarehouseSink(settings, warehouse, metrics=default_metrics())
        health = HealthServer("0.0.0.0", settings.sink.health_port, sink.readiness).start()
        sink.run(stop)
        log.info("warehouse sink stopped", extra={"rows": sink.inserted, "batches": sink.committed_batches})
    finally:
        if health is not None:
            health.stop()
        warehouse.close()
    return 0
