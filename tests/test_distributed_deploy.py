"""The Kubernetes manifests agree with the toolkit: a loadable scenario, matching names and ports.

No cluster runs here, and PyYAML is not a dependency: the checks read the manifests as text
(the scenario is one literal block scalar), which is enough to catch a scenario that would
not load or a worker pointed at the wrong Service or port.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

from conftest import REPO_ROOT, SCENARIOS

from capacity.scenario import load_scenario

K8S = REPO_ROOT / "deploy" / "k8s"


def arg_after(text: str, flag: str) -> str:
    """The value following `flag` in a manifest's args list."""
    match = re.search(rf'- "{re.escape(flag)}"\n\s*- "([^"]+)"', text)
    assert match, f"{flag} not in args"
    return match.group(1)


def configmap_scenario() -> str:
    text = (K8S / "configmap.yaml").read_text()
    _, _, body = text.partition("  k8s.toml: |\n")
    assert body, "configmap.yaml has no k8s.toml block"
    return textwrap.dedent(body)


def test_the_configmap_scenario_loads_next_to_the_shipped_scenario_files(tmp_path: Path) -> None:
    shutil.copytree(SCENARIOS, tmp_path / "scenarios")
    path = tmp_path / "scenarios" / "k8s.toml"  # where the manifests mount it
    path.write_text(configmap_scenario())
    scenario = load_scenario(path)
    assert not scenario.targets.embedded_stack
    assert "127.0.0.1" not in scenario.targets.allowed_hosts


def test_workers_reach_the_master_service_on_its_port_with_the_same_scenario() -> None:
    master = (K8S / "master.yaml").read_text()
    workers = (K8S / "workers.yaml").read_text()
    service = re.search(r"kind: Service\nmetadata:\n  name: (\S+)", master)
    assert service
    assert arg_after(workers, "--master-host") == service.group(1)
    port = arg_after(master, "--master-bind-port")
    assert arg_after(workers, "--master-port") == port
    assert f"port: {port}" in master and f"targetPort: {port}" in master
    assert arg_after(master, "--scenario") == arg_after(workers, "--scenario")
    assert arg_after(master, "-f") == arg_after(workers, "-f")
    assert (REPO_ROOT / arg_after(master, "-f")).is_file()
    replicas = re.search(r"replicas: (\d+)", workers)
    assert replicas and arg_after(master, "--expect-workers") == replicas.group(1)
    arrival = re.search(r'CAPACITY_ARRIVAL_WORKERS.*\n\s*value: "(\d+)"', workers)
    assert arrival and arrival.group(1) == replicas.group(1)
    mount = "mountPath: /app/scenarios/k8s.toml"
    assert mount in master and mount in workers
