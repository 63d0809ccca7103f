"""The Dockerfile's rules, checked without an engine (tests/integration/test_image.py builds and runs it): stages, base,
locked dependencies, non-root user, no build tools in the final image, entrypoint, healthcheck, build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cc|libc6-dev|[a-z0-9.+-]+-dev|python3-dev|rustc|cargo|curl|wget)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each a list of (INSTRUCTION, arguments) with continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())
FINAL = STAGES[-1]


def resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def lock_entries() -> dict[str, str]:
    entries = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        # Every pin carries the sha256 of its file: pip's hash-checking mode refuses anything else.
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+) --hash=sha256:[0-9a-f]{64}", line)
        assert match, f"requirements.lock: not an exact pin with its sha256: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in entries, f"requirements.lock pins {name} twice"
        entries[name] = match.group(2)
    return entries


def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


# --- stages and base image ---------------------------------------------------------------------------------------


def test_multi_stage_build_on_a_slim_python_311_base_pinned_by_tag() -> None:
    assert len(STAGES) >= 2, "expected a build stage and a runtime stage"
    for stage in STAGES:
        image = resolve(stage.base, ARGS)
        if image in {s.name for s in STAGES}:
            continue  # FROM an earlier stage
        repository, _, tag = image.partition("@")[0].partition(":")
        assert repository in {"python", "docker.io/library/python"}, image
        assert re.fullmatch(r"3\.11\.\d+-slim(-[a-z]+)?", tag), f"{image}: pin an exact 3.11.x slim tag"
    # The venv's interpreter symlinks point into the base image: build and runtime must use the same one.
    assert resolve(STAGES[0].base, ARGS) == resolve(FINAL.base, ARGS)


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    users = FINAL.all("USER")
    assert users, "no USER in the final stage: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    # No instruction after the last USER switches back.
    last_user = max(i for i, (kw, _) in enumerate(FINAL.instructions) if kw == "USER")
    assert all(kw != "USER" for kw, _ in FINAL.instructions[last_user + 1 :])


def test_no_build_tools_in_the_final_stage() -> None:
    for command in FINAL.all("RUN"):
        assert not BUILD_TOOLS.search(command), f"build tool in the final stage: {command}"
    for source in FINAL.all("COPY") + FINAL.all("ADD"):
        assert not re.search(r"/usr/(local/)?bin/(gcc|cc|make)", source), source
    # Build tooling the build stage installs must not reach the final image through the venv either.
    build_run = " ".join(STAGES[0].all("RUN"))
    assert re.search(r"pip uninstall -y setuptools wheel", build_run), "setuptools/wheel stay in /opt/venv"


def test_the_build_tools_the_build_stage_uses_are_pinned() -> None:
    build_run = " ".join(STAGES[0].all("RUN"))
    stage_args = dict(a.split("=", 1) for a in STAGES[0].all("ARG") if "=" in a)
    for tool in ("setuptools", "wheel"):
        match = re.search(rf'"?{tool}==([^"\s]+)"?', build_run)
        assert match, f"{tool} is not pinned in the build stage"
        assert re.fullmatch(r"\d+(\.\d+)+", resolve(match.group(1), stage_args)), match.group(0)


def test_entrypoint_is_the_ibstream_cli() -> None:
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["ibstream"]


def test_healthcheck_probes_the_health_endpoint_without_curl() -> None:
    (healthcheck,) = FINAL.all("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD")
    assert "--interval" in options and "--timeout" in options
    argv = json.loads(command.strip())
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "<healthcheck>", "exec")
    assert "IBSTREAM_HEALTH_PORT" in code and "/health" in code and "urllib.request" in code
    assert "IBSTREAM_HEALTH_PORT" in " ".join(FINAL.all("ENV")), "the image sets no default health port"


def test_the_root_filesystem_can_be_read_only() -> None:
    env = " ".join(FINAL.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "IBSTREAM_STATE_DIR=/var/lib/ibstream" in env
    assert any("compileall" in run for run in STAGES[0].all("RUN")), "bytecode would be written at run time"


# --- dependencies: the lock ----------------------------------------------------------------------------------------


def test_dependencies_are_installed_from_the_lock_without_resolution() -> None:
    copies = " ".join(STAGES[0].all("COPY"))
    assert "requirements.lock" in copies
    installs = [run for run in STAGES[0].all("RUN") if "requirements.lock" in run]
    assert installs, "the lock is copied but never installed"
    words = shlex.split(installs[0])
    assert "--no-deps" in words and "-r" in words
    assert "--require-hashes" in words and "--only-binary=:all:" in words
    project_install = [run for run in STAGES[0].all("RUN") if re.search(r"pip install .*ibstream-\*\.whl", run)]
    assert project_install and "--no-deps" in project_install[0], "the project install must not resolve anything"


def test_the_lock_covers_every_runtime_dependency() -> None:
    lock = lock_entries()
    assert "ibstream" not in lock
    for text in project()["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} (pyproject) is not in requirements.lock: run ops/lock"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"requirements.lock pins {name}=={lock[name]}, pyproject wants {requirement.specifier}: run ops/lock"
        )


def test_the_lock_is_closed_under_the_installed_dependency_metadata() -> None:
    # Walk Requires-Dist (with extras and markers for this Python 3.11 / Linux) from pyproject's dependencies through
    # the distributions installed here; every dependency reached must be pinned.
    lock = lock_entries()
    environment = default_environment()
    pending = [Requirement(text) for text in project()["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    missing = []
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if name not in lock:
            missing.append(name)
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            child = Requirement(text)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({**environment, "extra": e}) for e in extras):
                pending.append(child)
    assert not missing, f"not in requirements.lock (run ops/lock): {sorted(set(missing))}"


def test_the_lock_holds_no_dev_tools() -> None:
    lock = lock_entries()
    runtime = {canonicalize_name(Requirement(t).name) for t in project()["dependencies"]}
    dev = {canonicalize_name(Requirement(t).name) for t in project()["optional-dependencies"]["dev"]}
    assert not (dev - runtime) & set(lock), "dev-only packages in requirements.lock"


# --- source layout and build context -------------------------------------------------------------------------------


def copies_into(stage: Stage) -> dict[str, str]:
    """source → destination of the COPY instructions that read the build context."""
    result = {}
    for args in stage.all("COPY"):
        if args.startswith("--from"):
            continue
        *sources, destination = shlex.split(args)
        for source in sources:
            result[source] = destination
    return result


def test_the_image_installs_the_wheel_built_from_the_packages_and_keeps_no_source_tree() -> None:
    # The wheel's inputs sit in /src as in the checkout (ibstream/contracts/avro links to ../../avro); the project is
    # installed from the wheel built there, never in editable mode, and the final stage copies only the venv.
    assert (ROOT / "ibstream" / "contracts" / "avro").resolve() == ROOT / "avro"
    copies = copies_into(STAGES[0])
    assert copies["avro"] == "/src/avro"
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in include:
        package = pattern.rstrip("*")
        assert copies.get(package) == f"/src/{package}", f"package {package} is not copied into /src"
    assert project()["readme"] in copies, "pyproject's readme is needed to build the wheel"
    build_run = " ".join(STAGES[0].all("RUN"))
    assert re.search(r"pip wheel [^&]*--no-deps[^&]* /src", build_run), "the wheel is not built from /src"
    assert re.search(r"pip install --no-deps /tmp/dist/ibstream-\*\.whl", build_run), "the wheel is not installed"
    assert not re.search(r"pip install [^&]*-e ", build_run), "an editable install needs the source tree at run time"
    final_copies = [args for args in FINAL.all("COPY") if args.startswith("--from")]
    assert [args.split()[-2:] for args in final_copies] == [["/opt/venv", "/opt/venv"]]


def test_the_base_image_is_a_build_argument_of_both_stages() -> None:
    assert "PYTHON_IMAGE" in ARGS
    for stage in STAGES:
        assert stage.base == "${PYTHON_IMAGE}", stage.base


def dockerignore() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore()
    for path in (".venv", ".state", ".git", ".venv/bin/python", ".state/kafka/data", "ibstream/__pycache__/x.pyc"):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"


@pytest.mark.parametrize("stage", range(len(STAGES)))
def test_everything_the_dockerfile_copies_exists_and_is_in_the_context(stage: int) -> None:
    patterns = dockerignore()
    for source in copies_into(STAGES[stage]):
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
