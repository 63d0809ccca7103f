"""One log level for every deployable: IBSTREAM_LOG_LEVEL, overridden by `ibstream --log-level` and by the
deployable's own --log-level, validated at startup like every setting."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from ibstream import cli, telemetry
from ibstream.config import get_settings, load_settings
from ibstream.exceptions import ConfigError

#: How each deployable is started from the CLI, and the module whose main() configures its logging.
DEPLOYABLES = {
    "producer": (["run", "producer"], "producers.market_data"),
    "streams": (["run", "streams"], "streams.app"),
    "execution": (["run", "execution"], "consumers.execution"),
    "sink": (["run", "sink"], "consumers.warehouse_sink.app"),
    "api": (["run", "api"], "api.app"),
    "agent0": (["run", "agent0"], "api.agent0"),
    "ibsim": (["sim"], "ibsim.cli"),
}


class _ConfiguredError(Exception):
    """Raised by the stand-in for telemetry.configure: main() got as far as configuring logging, stop there."""


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Recorded so the teardown restores it: `ibstream --log-level` writes it for the processes it runs.
    monkeypatch.setenv("IBSTREAM_LOG_LEVEL", "INFO")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_setting_defaults_to_info_and_takes_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IBSTREAM_LOG_LEVEL")
    assert load_settings().log_level == "INFO"
    monkeypatch.setenv("IBSTREAM_LOG_LEVEL", " debug")
    assert load_settings().log_level == "DEBUG"


def test_a_bad_level_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBSTREAM_LOG_LEVEL", "bogus")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.setting == "IBSTREAM_LOG_LEVEL"
    assert "DEBUG" in caught.value.reason


def _levels_configured(monkeypatch: pytest.MonkeyPatch, name: str, argv: list[str]) -> list[str]:
    """Start the deployable through the CLI; the log levels its main() configured before it was stopped."""
    module = importlib.import_module(DEPLOYABLES[name][1])
    levels: list[str] = []

    def configure(component: str, log_level: str = "INFO") -> None:
        levels.append(log_level)
        raise _ConfiguredError

    monkeypatch.setattr(telemetry, "configure", configure)
    if hasattr(module, "configure"):  # imported by name at module level
        monkeypatch.setattr(module, "configure", configure)
    if hasattr(module, "get_settings"):  # cached settings would not see this test's environment
        monkeypatch.setattr(module, "get_settings", load_settings)
    with pytest.raises(_ConfiguredError):
        cli.main(argv)
    return levels


@pytest.mark.parametrize("name", sorted(DEPLOYABLES))
def test_the_level_reaches_every_deployables_logging(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    command = DEPLOYABLES[name][0]
    monkeypatch.setenv("IBSTREAM_API_JWT_SECRET", "s" * 48)  # the API checks its key before configuring logging
    monkeypatch.setenv("IBSTREAM_LOG_LEVEL", "warning")
    assert _levels_configured(monkeypatch, name, command) == ["WARNING"]
    # The deployable's own flag wins over the setting.
    assert _levels_configured(monkeypatch, name, [*command, "--log-level", "debug"]) == ["DEBUG"]
    # `ibstream --log-level` before the command sets the setting for it.
    assert _levels_configured(monkeypatch, name, ["--log-level", "error", *command]) == ["ERROR"]


@pytest.mark.parametrize("name", sorted(DEPLOYABLES))
def test_a_bad_level_stops_every_deployable_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    command, module_name = DEPLOYABLES[name]
    module = importlib.import_module(module_name)

    def configure(component: str, log_level: str = "INFO") -> None:
        raise AssertionError(f"{name} configured logging at {log_level!r} despite a bad IBSTREAM_LOG_LEVEL")

    monkeypatch.setattr(telemetry, "configure", configure)
    if hasattr(module, "configure"):
        monkeypatch.setattr(module, "configure", configure)
    if hasattr(module, "get_settings"):
        monkeypatch.setattr(module, "get_settings", load_settings)
    monkeypatch.setenv("IBSTREAM_LOG_LEVEL", "bogus")
    assert cli.main(command) == 2
    assert "IBSTREAM_LOG_LEVEL" in capsys.readouterr().err


def test_a_bad_deployable_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "producer", "--log-level", "loud"])
    assert exit_.value.code == 2
    assert "--log-level" in capsys.readouterr().err


def test_streams_still_accepts_the_old_loglevel_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _levels_configured(monkeypatch, "streams", ["run", "streams", "--loglevel", "critical"]) == ["CRITICAL"]
