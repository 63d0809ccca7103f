"""``--with-sink``: the warehouse sink on a thread of the API process, sharing its ``Warehouse``.

Embedded chDB lets one process open a data directory, so in the embedded default the sink (the writer) and the API
(the reader) must live in one process. The sink's code stays in ``consumers.warehouse_sink`` (one implementation,
tested there); it is loaded here by module name with importlib, exactly as ``ibstream/cli.py`` loads deployables,
because deployables may not import each other (import-linter). The interface relied on is small and documented on
``consumers.warehouse_sink.SinkThread``: ``SinkThread(settings, warehouse, metrics=…)``, ``start()``, ``stop()``,
``alive``.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from ibstream.config import Settings
from ibstream.exceptions import IbstreamError
from ibstream.warehouse import Warehouse
from ibstream.warehouse.metrics import default_metrics

SINK_MODULE = "consumers.warehouse_sink"


class SinkHandle(Protocol):
    """The running sink thread."""

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        ...

    def stop(self, timeout: float = 30.0) -> None:
        """Flush, commit and stop; re-raises the error that stopped it, if any."""
        ...


def start_sink(settings: Settings, warehouse: Warehouse, module_name: str = SINK_MODULE) -> SinkHandle:
    """Start the warehouse sink on a background thread over the API's warehouse."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise IbstreamError(f"--with-sink needs {module_name}, which cannot be imported: {error}") from None
    handle: SinkHandle = module.SinkThread(settings, warehouse, metrics=default_metrics()).start()
    return handle
