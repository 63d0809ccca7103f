"""Kept for existing imports: the health server moved to the core (``ibstream.health``), shared by deployables."""

from ibstream.health import HealthServer, ReadyProbe

__all__ = ["HealthServer", "ReadyProbe"]
