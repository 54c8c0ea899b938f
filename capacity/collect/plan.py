"""Which resource sources a run samples: the scenario's `[resources]` plus known services.

One function used by `capacity run` and by a plain `locust -f` run, so both sample the same
targets and write the same resources.csv for the same scenario.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import psutil

from capacity.collect.docker_source import DockerSource, connect_docker
from capacity.collect.process_source import HostSource, ProcessSource
from capacity.errors import ConfigError
from capacity.scenario import ResourceSelection


def find_process(pattern: str, name: str) -> int:
    """The oldest process whose command line matches `pattern` (not this one)."""
    regex = re.compile(pattern)
    found: list[tuple[float, int]] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.info["pid"] != psutil.Process().pid and cmdline and regex.search(cmdline):
            found.append((proc.info.get("create_time") or 0.0, proc.info["pid"]))
    if not found:
        raise ConfigError(f"resources.processes.{name}: no running process matches '{pattern}'")
    return min(found)[1]


def resource_sources(selection: ResourceSelection, service_pids: Mapping[str, int]) -> list[Any]:
    """Sources for the embedded stack's `service_pids` and the scenario's selection."""
    pids = dict(service_pids)
    for name, spec in selection.processes.items():
        pids[name] = spec if isinstance(spec, int) else find_process(spec, name)
    sources: list[Any] = []
    if pids:
        sources.append(ProcessSource(pids))
    if selection.any_docker:
        client = connect_docker(base_url=selection.docker_host)
        patterns: list[str | None] = list(selection.containers) or [None]
        for pattern in patterns:
            sources.append(
                DockerSource(
                    pattern=pattern,
                    project=selection.compose_project,
                    client=client,
                    service_names=True,
                )
            )
    if selection.host:
        sources.append(HostSource())
    return sources
