"""Finding strategies: the entry-point group ``ibstream.strategies``, plus the built-ins.

A package makes a strategy available by declaring it in its ``pyproject.toml``::

    [project.entry-points."ibstream.strategies"]
    momentum_burst = "my_strategies.burst:MomentumBurst"

The entry-point name is the name instances refer to (``strategy = "momentum_burst"``) and must equal the class's
``name``. ibstream registers its three built-ins the same way; they are also found from ``BUILTIN`` when ibstream
runs from a source tree whose entry points are not installed. A strategy whose entry point does not load (import
error, not a ``Strategy``, a name clash) is reported in ``Registry.broken`` rather than stopping discovery: it is an
error only if an instance uses it (``ibstream.strategies.instances``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from ibstream.strategies.builtin import BUILTIN
from ibstream.strategies.sdk import Strategy

log = logging.getLogger(__name__)

#: The entry-point group strategies register in.
GROUP = "ibstream.strategies"


@dataclass(frozen=True)
class Registry:
    """Strategies by name, and the entry points that could not be loaded (name → why)."""

    strategies: dict[str, type[Strategy]]
    broken: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.strategies)


def _load(point: EntryPoint) -> type[Strategy]:
    loaded = point.load()
    if not (isinstance(loaded, type) and issubclass(loaded, Strategy)):
        raise TypeError(f"{point.value} is not a subclass of ibstream.strategies.Strategy")
    if getattr(loaded, "name", None) != point.name:
        raise TypeError(f"{point.value} is named {getattr(loaded, 'name', None)!r}, its entry point {point.name!r}")
    if not isinstance(getattr(loaded, "version", None), str):
        raise TypeError(f"{point.value} has no version string")
    return loaded


def registry_of(points: Iterable[EntryPoint]) -> Registry:
    """The built-ins and every loadable entry point (pure but for importing the entry points' modules)."""
    strategies: dict[str, type[Strategy]] = dict(BUILTIN)
    broken: dict[str, str] = {}
    for point in points:
        try:
            loaded = _load(point)
        except Exception as error:  # a user package's import error must not stop the others
            broken[point.name] = f"{type(error).__name__}: {error}"
            log.warning("strategy entry point not loaded", extra={"strategy": point.name, "error": broken[point.name]})
            continue
        known = strategies.get(point.name)
        if known is not None and known is not loaded:
            if point.name in BUILTIN:
                broken[point.name] = f"{point.value} clashes with ibstream's built-in {point.name!r}"
                continue
            broken[point.name] = f"two entry points named {point.name!r}: {point.value} and another"
            strategies.pop(point.name)
            continue
        strategies[point.name] = loaded
    for name in broken:
        if name not in BUILTIN:
            strategies.pop(name, None)
    return Registry(strategies, broken)


def discover() -> Registry:
    """Every strategy installed in this environment (``importlib.metadata`` reads each distribution's
    ``entry_points.txt`` on ``sys.path``)."""
    return registry_of(entry_points(group=GROUP))
