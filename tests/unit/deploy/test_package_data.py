"""The files the code reads at run time (Avro schemas, warehouse SQL, console assets) are package data: every one of
them matches a `[tool.setuptools.package-data]` pattern, so the wheel carries it, and the code finds them through
importlib.resources rather than relative to a checkout. tests/integration/test_wheel.py builds the wheel and runs it.
"""

from __future__ import annotations

import fnmatch
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from api.console import router
from ibstream.contracts import serde

ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DATA: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-data"
]

# (package, directory inside it whose every file the code may read at run time)
RUNTIME_DATA = [("ibstream", "contracts/avro"), ("ibstream", "warehouse/sql"), ("api", "console/static")]


def packaged(package: str, relative: str) -> bool:
    # setuptools matches each pattern with glob, where `*` never crosses a `/`: fnmatch per segment count does the same.
    return any(
        fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/")
        for pattern in PACKAGE_DATA.get(package, [])
    )


@pytest.mark.parametrize(("package", "directory"), RUNTIME_DATA)
def test_every_runtime_file_is_package_data(package: str, directory: str) -> None:
    base = ROOT / package / directory
    files = [path for path in base.rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    assert files, f"no files under {base}"
    for path in files:
        relative = path.relative_to(ROOT / package).as_posix()
        assert packaged(package, relative), f"{relative} matches no package-data pattern of {package}: not in the wheel"


def test_the_packaged_schema_directory_is_the_repository_avro_directory() -> None:
    # Schemas are edited in avro/ at the root; the package sees the same files through its link, not a copy that
    # could drift.
    link = ROOT / "ibstream" / "contracts" / "avro"
    assert link.is_symlink() and link.resolve() == (ROOT / "avro").resolve()
    names = sorted(p.relative_to(ROOT / "avro").as_posix() for p in (ROOT / "avro").rglob("*.avsc"))
    assert names == sorted(p.relative_to(link).as_posix() for p in link.rglob("*.avsc"))


def test_the_code_finds_its_data_through_importlib_resources() -> None:
    assert Path(str(resources.files("ibstream.contracts").joinpath("avro"))) == serde.AVRO_DIR
    assert (serde.AVRO_DIR / "quote.avsc").is_file()
    assert Path(str(resources.files("api.console").joinpath("static"))) == router.STATIC_DIR
    assert (router.STATIC_DIR / "index.html").is_file()
