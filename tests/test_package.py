"""The built wheel works outside its checkout: installed into a fresh venv and run from an
empty folder, with the shipped scenarios and locustfiles as package data (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT, retarget

from capacity.stack.supervisor import pick_free_ports

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The wheel built from this checkout, installed in a new venv whose dependencies come
    from the project's venv (no network); the checkout itself is not importable there."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "dist"), str(REPO_ROOT)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("vextrus_capacity-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", where], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{sysconfig.get_path('scripts')}{os.pathsep}"
        + os.environ.get("PATH", ""),
        "PYTHONPATH": "",
    }
    return SimpleNamespace(venv=venv, env=env)


def capacity(installed: SimpleNamespace, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed.venv / "bin" / "capacity"), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=installed.env,
    )  # fmt: skip


def locust_total(out: str) -> int:
    """Requests in Locust's own summary table (`Aggregated` row, `# reqs` column)."""
    rows = [ln for ln in out.splitlines() if ln.strip().startswith("Aggregated")]
    return int(rows[0].split()[1])


def test_the_wheel_carries_its_scenarios_and_locustfiles(
    installed: SimpleNamespace, tmp_path: Path
) -> None:
    found = capacity(installed, tmp_path, "locustfile", "rules")
    assert found.returncode == 0, found.stderr
    path = Path(found.stdout.strip())
    assert path.is_file() and str(installed.venv) in str(path), path
    done = capacity(installed, tmp_path, "init", "my")
    assert done.returncode == 0, done.stderr
    shipped = (
        "smoke.toml",
        "rules.toml",
        "rules/vat-cases.json",
        "data/customers.csv",
        "graphql/customer.graphql",
        "examples/apollo-federation/apollo-federation.toml",
    )
    for name in shipped:
        assert (tmp_path / "my" / name).is_file(), name
    again = capacity(installed, tmp_path, "init", "my")
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_capacity_run_from_an_empty_folder(
    installed: SimpleNamespace, tmp_path: Path, workers: int
) -> None:
    assert capacity(installed, tmp_path, "init", "my").returncode == 0
    scenario = tmp_path / "my" / "rules.toml"
    text = retarget(scenario.read_text(), SimpleNamespace(ports=pick_free_ports()))  # type: ignore[arg-type]
    scenario.write_text(text.replace("wait_s = [0.3, 0.9]", "wait_s = [0.05, 0.1]"))
    args = ["run", "my/rules.toml", "--time-scale", "0.4", "--state-dir", "stack"]
    proc = capacity(installed, tmp_path, *args, "--workers", str(workers))
    (run_dir,) = (tmp_path / "reports").iterdir()  # under the working folder
    assert proc.stdout.strip() == str(run_dir / "report.html"), proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "pass" and proc.returncode == 0, (summary["reasons"], proc.stderr)
    recorded = sum(op["count_all"] for op in summary["operations"].values())
    out = (run_dir / ("locust.out")).read_text()
    assert recorded == locust_total(out) > 0
    assert not list(REPO_ROOT.glob(f"reports/{run_dir.name}"))  # nothing in the checkout
    if workers:
        assert len(summary["workers"]) == workers
