"""The root of every error ibstream raises on purpose, so callers can catch ours apart from library errors."""

from __future__ import annotations


class IbstreamError(Exception):
    """Root exception of the project."""


class ConfigError(IbstreamError):
    """One or more settings are missing or invalid; the message names each setting.

    ``setting`` and ``reason`` are the first problem; ``problems`` lists all of them (setting, reason).
    """

    def __init__(self, setting: str, reason: str, *more: tuple[str, str]) -> None:
        self.problems: tuple[tuple[str, str], ...] = ((setting, reason), *more)
        if more:
            lines = "\n".join(f"  {name}: {why}" for name, why in self.problems)
            super().__init__(f"{len(self.problems)} invalid settings:\n{lines}")
        else:
            super().__init__(f"invalid setting {setting}: {reason}")
        self.setting = setting
        self.reason = reason

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        """One error for every (setting, reason) found; at least one."""
        first, *more = problems or [("?", "invalid settings")]
        return cls(*first, *more)
