"""Codemod (issue 19 item 6): flat ``Settings`` attributes → sections. Stdlib only, idempotent, re-runnable.

Usage, from the repository root (or pass it)::

    python ops/codemods/settings_sections.py [--check] [ROOT ...]

Rewrites, in every ``*.py`` under ROOT (default ``.``; ``.venv``, ``.git``, ``.state`` and ``ibstream/config.py``
are skipped):

* ``<expr>.<old flat field>`` → ``<expr>.<section>.<field>`` (``settings.kafka_bootstrap_servers`` →
  ``settings.kafka.bootstrap_servers``) where ``<expr>`` is a settings object: a name or attribute containing
  ``settings``, a call of something named ``*settings*`` or ``with_overrides``, or a name this file assigns
  from one of those or annotates as ``Settings``. A field name that nothing else in the tree defines as an
  attribute (class field, ``self.x =``, argparse dest) is rewritten on any receiver; a generic one (``symbols``,
  ``heartbeat_seconds``, … when a DemoConfig or an argparse flag also has it) only on a settings receiver, and
  every other site of it is printed as UNDECIDED for a human.
* ``<settings>.model_copy(update=...)`` → ``<settings>.with_overrides(...)`` (flat names, validated).
* ``"<old>" in <settings>.model_fields_set`` → ``"<field>" in <settings>.<section>.model_fields_set``.
* A line marked ``# codemod: keep`` is left alone.
* ``Settings.model_fields`` and ``getattr(<settings>, "<old>")`` are printed as UNDECIDED (use
  ``ibstream.config.FLAT_NAMES`` / ``field_info``).

Keyword overrides (``load_settings(kafka_bootstrap_servers=...)``) keep their flat names: that is the documented
override API. Lines the rewrite pushes past 120 characters are printed as LONG (run ``ruff format`` on them).
With ``--check`` nothing is written; the exit status is 1 when something would change.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Old flat Settings field → (section, field). state_dir and log_level stayed top level.
MOVES: dict[str, tuple[str, str]] = {
    "kafka_bootstrap_servers": ("kafka", "bootstrap_servers"),
    "kafka_client_config": ("kafka", "client_config"),
    "kafka_topic_replication": ("kafka", "topic_replication"),
    "kafka_topic_prefix": ("kafka", "topic_prefix"),
    "stack_kafka_port": ("stack", "kafka_port"),
    "stack_controller_port": ("stack", "controller_port"),
    "stack_kafka_heap": ("stack", "kafka_heap"),
    "stack_registry_port": ("stack", "registry_port"),
    "schema_registry_url": ("registry", "url"),
    "schema_registry_username": ("registry", "username"),
    "schema_registry_password": ("registry", "password"),
    "api_host": ("api", "host"),
    "api_port": ("api", "port"),
    "api_jwt_algorithm": ("api", "jwt_algorithm"),
    "api_jwt_secret": ("api", "jwt_secret"),
    "api_jwt_public_key": ("api", "jwt_public_key"),
    "api_jwt_jwks_url": ("api", "jwt_jwks_url"),
    "api_jwt_issuer": ("api", "jwt_issuer"),
    "api_jwt_audience": ("api", "jwt_audience"),
    "api_jwt_leeway_seconds": ("api", "jwt_leeway_seconds"),
    "api_cors_origins": ("api", "cors_origins"),
    "api_rate_limit_per_minute": ("api", "rate_limit_per_minute"),
    "api_rate_limit_burst": ("api", "rate_limit_burst"),
    "api_max_body_bytes": ("api", "max_body_bytes"),
    "api_command_timeout_seconds": ("api", "command_timeout_seconds"),
    "ib_live_account": ("ib", "live_account"),
    "ib_host": ("ib", "host"),
    "ib_port": ("ib", "port"),
    "ib_connect_timeout_seconds": ("ib", "connect_timeout_seconds"),
    "ib_reconnect_base_seconds": ("ib", "reconnect_base_seconds"),
    "ib_reconnect_cap_seconds": ("ib", "reconnect_cap_seconds"),
    "ib_historical_pacing_backoff_seconds": ("ib", "historical_pacing_backoff_seconds"),
    "producer_client_id": ("feed", "client_id"),
    "symbols": ("feed", "symbols"),
    "market_data_type": ("feed", "market_data_type"),
    "market_clock": ("feed", "market_clock"),
    "trading_hours": ("feed", "trading_hours"),
    "stale_after_seconds": ("feed", "stale_after_seconds"),
    "heartbeat_seconds": ("feed", "heartbeat_seconds"),
    "producer_health_port": ("feed", "health_port"),
    "producer_queue_size": ("feed", "queue_size"),
    "execution_client_id": ("execution", "client_id"),
    "execution_account": ("execution", "account"),
    "execution_group_id": ("execution", "group_id"),
    "execution_health_port": ("execution", "health_port"),
    "execution_ib_answer_timeout_seconds": ("execution", "ib_answer_timeout_seconds"),
    "clickhouse_url": ("warehouse", "clickhouse_url"),
    "clickhouse_username": ("warehouse", "clickhouse_username"),
    "clickhouse_password": ("warehouse", "clickhouse_password"),
    "warehouse_dir": ("warehouse", "dir"),
    "warehouse_database": ("warehouse", "database"),
    "warehouse_retention_days": ("warehouse", "retention_days"),
    "warehouse_batch_rows": ("warehouse", "batch_rows"),
    "warehouse_batch_seconds": ("warehouse", "batch_seconds"),
    "sink_health_port": ("sink", "health_port"),
    "sink_instance_id": ("sink", "instance_id"),
    "streams_app_id": ("streams", "app_id"),
    "streams_health_port": ("streams", "health_port"),
    "streams_instance_id": ("streams", "instance_id"),
    "streams_data_dir": ("streams", "data_dir"),
    "signal_expiry_seconds": ("orchestration", "signal_expiry_seconds"),
    "orchestration_min_confidence": ("orchestration", "min_confidence"),
    "approval_mode": ("orchestration", "approval_mode"),
    "approval_policy_min_confidence": ("orchestration", "approval_policy_min_confidence"),
    "approval_policy_max_notional": ("orchestration", "approval_policy_max_notional"),
    "agent0_url": ("agent0", "url"),
    "agent0_host": ("agent0", "host"),
    "agent0_port": ("agent0", "port"),
    "agent0_timeout_seconds": ("agent0", "timeout_seconds"),
    "agent0_max_attempts": ("agent0", "max_attempts"),
    "agent0_backoff_seconds": ("agent0", "backoff_seconds"),
    "agent0_breaker_failures": ("agent0", "breaker_failures"),
    "agent0_breaker_reset_seconds": ("agent0", "breaker_reset_seconds"),
    "agent0_db": ("agent0", "db"),
    "account_equity": ("risk", "account_equity"),
    "risk_per_trade_pct": ("risk", "per_trade_pct"),
    "risk_max_position": ("risk", "max_position"),
    "risk_max_gross_exposure": ("risk", "max_gross_exposure"),
    "risk_max_order_notional": ("risk", "max_order_notional"),
    "risk_min_stop_pct": ("risk", "min_stop_pct"),
    "risk_max_stop_pct": ("risk", "max_stop_pct"),
    "risk_max_orders_per_minute": ("risk", "max_orders_per_minute"),
    "risk_price_band_pct": ("risk", "price_band_pct"),
    "risk_quote_max_age_seconds": ("risk", "quote_max_age_seconds"),
    "risk_daily_loss_limit": ("risk", "daily_loss_limit"),
    "uat_required_sessions": ("uat", "required_sessions"),
}
SECTIONS = frozenset(section for section, _ in MOVES.values())
SKIP_DIRS = frozenset({".venv", "venv", ".git", ".state", "node_modules", "__pycache__", "build", "dist"})
#: The settings module itself (the sections are defined there) and this script are never rewritten.
SKIP_FILES = ("ibstream/config.py", "ops/codemods/settings_sections.py")
SETTINGS_CALLS = re.compile(r"settings|with_overrides", re.IGNORECASE)
LINE_LIMIT = 120


@dataclass
class Edit:
    """Replace text[start:end] (character offsets into the file) with ``text``."""

    start: int
    end: int
    text: str


@dataclass
class FileResult:
    path: Path
    edits: list[Edit] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)


def python_files(roots: list[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root)
            if any(part in SKIP_DIRS for part in relative.parts[:-1]):
                continue
            if any(path.as_posix().endswith(skip) for skip in SKIP_FILES):
                continue
            yield path


def defined_attributes(tree: ast.AST) -> set[str]:
    """Attribute names a module defines other than through Settings: class fields, ``self.x =``, argparse dests."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            if node.name == "Settings" or node.name.endswith("Settings"):
                continue
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    names.add(statement.target.id)
                elif isinstance(statement, ast.Assign):
                    names.update(t.id for t in statement.targets if isinstance(t, ast.Name))
                elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(statement.name)  # a property or method of the same name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                is_own = isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                if is_own and target.value.id in ("self", "cls"):  # type: ignore[attr-defined]
                    names.add(target.attr)  # type: ignore[attr-defined]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            dest = next((k.value for k in node.keywords if k.arg == "dest"), None)
            if isinstance(dest, ast.Constant) and isinstance(dest.value, str):
                names.add(dest.value)
                continue
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            long_flags = [f for f in flags if f.startswith("--")]
            chosen = long_flags[0] if long_flags else (flags[0] if flags else "")
            names.add(chosen.lstrip("-").replace("-", "_"))
    return names


