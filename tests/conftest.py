"""Shared fixtures: one embedded stack on free ports for the tests that need real servers."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from capacity.stack import supervisor
from capacity.stack.supervisor import StackConfig, StackState

# The real Apollo federation (apollo_dev, apollo_prod...): it starts only for tests that use it.
pytest_plugins = ["apollo_fixtures"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = REPO_ROOT / "scenarios"


@pytest.fixture(scope="session", autouse=True)
def private_history_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runs made by tests record into a throwaway results store, never the checkout's."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite"
    old = os.environ.get("CAPACITY_HISTORY")
    os.environ["CAPACITY_HISTORY"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("CAPACITY_HISTORY", None)
        else:
            os.environ["CAPACITY_HISTORY"] = old


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def stack_config(state_dir: Path) -> StackConfig:
    """A stack on free ports whose services send spans to a free port (a run's receiver)."""
    ports = supervisor.pick_free_ports()
    (otlp,) = [p for p in free_ports(8) if p not in ports.values()][:1]
    endpoint = f"http://127.0.0.1:{otlp}/v1/traces"
    return StackConfig(ports=ports, state_dir=state_dir, otlp_endpoint=endpoint)


def otlp_port(state: StackState) -> int | None:
    """The port the stack's services send spans to (where a run's receiver must listen)."""
    endpoint = getattr(state, "otlp_endpoint", None)
    return urlsplit(endpoint).port if endpoint else None


@pytest.fixture(scope="session")
def erp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """The whole embedded stack (Temporal, PostgreSQL included) on free ports, for the session."""
    config = stack_config(tmp_path_factory.mktemp("erp-stack"))
    state = supervisor.up(config, timeout_s=90)
    try:
        yield state
    finally:
        supervisor.down(config.state_dir)


def retarget(text: str, state: StackState) -> str:
    """Point a scenario's [targets] at a running stack's ports (only inside [targets]: a
    chain step's `workflow = "Type"` is not the workflow service's URL)."""
    head, sep, rest = text.partition("[targets]")
    if not sep:
        return text
    parts = re.split(r"(?m)^(?=\[)", rest, maxsplit=1)
    body = parts[0]
    tail = parts[1] if len(parts) > 1 else ""
    p = state.ports
    body = re.sub(
        r'gateway = "[^"]*"', f'gateway = "http://127.0.0.1:{p["gateway"]}/graphql"', body
    )
    body = re.sub(
        r'master_data = "[^"]*"', f'master_data = "http://127.0.0.1:{p["master-data"]}"', body
    )
    body = re.sub(r'workflow = "[^"]*"', f'workflow = "http://127.0.0.1:{p["workflow"]}"', body)
    body = re.sub(
        r'rules_engine = "[^"]*"', f'rules_engine = "http://127.0.0.1:{p["rules-engine"]}"', body
    )
    body = re.sub(r'temporal = "[^"]*"', f'temporal = "127.0.0.1:{p["temporal"]}"', body)
    text = head + sep + body + tail
    # [traces] port: where this stack's services send their spans (else any free port, never
    # the default one another run may hold)
    port = otlp_port(state) or free_ports(1)[0]
    text = re.sub(r"(?m)^port = \d+", f"port = {port}", text)
    return text


def write_scenario(
    dest_dir: Path, source: str, state: StackState | None, *, replace: dict[str, str] | None = None
) -> Path:
    """Copy the scenarios folder into `dest_dir` and write `source` there with new targets."""
    shutil.copytree(SCENARIOS, dest_dir, dirs_exist_ok=True)
    text = (SCENARIOS / source).read_text(encoding="utf-8")
    if state is not None:
        text = retarget(text, state)
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} not in {source}"
        text = text.replace(old, new)
    path = dest_dir / source
    path.write_text(text, encoding="utf-8")
    return path


def reset_tuning(state: StackState) -> None:
    """Put every stand-in's knobs back to the stack's defaults (tests share one stack)."""
    import json
    import urllib.request

    from capacity.stack.tuning import DEFAULT_TUNING

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for service, tuning in DEFAULT_TUNING.items():
        req = urllib.request.Request(
            f"{state.services[service].url}/admin/tuning",
            data=json.dumps(tuning.as_dict(service)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with opener.open(req, timeout=10):
            pass


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the session's embedded stack or a real Apollo federation is marked
    `stack` / `apollo` by its fixtures, so `make unit` can leave it out without a marker on
    every test."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & {"erp_stack", "stack"}:  # tests/test_stack.py starts its own as `stack`
            item.add_marker(pytest.mark.stack)
        if fixtures & {"apollo_subgraphs", "apollo_dev", "apollo_prod"}:
            item.add_marker(pytest.mark.apollo)
