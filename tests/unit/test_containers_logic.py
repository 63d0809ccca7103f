"""The pure parts of the test containers (tests/containers.py): where published ports are reached, image digests,
the base image's build command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.containers import base_build_command, digest_of, engine_host


@pytest.mark.parametrize(
    ("docker_host", "expected"),
    [
        ("unix:///run/podman/podman.sock", "127.0.0.1"),
        ("unix:///var/run/docker.sock", "127.0.0.1"),
        ("tcp://10.1.2.3:2375", "10.1.2.3"),
        ("tcp://docker:2376", "docker"),
        ("ssh://ci@build-host", "build-host"),
        ("npipe:////./pipe/docker_engine", "127.0.0.1"),
    ],
)
def test_published_ports_are_reached_on_the_engines_host(docker_host: str, expected: str) -> None:
    assert engine_host(docker_host) == expected


def test_an_image_digest_changes_with_any_input_and_only_then() -> None:
    inputs = ("base:1", "kafka_2.13-4.1.1.jar:100", b"#!/bin/bash\n")
    assert digest_of(*inputs) == digest_of(*inputs)
    assert digest_of(*inputs) != digest_of("base:2", *inputs[1:])
    assert digest_of(*inputs) != digest_of(inputs[0], "kafka_2.13-4.1.1.jar:101", inputs[2])
    # Inputs are delimited: moving a byte from one input to the next is a different set of inputs.
    assert digest_of("ab", "c") != digest_of("a", "bc")


def test_the_base_image_is_minimal_debian_with_the_java_it_is_asked_for() -> None:
    command = base_build_command("17", Path("/somewhere/base.tar"))
    assert "--include=openjdk-17-jre-headless" in command
    assert "--variant=minbase" in command
    assert command[command.index("bookworm") + 1] == "/somewhere/base.tar"
    assert base_build_command("21", Path("-")) != base_build_command("17", Path("-"))
