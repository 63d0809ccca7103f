"""The console script: dispatch, passthrough of deployable options, errors as exit codes with a message."""

from __future__ import annotations

import pytest

from ibstream import cli


def test_sim_and_run_pass_options_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {}

    def fake_loader(module: str, issue: int) -> object:
        return lambda argv: seen.setdefault(module, argv) and 0

    monkeypatch.setattr(cli, "_load_main", fake_loader)
    assert cli.main(["sim", "--port", "0", "--speed", "60"]) == 0
    assert cli.main(["run", "producer", "--log-level", "DEBUG"]) == 0
    assert seen == {"ibsim.cli": ["--port", "0", "--speed", "60"], "producers.market_data": ["--log-level", "DEBUG"]}


def test_config_error_exits_2_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from ibstream.config import load_settings

    monkeypatch.setenv("IBSTREAM_IB_PORT", "7496")
    monkeypatch.setattr(cli, "get_settings", load_settings)
    assert cli.main(["topics", "ensure"]) == 2
    assert "IBSTREAM_IB_PORT" in capsys.readouterr().err


def test_unknown_deployable_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "nonesuch"])
