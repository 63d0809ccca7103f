"""The wheel, as a user installs it: built from this tree, installed into a clean venv with only the locked
dependencies, and every deployable run from that venv's `ibstream` (no checkout on its import path) against the test
broker for a short pipeline slice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibstream.config import PROJECT_ROOT, Settings
from tooling.processes import ProcessGroup

from .package_support import PipelineSlice, build_wheel, clean_env, clean_venv

# A fresh machine downloads the locked wheels and fills the clean venv first (minutes under load).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def venv() -> Path:
    return clean_venv(build_wheel())


def test_the_installed_package_loads_its_data_from_site_packages(venv: Path, tmp_path: Path) -> None:
    probe = (
        "import ibstream, api.console.router as r, ibstream.contracts.serde as s, ibstream.warehouse.audits as a\n"
        "print(ibstream.__file__); print(s.AVRO_DIR); print(r.STATIC_DIR)\n"
        "print(len(s.SchemaStore().names())); print(len(a.AUDITS['order-trail'].sql()))\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    module, avro_dir, static_dir, schemas, sql_length = result.stdout.split()
    site = str(venv / "lib")
    for path in (module, avro_dir, static_dir):
        assert path.startswith(site) and not path.startswith(str(PROJECT_ROOT / "ibstream")), path
    assert not Path(avro_dir).is_symlink(), "the wheel holds the schemas themselves, not a link into a checkout"
    assert int(schemas) == len(list((PROJECT_ROOT / "avro").glob("*.avsc")))
    assert int(sql_length) > 0


def test_every_deployable_runs_from_the_wheel(venv: Path, settings: Settings, tmp_path: Path) -> None:
    ibstream = str(venv / "bin" / "ibstream")
    group = ProcessGroup(tmp_path / "logs", base_env=clean_env())
    pipeline = PipelineSlice(
        lambda name, arguments, env: [ibstream, *arguments],
        settings,
        group,
        # Each process its own state (the sink's embedded warehouse is one process's), as each container has.
        own_env=lambda name: {"IBSTREAM_STATE_DIR": str(tmp_path / "state" / name)},
    )
    try:
        pipeline.start()
        pipeline.check()
    finally:
        group.stop_all()
