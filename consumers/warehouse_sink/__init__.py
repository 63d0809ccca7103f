"""Deployable: the warehouse sink (every topic and DLQ → ClickHouse), run by ``ibstream run sink``.

``SinkThread`` runs the same sink on a thread of another process that owns the ``Warehouse`` (the API with
``--with-sink``, loaded lazily by module name as the CLI loads deployables).
"""

from __future__ import annotations

from consumers.warehouse_sink.app import main
from consumers.warehouse_sink.sink import SinkThread, WarehouseSink, group_id

__all__ = ["SinkThread", "WarehouseSink", "group_id", "main"]