class Rewriter:
    """One file's rewrite."""

    def __init__(self, path: Path, text: str, tree: ast.Module, ambiguous: set[str]) -> None:
        self.path = path
        self.text = text
        self.tree = tree
        self.ambiguous = ambiguous
        self.result = FileResult(path)
        self.line_starts = [0]
        for line in text.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.lines = text.splitlines()
        self.known = self._settings_names()

    # --- positions -------------------------------------------------------------------------------------------
    def offset(self, line: int, byte_column: int) -> int:
        """Character offset of an ast (1-based line, UTF-8 byte column) position."""
        source_line = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        column = len(source_line.encode()[:byte_column].decode(errors="replace"))
        return self.line_starts[line - 1] + column

    def where(self, node: ast.AST) -> str:
        line = getattr(node, "lineno", 0)
        source = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return f"{self.path}:{line}: {source}"

    def segment(self, node: ast.AST) -> str:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return self.text[start:end]

    # --- what is a settings object -------------------------------------------------------------------------
    def _settings_names(self) -> set[str]:
        """Names (variables, parameters, attributes) this file binds to a Settings object."""
        known: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.arg) and node.annotation is not None:
                if re.search(r"\bSettings\b", ast.unparse(node.annotation)):
                    known.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and re.search(r"\bSettings\b", ast.unparse(node.annotation)):
                target = node.target
                known.add(target.id if isinstance(target, ast.Name) else getattr(target, "attr", ""))
            elif (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.returns is not None
                and re.search(r"\bSettings\b", ast.unparse(node.returns))
            ):
                known.add(node.name)  # a helper returning Settings: its calls are settings objects
        changed = True
        while changed:  # assignments from settings objects, to a fixed point
            changed = False
            for node in ast.walk(self.tree):
                targets: list[ast.expr] = []
                value: ast.expr | None = None
                if isinstance(node, ast.Assign):
                    targets, value = node.targets, node.value
                elif isinstance(node, ast.NamedExpr):
                    targets, value = [node.target], node.value
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    for item in node.items:
                        if item.optional_vars is not None and self.is_settings(item.context_expr, known):
                            name = self.bound_name(item.optional_vars)
                            if name and name not in known:
                                known.add(name)
                                changed = True
                    continue
                if value is None or not self.is_settings(value, known):
                    continue
                for target in targets:
                    name = self.bound_name(target)
                    if name and name not in known:
                        known.add(name)
                        changed = True
        known.discard("")
        return known

    @staticmethod
    def bound_name(target: ast.expr) -> str:
        if isinstance(target, ast.Name):
            return target.id
        if isinstance(target, ast.Attribute):
            return target.attr
        return ""

    def is_settings(self, node: ast.expr, known: set[str] | None = None) -> bool:
        known = self.known if known is None else known
        if isinstance(node, ast.Name):
            return "settings" in node.id.lower() or node.id in known
        if isinstance(node, ast.Attribute):
            return "settings" in node.attr.lower() or node.attr in known
        if isinstance(node, ast.Call):
            function = node.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
            return bool(SETTINGS_CALLS.search(name)) or name in known or name == "Settings"
        if isinstance(node, ast.Await):
            return self.is_settings(node.value, known)
        return False

    def kept(self, node: ast.AST) -> bool:
        """A line marked ``# codemod: keep`` is left as it is (e.g. a test of the old shape's refusal)."""
        lines = range(getattr(node, "lineno", 0), (getattr(node, "end_lineno", None) or 0) + 1)
        return any(0 < n <= len(self.lines) and "codemod: keep" in self.lines[n - 1] for n in lines)

    @staticmethod
    def migrated(receiver: ast.expr) -> bool:
        """``x.<section>.<field>``: already in the new shape (keeps a second run from rewriting it again)."""
        return isinstance(receiver, ast.Attribute) and receiver.attr in SECTIONS

    # --- rewrites ----------------------------------------------------------------------------------------------
    def run(self) -> FileResult:
        handled: set[int] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self.model_copy(node, handled)
                self.getattr_call(node)
            elif isinstance(node, ast.Compare):
                self.fields_set(node, handled)
            elif isinstance(node, ast.Attribute) and id(node) not in handled:
                self.attribute(node)
        return self.result

    def attribute(self, node: ast.Attribute) -> None:
        if node.attr == "model_fields" and isinstance(node.value, ast.Name) and node.value.id == "Settings":
            self.result.undecided.append(f"{self.where(node)}  [Settings.model_fields: use config.FLAT_NAMES]")
            return
        move = MOVES.get(node.attr)
        if move is None or self.migrated(node.value) or self.kept(node):
            return
        if not self.is_settings(node.value) and node.attr in self.ambiguous:
            self.result.undecided.append(f"{self.where(node)}  [.{node.attr}: receiver may not be Settings]")
            return
        end = self.offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
        start = end - len(node.attr)
        if self.text[start:end] != node.attr:
            self.result.undecided.append(f"{self.where(node)}  [.{node.attr}: could not locate the name]")
            return
        new = f"{move[0]}.{move[1]}"
        self.result.edits.append(Edit(start, end, new))
        self.result.changes.append(f"{self.path}:{node.lineno}: .{node.attr} -> .{new}")

    def model_copy(self, node: ast.Call, handled: set[int]) -> None:
        function = node.func
        if not (isinstance(function, ast.Attribute) and function.attr == "model_copy"):
            return
        if not self.is_settings(function.value):
            return
        update = next((k.value for k in node.keywords if k.arg == "update"), None)
        if isinstance(update, ast.Dict) and not any(
            isinstance(key, ast.Constant) and key.value in MOVES for key in update.keys
        ):
            return  # only top-level fields or whole sections: model_copy still does that
        if self.kept(node):
            return
        if update is None or node.args or len(node.keywords) != 1:
            self.result.undecided.append(f"{self.where(node)}  [model_copy: not a plain update=...]")
            return
        if isinstance(update, ast.Dict) and all(
            isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isidentifier()
            for key in update.keys
        ):
            arguments = ", ".join(
                f"{key.value}={self.segment(value)}"  # type: ignore[union-attr]
                for key, value in zip(update.keys, update.values, strict=True)
            )
        else:
            arguments = f"**{self.segment(update)}"
        end_of_name = self.offset(function.end_lineno or 0, function.end_col_offset or 0)
        start = end_of_name - len("model_copy")
        end = self.offset(node.end_lineno or 0, node.end_col_offset or 0)
        self.result.edits.append(Edit(start, end, f"with_overrides({arguments})"))
        self.result.changes.append(f"{self.path}:{node.lineno}: .model_copy(update=...) -> .with_overrides(...)")
        for inner in ast.walk(update):
            handled.add(id(inner))  # flat keys inside stay flat; attribute reads inside are still rewritten below
        for inner in ast.walk(update):
            if isinstance(inner, ast.Attribute):
                handled.discard(id(inner))

    def fields_set(self, node: ast.Compare, handled: set[int]) -> None:
        left, comparators = node.left, node.comparators
        if not (isinstance(left, ast.Constant) and isinstance(left.value, str) and left.value in MOVES):
            return
        if len(comparators) != 1 or not isinstance(node.ops[0], (ast.In, ast.NotIn)):
            return
        target = comparators[0]
        if not (isinstance(target, ast.Attribute) and target.attr == "model_fields_set"):
            return
        if self.migrated(target.value) or not self.is_settings(target.value):
            return
        section, name = MOVES[left.value]
        quote = self.segment(left)[0]
        self.result.edits.append(
            Edit(
                self.offset(left.lineno, left.col_offset),
                self.offset(left.end_lineno or 0, left.end_col_offset or 0),
                f"{quote}{name}{quote}",
            )
        )
        end = self.offset(target.end_lineno or 0, target.end_col_offset or 0)
        start = end - len("model_fields_set")
        self.result.edits.append(Edit(start, end, f"{section}.model_fields_set"))
        handled.add(id(target))
        self.result.changes.append(f"{self.path}:{node.lineno}: {left.value!r} in model_fields_set -> {section}")

    def getattr_call(self, node: ast.Call) -> None:
        if not (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr")):
            return
        if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in MOVES:
            self.result.undecided.append(f"{self.where(node)}  [{node.func.id} by flat name]")


def apply(text: str, edits: list[Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


def rewrite_source(text: str, path: Path = Path("<source>"), ambiguous: set[str] | None = None) -> FileResult:
    """Rewrite one module's text (``ambiguous``: generic names; default: those the module itself defines)."""
    tree = ast.parse(text, filename=str(path))
    names = (defined_attributes(tree) if ambiguous is None else ambiguous) & set(MOVES)
    return Rewriter(path, text, tree, names).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[Path()])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if something would change")
    options = parser.parse_args(argv)
    files = list(python_files(options.roots))
    trees: dict[Path, tuple[str, ast.Module]] = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            trees[path] = (text, ast.parse(text, filename=str(path)))
        except SyntaxError as error:
            print(f"SKIPPED {path}: {error}")
    ambiguous: set[str] = set()
    for _, tree in trees.values():
        ambiguous |= defined_attributes(tree)
    ambiguous &= set(MOVES)
    if ambiguous:
        print(f"generic names (rewritten only on a settings receiver): {', '.join(sorted(ambiguous))}")
    changed = undecided = 0
    for path, (text, tree) in trees.items():
        result = Rewriter(path, text, tree, ambiguous).run()
        for line in result.changes:
            print(f"CHANGED {line}")
        sites = list(dict.fromkeys(result.undecided))  # one line per site, even with two names on it
        for line in sites:
            print(f"UNDECIDED {line}")
        undecided += len(sites)
        if not result.edits:
            continue
        changed += 1
        new_text = apply(text, result.edits)
        edited_lines = {text.count("\n", 0, edit.start) + 1 for edit in result.edits}
        for number, line in enumerate(new_text.splitlines(), start=1):
            if len(line) > LINE_LIMIT and number in edited_lines:
                print(f"LONG {path}:{number}: {len(line)} characters")
        if not options.check:
            path.write_text(new_text, encoding="utf-8")
    verb = "would change" if options.check else "changed"
    print(f"{verb} {changed} file(s); {undecided} site(s) undecided")
    return 1 if options.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
