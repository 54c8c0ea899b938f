"""A real Docker engine for the collector's tests: client, image check, disposable containers.

The engine comes from `.ci/docker-setup.sh` (DOCKER_HOST, else its private socket). Without
one the tests skip locally, but fail when CI or CAPACITY_REQUIRE_DOCKER=1 is set: in CI a
skipped engine test would hide exactly the measurements this suite exists to check.
Import the fixtures (`docker_client`, `containers`) into the test module that uses them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

PRIVATE_SOCKET = Path("/var/run/capacity-docker.sock")
IMAGE = "capacity-busybox:latest"
TEST_LABEL = "capacity-test"
SETUP_HINT = 'run `eval "$(bash .ci/docker-setup.sh)"` first'


def docker_required() -> bool:
    """True in CI (CI=true) or with CAPACITY_REQUIRE_DOCKER=1: no engine is then a failure."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get("CAPACITY_REQUIRE_DOCKER", "") == "1"


def engine_unavailable(reason: str) -> NoReturn:
    if docker_required():
        pytest.fail(f"Docker engine required (CI or CAPACITY_REQUIRE_DOCKER=1) but {reason}")
    pytest.skip(f"no Docker engine: {reason}; {SETUP_HINT}")


def docker_host() -> str | None:
    """The engine address tests use: DOCKER_HOST, else the private socket if it exists."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if PRIVATE_SOCKET.exists():
        return f"unix://{PRIVATE_SOCKET}"
    return None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A pinged client; DOCKER_HOST is set for the session so code under test finds it too."""
    import docker

    host = docker_host()
    if host is None:
        engine_unavailable(f"DOCKER_HOST is unset and {PRIVATE_SOCKET} does not exist")
    try:
        client = docker.DockerClient(base_url=host, timeout=30)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        engine_unavailable(f"the engine at {host} does not answer ({exc})")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        engine_unavailable(f"image {IMAGE} is missing")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", host)
        yield client
    client.close()


class Containers:
    """Starts busybox containers under a unique name prefix and removes them all at the end."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.prefix = f"captest-{uuid.uuid4().hex[:8]}-"
        self.started: list[Any] = []

    def run(self, name: str, command: str, **options: Any) -> Any:
        container = self.client.containers.run(
            IMAGE,
            ["sh", "-c", command],
            name=self.prefix + name,
            detach=True,
            labels={TEST_LABEL: self.prefix},
            **options,
        )
        self.started.append(container)
        return container

    def remove_all(self) -> None:
        for container in self.started:
            with contextlib.suppress(Exception):  # already gone is fine; teardown goes on
                container.remove(force=True)


@pytest.fixture(scope="module")
def containers(docker_client: Any) -> Iterator[Containers]:
    box = Containers(docker_client)
    try:
        yield box
    finally:
        box.remove_all()


_SIZE = re.compile(r"^\s*([\d.]+)\s*([kKMGT]?i?B)\s*$")
_UNITS = {
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}


def parse_size_mb(text: str) -> float:
    """`200.9MiB` (as docker stats prints it) to MiB."""
    match = _SIZE.match(text)
    assert match, f"cannot parse size {text!r}"
    return float(match.group(1)) * _UNITS[match.group(2)] / 1024**2


def run_docker_stats(names: list[str]) -> dict[str, dict[str, float]]:
    """`docker stats --no-stream` for these containers: name -> cpu_cores, mem_mb, limit_mb."""
    cli = shutil.which("docker")
    if cli is None:
        engine_unavailable("the docker CLI is not on PATH")
    done = subprocess.run(
        [cli, "stats", "--no-stream", "--format", "{{json .}}", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    figures = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        used, _, limit = row["MemUsage"].partition("/")
        figures[row["Name"]] = {
            "cpu_cores": float(row["CPUPerc"].rstrip("%")) / 100,
            "mem_mb": parse_size_mb(used),
            "limit_mb": parse_size_mb(limit),
        }
    return figures


@pytest.fixture(scope="session")
def docker_stats(docker_client: Any) -> Any:
    """`run_docker_stats`, once the engine is known to be there."""
    return run_docker_stats
