"""The console script: dispatch, passthrough of deployable options, errors as exit codes with a message."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata

import pytest

import ibstream
from ibstream import cli
from ibstream.config import PROJECT_ROOT
from ibstream.exceptions import IbstreamError


def test_sim_and_run_pass_options_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {}

    def fake_loader(module: str) -> object:
        return lambda argv: seen.setdefault(module, argv) and 0

    monkeypatch.setattr(cli, "_load_main", fake_loader)
    assert cli.main(["sim", "--port", "0", "--speed", "60"]) == 0
    assert cli.main(["run", "producer", "--log-level", "DEBUG"]) == 0
    assert seen == {"ibsim.cli": ["--port", "0", "--speed", "60"], "producers.market_data": ["--log-level", "DEBUG"]}


def test_config_error_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ibstream.config import load_settings

    monkeypatch.setenv("IBSTREAM_IB_PORT", "7496")
    monkeypatch.setattr(cli, "get_settings", load_settings)
    assert cli.main(["topics", "ensure"]) == 2
    assert "IBSTREAM_IB_PORT" in capsys.readouterr().err


def test_unknown_deployable_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "nonesuch"])


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"ibstream {metadata.version('ibstream')}\n"


def test_version_without_an_installation_is_the_one_pyproject_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ibstream.version() == declared == ibstream.__version__


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_is_written_for_users_and_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help(["--help"], capsys)
    subcommands = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(cli.COMMANDS) == set(subcommands), "a command missing from the grouped --help list"
    for group, commands in cli.COMMAND_GROUPS.items():
        assert f"{group}:" in top and all(re.search(rf"^  {name} ", top, re.MULTILINE) for name in commands)
    assert "README" in top and "--version" in top and "--log-level" in top
    pages = {"": top} | {
        " ".join(argv): _help(argv, capsys)
        for argv in [[name, "--help"] for name in subcommands] + [["run", name, "--help"] for name in cli.DEPLOYABLES]
    }
    for argv, page in pages.items():
        for jargon in ("import-linter", "lazily", "deployable", "issue #", "faust.App", "``"):
            assert jargon not in page, f"`ibstream {argv} --help` mentions {jargon!r}"
        assert not re.search(r"(issue|#) ?\d", page), f"`ibstream {argv} --help` cites an issue number"


def test_a_missing_module_is_explained_without_issue_numbers() -> None:
    with pytest.raises(IbstreamError) as caught:
        cli._load_main("ibstream_no_such_package.main")
    assert "not part of this installation" in str(caught.value)
    assert not re.search(r"(issue|#) ?\d", str(caught.value))


def test_top_level_log_level_goes_before_the_command_and_reaches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_LOG_LEVEL", "INFO")  # restored afterwards: the CLI sets it for what it runs
    seen: dict[str, tuple[list[str], str]] = {}

    def fake_loader(module: str) -> object:
        return lambda argv: seen.setdefault(module, (argv, os.environ["IBSTREAM_LOG_LEVEL"])) and 0

    monkeypatch.setattr(cli, "_load_main", fake_loader)
    assert cli.main(["--log-level", "debug", "run", "producer", "--log-level", "ERROR"]) == 0
    assert cli.main(["--log-level=warning", "sim", "--port", "0"]) == 0
    assert seen == {
        "producers.market_data": (["--log-level", "ERROR"], "DEBUG"),
        "ibsim.cli": (["--port", "0"], "WARNING"),
    }


@pytest.mark.parametrize("argv", [["--log-level", "bogus", "run", "producer"], ["--log-level", "bogus", "stack"]])
def test_a_bad_top_level_log_level_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "--log-level" in capsys.readouterr().err


def test_operator_commands_are_loaded_from_the_tooling_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import tooling.cli

    parser = cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    tools = {name for name, sub in choices.items() if sub.get_default("handler") is cli._tool}
    assert tools == {"demo", "uat", "chaos", "stack", "replay", "dlq", "backtest", "history"}
    assert all(callable(getattr(tooling.cli, name)) for name in tools)
    seen: list[tuple[str, str]] = []

    def fake_loader(command: str) -> object:
        return lambda args: seen.append((command, args.action)) or 0

    monkeypatch.setattr(cli, "_load_tool", fake_loader)
    assert cli.main(["stack", "status"]) == 0
    assert seen == [("stack", "status")]
