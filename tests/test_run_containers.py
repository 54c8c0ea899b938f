"""`capacity run` samples a real stack's containers (`[resources]`) and judges service SLOs.

Containers run on the real Docker engine the suite starts (`.ci/docker-setup.sh`), labelled
the way docker compose labels them, so the compose service label becomes the service name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from docker_fixtures import Containers, containers, docker_client, docker_host  # noqa: F401
from servers import running_server

pytestmark = [pytest.mark.docker, pytest.mark.stack]

SCENARIO = """
[scenario]
name = "containers"
[targets]
rules_engine = "{url}"
embedded_stack = false
[load]
users = 4
spawn_rate = 4
duration_s = 6
warmup_s = 1
[resources]
compose_project = "{project}"
docker_host = "{docker_host}"
[users.rules]
wait_s = [0.01, 0.02]
[[users.rules.rule_sets]]
file = "vat.json"
[slos.services."master-data"]
cpu_cores_mean = 0.1
[slos.services."rules-engine"]
cpu_cores_mean = 0.5
mem_mb_max = 64
"""


def run(scenario: Path, reports: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "capacity", "run", str(scenario), "--reports", str(reports)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)


def compose_labels(project: str, service: str) -> dict[str, str]:
    return {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "capacity-test": project,
    }


def test_containers_named_by_compose_service_are_judged(
    docker_client: Any,  # noqa: F811
    containers: Containers,  # noqa: F811
    tmp_path: Path,
) -> None:
    project = containers.prefix.rstrip("-")
    # master-data burns 0.3 cores (over its 0.1 limit); rules-engine idles.
    for service, command, cpus in (
        ("master-data", "while :; do :; done", 0.3),
        ("rules-engine", "sleep 600", 0.5),
    ):
        container = docker_client.containers.run(
            "capacity-busybox:latest",
            ["sh", "-c", command],
            name=f"{project}-{service}-1",
            detach=True,
            labels=compose_labels(project, service),
            nano_cpus=int(cpus * 1e9),
        )
        containers.started.append(container)
    rules = tmp_path / "vat.json"
    rules.write_text(json.dumps({"ruleSet": "vat", "cases": [{"facts": {"amount": 1}}]}))
    with running_server("delay", "--dist", "fixed", "--median-ms", "2") as server:
        scenario = tmp_path / "containers.toml"
        scenario.write_text(
            SCENARIO.format(
                url=server.url,
                project=project,
                docker_host=docker_host(),
            )
        )
        proc = run(scenario, tmp_path / "r")
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"master-data", "rules-engine"} <= set(summary["resources"]), proc.stderr
    assert summary["resources"]["master-data"]["source"] == "container"
    rows = {(s["target"], s["metric"]): s for s in summary["slos"]}
    burner = rows[("master-data", "cpu_cores_mean")]
    assert burner["passed"] is False and 0.2 < burner["value"] < 0.4, burner
    assert rows[("rules-engine", "cpu_cores_mean")]["passed"] is True
    assert rows[("rules-engine", "mem_mb_max")]["passed"] is True
    assert summary["verdict"] == "fail" and proc.returncode == 1, proc.stderr


def test_service_slo_with_no_samples_is_inconclusive(
    docker_client: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    rules = tmp_path / "vat.json"
    rules.write_text(json.dumps({"ruleSet": "vat", "cases": [{"facts": {"amount": 1}}]}))
    with running_server("delay", "--dist", "fixed", "--median-ms", "2") as server:
        scenario = tmp_path / "containers.toml"
        text = SCENARIO.format(url=server.url, project="no-such-project", docker_host="")
        scenario.write_text(text.replace('docker_host = ""\n', ""))
        proc = run(scenario, tmp_path / "r")
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "inconclusive" and proc.returncode == 3, proc.stderr
    assert "no resource samples for service pattern 'master-data'" in summary["reasons"]
