"""The container image, built with podman from the Dockerfile and run as production runs it: read-only root
filesystem, uid 10001, every deployable against the test broker for a short pipeline slice, and the image's own
HEALTHCHECK passing in each. Skipped without podman on a developer's machine; fails under CI=true."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibstream.config import Settings
from tests.tools import require_tool
from tooling.processes import ProcessGroup

from .image_support import NOTES, build_image, engine_env, missing_tools
from .package_support import DEPLOYABLES, PipelineSlice, wheelhouse

# A fresh machine builds the base and the image first (minutes under load); a warm one reuses them.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def image(pytestconfig: pytest.Config) -> str:
    require_tool(missing_tools())
    NOTES.clear()
    built = build_image(wheelhouse())
    # Past pytest's capture, so CI's log says which base the image was built on (or that it was reused).
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            for note in NOTES:
                reporter.write_line(note)
    return built


def in_image(image: str, *arguments: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["podman", "run", "--rm", "--read-only", "--network", "host"]
    argv += ["--entrypoint", entrypoint] if entrypoint else []
    return subprocess.run([*argv, image, *arguments], env=engine_env(), capture_output=True, text=True, timeout=300)


def test_the_image_runs_as_uid_10001_on_a_read_only_root_with_the_wheel_installed(image: str) -> None:
    probe = (
        "import os, ibstream.contracts.serde as s\n"
        "print(os.getuid(), os.getgid(), s.AVRO_DIR, len(s.SchemaStore().names()))\n"
        "for path in ('/opt/venv/probe', '/probe'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as error:\n"
        "        print('refused', error.errno)\n"
    )
    result = in_image(image, "-c", probe, entrypoint="python")
    assert result.returncode == 0, result.stderr
    first, *refusals = result.stdout.split("\n")
    uid, gid, avro_dir, schemas = first.split()
    assert (uid, gid) == ("10001", "10001")
    assert avro_dir.startswith("/opt/venv/lib/python3.11/site-packages/ibstream/"), avro_dir
    assert int(schemas) > 0
    assert [line for line in refusals if line] == ["refused 30", "refused 30"]  # EROFS, both
    listing = in_image(image, "-c", "import os; print(sorted(os.listdir('/')))", entrypoint="python")
    assert "'app'" not in listing.stdout and "'src'" not in listing.stdout, listing.stdout


class Containers:
    """`podman run` argv for each process of the slice: one container each, named so they can be checked and
    removed, sharing the host's network (the test broker listens on loopback)."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.run_id = uuid.uuid4().hex[:8]
        self.names: dict[str, str] = {}

    def __call__(self, name: str, arguments: list[str], env: dict[str, str]) -> list[str]:
        container = f"ibstream-slice-{self.run_id}-{name}"
        self.names[name] = container
        argv = ["podman", "run", "--rm", "--name", container, "--network", "host", "--read-only"]
        # The state directory is the image's volume; a tmpfs owned by the container's user (U) stands in for it.
        argv += ["--tmpfs", "/var/lib/ibstream:rw,U", "--user", "10001:10001"]
        for key in sorted(env):
            argv += ["-e", key]  # the value comes from podman's environment: no secret on its command line
        health_port = next((v for k, v in env.items() if k == PORT_SETTINGS.get(name)), None)
        if health_port is not None:
            argv += ["-e", f"IBSTREAM_HEALTH_PORT={health_port}"]
        return [*argv, self.image, *arguments]

    def remove_all(self) -> None:
        for container in self.names.values():
            subprocess.run(["podman", "rm", "-f", "-i", container], env=engine_env(), capture_output=True, timeout=60)


#: The setting naming each deployable's health port, which the image's HEALTHCHECK probes as IBSTREAM_HEALTH_PORT.
PORT_SETTINGS = {name: setting for name, _, setting in DEPLOYABLES}


@pytest.fixture
def containers(image: str) -> Iterator[Containers]:
    launched = Containers(image)
    yield launched
    launched.remove_all()


def test_every_deployable_runs_from_the_image_and_passes_its_healthcheck(
    containers: Containers, settings: Settings, tmp_path: Path
) -> None:
    group = ProcessGroup(tmp_path / "logs", base_env=engine_env())
    pipeline = PipelineSlice(containers, settings, group)
    try:
        pipeline.start(timeout=240)
        pipeline.check()
        for name in PORT_SETTINGS:
            health = subprocess.run(
                ["podman", "healthcheck", "run", containers.names[name]],
                env=engine_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert health.returncode == 0, f"{name}: HEALTHCHECK failed: {health.stdout}{health.stderr}"
    finally:
        group.stop_all()
