"""The container image, built and run with podman as CI does (no Docker engine there).

* Engine settings live in a project containers.conf under ``.state/containers/`` (``CONTAINERS_CONF``), not in /etc:
  runc (crun refuses some kernels' cgroup layouts) and ulimits within the host's hard nofile limit.
* The base: the official ``python:3.11.14-slim-bookworm`` where it is present or can be pulled; otherwise a Debian
  bookworm base with python3 built by mmdebstrap and imported (its tarball cached under ``.state/package/base``).
  Which one was used is printed to the log.
* The image is tagged with a digest of its inputs (Dockerfile, lock, wheel inputs, base image id), so a warm machine
  reuses it instead of rebuilding.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ibstream.config import PROJECT_ROOT

from .package_support import LOCK, PACKAGE_STATE, WHEEL_INPUTS, run, tree_digest

OFFICIAL_BASE = "docker.io/library/python:3.11.14-slim-bookworm"
LOCAL_BASE = "localhost/ibstream-base:bookworm-python3"
IMAGE_REPOSITORY = "localhost/ibstream"
CONTAINERS_CONF = PROJECT_ROOT / ".state" / "containers" / "containers.conf"
ENGINE_SETTINGS = """\
# Written by tests/integration/image_support.py for podman (CONTAINERS_CONF); /etc is left alone.
[containers]
# Within the host's hard nofile limit (20000 on the CI machine); podman's default asks for more and fails.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun refuses the CI kernel's cgroup layout; runc runs there.
runtime = "runc"
"""
#: The host's CA bundle, mounted into the build so pip trusts the index the host trusts (a proxy's CA included).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def missing_tools() -> str | None:
    """Why the image cannot be built here, or None."""
    absent = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if absent:
        return f"{' and '.join(absent)} not installed (ops/dev install installs podman, buildah, mmdebstrap, runc)"
    return None


def engine_env() -> dict[str, str]:
    """The environment podman runs with: the project's containers.conf."""
    if not CONTAINERS_CONF.is_file() or CONTAINERS_CONF.read_text() != ENGINE_SETTINGS:
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text(ENGINE_SETTINGS)
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*arguments: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run(["podman", *arguments], timeout=timeout, env=engine_env())


def image_exists(name: str) -> bool:
    result = subprocess.run(["podman", "image", "exists", name], env=engine_env(), timeout=60, check=False)
    return result.returncode == 0


#: What the build decided (which base, built or cached), for the test to write to CI's log.
NOTES: list[str] = []


def say(message: str) -> None:
    NOTES.append(f"[image] {message}")


def base_image() -> str:
    """The official base where it is here or pullable, else the local mmdebstrap one (built once, then cached)."""
    if image_exists(OFFICIAL_BASE):
        say(f"base: the official {OFFICIAL_BASE} (present)")
        return OFFICIAL_BASE
    pulled = subprocess.run(
        ["podman", "pull", "--quiet", OFFICIAL_BASE], env=engine_env(), capture_output=True, text=True, timeout=120
    )
    if pulled.returncode == 0:
        say(f"base: the official {OFFICIAL_BASE} (pulled)")
        return OFFICIAL_BASE
    reason = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
    if not image_exists(LOCAL_BASE):
        tarball = PACKAGE_STATE / "base" / "bookworm-python3.tar"
        if not tarball.is_file():
            if shutil.which("mmdebstrap") is None:
                raise AssertionError(f"{OFFICIAL_BASE} cannot be pulled ({reason}) and mmdebstrap is not installed")
            tarball.parent.mkdir(parents=True, exist_ok=True)
            partial = tarball.with_suffix(".partial")
            packages = "python3,python3-venv,python-is-python3,ca-certificates"
            run(
                ["mmdebstrap", "--variant=minbase", "--format=tar", f"--include={packages}", "bookworm", str(partial)],
                timeout=900,
            )
            partial.rename(tarball)
        podman("import", "--change", 'CMD ["/bin/bash"]', str(tarball), LOCAL_BASE)
    say(f"base: {LOCAL_BASE}, Debian bookworm built with mmdebstrap ({OFFICIAL_BASE} unreachable: {reason})")
    return LOCAL_BASE


def image_inputs_digest(base_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(tree_digest(PROJECT_ROOT, ("Dockerfile", ".dockerignore", *WHEEL_INPUTS)).encode())
    digest.update(LOCK.read_bytes())
    digest.update(base_id.encode())
    return digest.hexdigest()[:16]


def build_image(wheelhouse: Path | None = None) -> str:
    """The image of this tree (podman build of the Dockerfile, base as a build argument), reused when its inputs'
    digest is already tagged. ``wheelhouse`` (the locked wheels) saves downloading them again."""
    base = base_image()
    base_id = podman("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
    image = f"{IMAGE_REPOSITORY}:ci-{image_inputs_digest(base_id)}"
    if image_exists(image):
        say(f"image: {image} (cached, inputs unchanged)")
        return image
    argv = ["build", "--format", "docker", "--build-arg", f"PYTHON_IMAGE={base}", "--tag", image]
    if HOST_CA_BUNDLE.is_file():
        argv += ["-v", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"]
    if wheelhouse is not None:
        argv += ["-v", f"{wheelhouse}:/wheelhouse:ro", "--build-arg", "WHEELHOUSE=/wheelhouse"]
    podman(*argv, str(PROJECT_ROOT), timeout=1800)
    say(f"image: built {image} on {base}")
    prune_images(keep=image)
    return image


def prune_images(keep: str) -> None:
    """Untag the images of earlier inputs (over 1 GB each, sharing only the dependency layer); layers still used
    stay."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY).stdout.split()
    stale = [name for name in listed if name.startswith(f"{IMAGE_REPOSITORY}:ci-") and name != keep]
    if stale:
        subprocess.run(["podman", "rmi", *stale], env=engine_env(), capture_output=True, timeout=300, check=False)
