"""The settings-sections codemod (ops/codemods/settings_sections.py): what it rewrites, what it leaves to a human."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "ops" / "codemods" / "settings_sections.py"


def _codemod() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_sections", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


BEFORE = """
import argparse
from ibstream.config import Settings, load_settings


class Demo:
    symbols: tuple[str, ...] = ()

    def __init__(self, settings: Settings, cfg: Settings) -> None:
        self.settings = settings
        self.bootstrap = self.settings.kafka_bootstrap_servers
        self.port = cfg.ib_port
        self.mine = self.symbols

    def stack(self) -> Settings:
        if "kafka_bootstrap_servers" in self.settings.model_fields_set:
            return self.settings
        return self.settings.model_copy(update={"stack_kafka_port": 1, "stack_controller_port": 2})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols")
    args = parser.parse_args()
    s = load_settings()
    print(s.symbols, args.symbols, s.risk_max_position, load_settings().account_equity, other.warehouse_dir)
"""

AFTER = """
import argparse
from ibstream.config import Settings, load_settings


class Demo:
    symbols: tuple[str, ...] = ()

    def __init__(self, settings: Settings, cfg: Settings) -> None:
        self.settings = settings
        self.bootstrap = self.settings.kafka.bootstrap_servers
        self.port = cfg.ib.port
        self.mine = self.symbols

    def stack(self) -> Settings:
        if "bootstrap_servers" in self.settings.kafka.model_fields_set:
            return self.settings
        return self.settings.with_overrides(stack_kafka_port=1, stack_controller_port=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols")
    args = parser.parse_args()
    s = load_settings()
    print(s.feed.symbols, args.symbols, s.risk.max_position, load_settings().risk.account_equity, other.warehouse.dir)
"""


def test_rewrites_settings_receivers_and_leaves_generic_names_on_others_to_a_human() -> None:
    codemod = _codemod()
    result = codemod.rewrite_source(BEFORE)
    assert codemod.apply(BEFORE, result.edits) == AFTER
    undecided = "\n".join(result.undecided)
    assert "self.mine = self.symbols" in undecided
    assert "args.symbols" in undecided


def test_a_second_run_changes_nothing() -> None:
    codemod = _codemod()
    result = codemod.rewrite_source(AFTER, ambiguous={"symbols"})
    assert result.edits == []


def test_cli_check_mode_reports_without_writing(tmp_path: Path, capsys: object) -> None:
    codemod = _codemod()
    module = tmp_path / "m.py"
    module.write_text("def f(settings):\n    return settings.ib_host\n")
    assert codemod.main(["--check", str(tmp_path)]) == 1
    assert module.read_text().endswith("settings.ib_host\n")
    assert codemod.main([str(tmp_path)]) == 0
    assert module.read_text().endswith("settings.ib.host\n")
    assert codemod.main(["--check", str(tmp_path)]) == 0
