"""CLI argument mapping (the ``ibstream sim`` entry point reuses it)."""

from __future__ import annotations

import datetime as dt

from ibsim.cli import build_parser, config_from_args
from ibsim.config import EXCHANGE_TZ


def test_cli_arguments_map_to_config() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--control-port",
            "-1",
            "--seed",
            "9",
            "--speed",
            "60",
            "--account",
            "U1234567",
            "--symbols",
            "aapl",
            "ZZZZ",
            "--start",
            "2025-01-06T09:45:00",
            "--partial-fill",
            "100",
            "--no-pacing",
            "--delayed-only",
            "--hours",
            "24h",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.port, cfg.control_port, cfg.seed, cfg.speed, cfg.accounts) == (0, None, 9, 60.0, ("U1234567",))
    assert [i.symbol for i in cfg.universe] == ["AAPL", "ZZZZ"] and cfg.universe[0].con_id == 265598
    assert cfg.start_time == dt.datetime(2025, 1, 6, 9, 45, tzinfo=EXCHANGE_TZ)
    assert (cfg.partial_fill_max, cfg.enforce_pacing, cfg.live_data_entitled, cfg.trading_hours) == (
        100.0,
        False,
        False,
        "24h",
    )


def test_cli_defaults_are_paper_and_loopback() -> None:
    cfg = config_from_args(build_parser().parse_args([]))
    assert (cfg.host, cfg.port, cfg.control_port) == ("127.0.0.1", 4002, 4003)
    assert cfg.accounts[0].startswith("DU")


def test_daily_restart_flag_and_when_it_falls() -> None:
    import pytest

    from ibsim.gateway import next_daily_restart

    cfg = config_from_args(build_parser().parse_args(["--daily-restart", "23:45"]))
    assert cfg.daily_restart_time == "23:45"
    with pytest.raises(ValueError, match="--daily-restart must be HH:MM"):
        config_from_args(build_parser().parse_args(["--daily-restart", "midnight"]))
    evening = dt.datetime(2025, 1, 6, 23, 0, tzinfo=EXCHANGE_TZ).timestamp()
    assert next_daily_restart("23:45", evening) == evening + 45 * 60
    assert next_daily_restart("23:45", evening + 45 * 60) == evening + 45 * 60 + 86_400  # at it: the next day's
    assert next_daily_restart(None, evening) is None
