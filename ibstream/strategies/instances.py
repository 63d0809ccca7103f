"""Strategy instances: one strategy with its params, its symbols and whether it starts enabled.

``IBSTREAM_STRATEGIES_FILE`` names a TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML) file::

    [[instances]]
    name = "ma-fast-aapl"            # unique; signals carry it as their strategy
    strategy = "ma_crossover"        # an entry-point name (ibstream.strategies.registry)
    symbols = ["AAPL"]               # empty or missing: every symbol of the feed
    enabled = true                   # the default; the API's enable/disable overrides it (control.v1)
    params = { fast = 5, slow = 20 } # validated by the strategy's params model

Without the file the built-ins run with their default params, one instance each named after its strategy, on
every symbol: what ibstream did before instances existed, so their signals and ids are unchanged.

Validation is pure (``build_instances``) and reports every problem at once, each naming the instance and the field
(``instance 'ma-fast-aapl' params.fast: ...``), raised as one ``ConfigError`` of ``IBSTREAM_STRATEGIES_FILE`` so a
deployable stops at startup.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ibstream.exceptions import ConfigError
from ibstream.strategies.builtin import BUILTIN
from ibstream.strategies.registry import Registry
from ibstream.strategies.sdk import Strategy, StrategyParams

SETTING = "IBSTREAM_STRATEGIES_FILE"
#: Instance names: what signals carry as their strategy, a control.v1 target and a URL path segment.
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class InstanceConfig(BaseModel):
    """One ``[[instances]]`` entry as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    strategy: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    symbols: list[str] = Field(default_factory=list)
    enabled: bool = True


@dataclass(frozen=True)
class StrategyInstance:
    """A configured, validated instance, its strategy object built with its params."""

    name: str
    strategy: Strategy
    symbols: frozenset[str]  # empty: every symbol
    enabled: bool

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    @property
    def version(self) -> str:
        return self.strategy.version

    @property
    def params(self) -> StrategyParams:
        params: StrategyParams = self.strategy.params
        return params

    @property
    def timeframe(self) -> str:
        """The timeframe whose bars drive evaluation (the strategy's first)."""
        return self.strategy.timeframes[0]

    def covers(self, symbol: str) -> bool:
        return not self.symbols or symbol in self.symbols


def _field_path(location: Sequence[int | str], parent: str = "") -> str:
    """``params.fast`` for a field, ``params`` for a rule across fields (no location), ``name`` at the top."""
    parts = [parent, *(str(part) for part in location)] if parent else [str(part) for part in location]
    return ".".join(parts) or "(instance)"


def _instance_problems(
    position: int, raw: Any, registry: Registry, seen: set[str]
) -> tuple[StrategyInstance | None, list[str]]:
    label = raw.get("name") if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) else f"#{position + 1}"
    try:
        config = InstanceConfig.model_validate(raw)
    except ValidationError as error:
        return None, [f"instance {label!r} {_field_path(e['loc'])}: {e['msg']}" for e in error.errors()]
    if config.name in seen:
        return None, [f"instance {label!r} name: used by another instance"]
    seen.add(config.name)
    cls = registry.strategies.get(config.strategy)
    if cls is None:
        why = registry.broken.get(config.strategy)
        detail = f"its entry point did not load ({why})" if why else f"installed: {', '.join(registry.names())}"
        return None, [f"instance {label!r} strategy: unknown strategy {config.strategy!r}; {detail}"]
    try:
        params = cls.params_model.model_validate(config.params)
    except ValidationError as error:
        return None, [f"instance {label!r} {_field_path(e['loc'], 'params')}: {e['msg']}" for e in error.errors()]
    strategy = cls(params)
    if not isinstance(strategy.warmup, int) or strategy.warmup < 1:
        return None, [f"instance {label!r} strategy: {config.strategy} has a warm-up of {strategy.warmup!r}"]
    return StrategyInstance(config.name, strategy, frozenset(config.symbols), config.enabled), []


def build_instances(document: Mapping[str, Any], registry: Registry) -> list[StrategyInstance]:
    """Validate a parsed strategies file; every problem at once, each naming its instance and field."""
    unknown = sorted(set(document) - {"instances"})
    raw = document.get("instances")
    problems = [f"unknown top-level key {key!r} (expected 'instances')" for key in unknown]
    if not isinstance(raw, list) or not raw:
        problems.append("'instances' must be a non-empty list of instances")
        raise ConfigError.of([(SETTING, problem) for problem in problems])
    instances: list[StrategyInstance] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw):
        instance, found = _instance_problems(position, entry, registry, seen)
        problems += found
        if instance is not None:
            instances.append(instance)
    if problems:
        raise ConfigError.of([(SETTING, problem) for problem in problems])
    return instances


def default_instances() -> list[StrategyInstance]:
    """Without a strategies file: each built-in once, default params, every symbol, enabled."""
    return [StrategyInstance(name, cls(cls.params_model()), frozenset(), True) for name, cls in BUILTIN.items()]


def parse_document(path: Path) -> Mapping[str, Any]:
    """The file's content as a mapping (TOML or YAML by its suffix); ConfigError naming the setting otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(SETTING, f"cannot read {path}: {error.strerror or error}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return _yaml(text, path)
    except (tomllib.TOMLDecodeError, ValueError) as error:
        raise ConfigError(SETTING, f"{path} is not valid {suffix[1:].upper()}: {error}") from None
    raise ConfigError(SETTING, f"{path}: expected a .toml, .yaml or .yml file")


def _yaml(text: str, path: Path) -> Mapping[str, Any]:
    try:
        yaml: Any = importlib.import_module("yaml")  # PyYAML is optional: TOML needs nothing
    except ImportError:
        raise ConfigError(SETTING, f"{path}: reading YAML needs PyYAML installed (or write the file as TOML)") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None
    if not isinstance(document, Mapping):
        raise ValueError("the top level must be a mapping with an 'instances' list")
    return document


def load_instances(path: Path | None, registry: Registry) -> list[StrategyInstance]:
    """The instances of the strategies file, or the built-in defaults when no file is set."""
    if path is None:
        return default_instances()
    return build_instances(parse_document(path), registry)
