"""requirements.lock from pip's installation report: exact pins with each file's sha256, the project left out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tooling.lockfile import HEADER, LockError, canonical, lock_lines, main


def item(name: str, version: str, sha256: str | None) -> dict[str, Any]:
    download: dict[str, Any] = {"url": f"https://files.example/{name}-{version}-py3-none-any.whl"}
    if sha256 is None:
        download = {"url": "file:///src", "dir_info": {}}
    else:
        download["archive_info"] = {"hashes": {"sha256": sha256}, "hash": f"sha256={sha256}"}
    return {"metadata": {"name": name, "version": version}, "download_info": download}


def test_each_distribution_is_pinned_with_its_hash_and_sorted_as_pip_freeze_sorts() -> None:
    report = {
        "install": [
            item("Zeta", "1.0", "a" * 64),
            item("aiohttp", "3.14.5", "b" * 64),
            item("aiohttp-cors", "0.8.1", "c" * 64),
            item("ibstream", "0.1.0", None),
        ]
    }
    assert lock_lines(report) == [
        f"aiohttp-cors==0.8.1 --hash=sha256:{'c' * 64}",
        f"aiohttp==3.14.5 --hash=sha256:{'b' * 64}",
        f"Zeta==1.0 --hash=sha256:{'a' * 64}",
    ]


def test_a_distribution_without_an_archive_hash_cannot_be_locked() -> None:
    with pytest.raises(LockError, match=r"local-thing 2\.0"):
        lock_lines({"install": [item("local-thing", "2.0", None)]})


def test_names_are_compared_in_their_canonical_form() -> None:
    assert canonical("Nautilus_IBAPI") == canonical("nautilus.ibapi") == "nautilus-ibapi"
    assert lock_lines({"install": [item("IBStream", "0.1.0", None)]}) == []


def test_main_writes_the_header_and_the_pins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"install": [' + json.dumps(item("attrs", "26.1.0", "d" * 64)) + "]}")
    assert main([str(report)]) == 0
    assert capsys.readouterr().out == HEADER + f"attrs==26.1.0 --hash=sha256:{'d' * 64}\n"
    assert main([]) == 2
