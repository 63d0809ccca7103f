"""The root of every error ibstream raises on purpose, so callers can catch ours apart from library errors."""

from __future__ import annotations


class IbstreamError(Exception):
    """Root exception of the project."""


class ConfigError(IbstreamError):
    """A setting is missing or invalid; the message names the setting."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"invalid setting {setting}: {reason}")
        self.setting = setting
        self.reason = reason
