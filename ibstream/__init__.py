"""ibstream: a Kafka-based paper-trading pipeline for Interactive Brokers."""

from __future__ import annotations

#: The distribution name in pyproject.toml, whose installed metadata carries the version.
DISTRIBUTION = "ibstream"


def version() -> str:
    """The installed version; in a source checkout that was never installed, the one pyproject.toml declares."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
        return str(project["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


def __getattr__(name: str) -> str:
    # `__version__` is computed on first use: reading package metadata costs tens of milliseconds that every
    # process importing the package would otherwise pay at startup.
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
