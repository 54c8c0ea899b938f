"""Every shipped scenario runs briefly against the real stack; bad GraphQL and secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SCENARIOS, reset_tuning, write_scenario

from capacity import runfolder
from capacity.scenario import load_scenario
from capacity.stack.supervisor import StackState

pytestmark = pytest.mark.stack
SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.toml"))
TARGET_S = 5.0


def capacity(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_runs_briefly(erp_stack: StackState, tmp_path: Path, name: str) -> None:
    total_s = load_scenario(SCENARIOS / name).load.total_duration_s
    scale = min(1.0, TARGET_S / total_s)
    scenario = write_scenario(tmp_path / "s", name, erp_stack)
    try:
        proc = capacity(
            "run",
            str(scenario),
            "--reports",
            str(tmp_path / "r"),
            "--state-dir",
            str(erp_stack.state_dir),
            "--time-scale",
            f"{scale:.6f}",
        )
    finally:
        reset_tuning(erp_stack)
    assert proc.returncode in (0, 1, 3), proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    kinds = {op.split(" ")[0] for op in summary["operations"]}
    expected = {"workflows": "workflow"}
    for kind in load_scenario(SCENARIOS / name).users:
        assert expected.get(kind, kind) in kinds, (name, kinds)
    assert sum(op["failures_all"] for op in summary["operations"].values()) == 0, proc.stderr


def test_unknown_graphql_field_exits_2_naming_document_and_field(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path / "s", "graphql.toml", erp_stack)
    doc = tmp_path / "s" / "graphql" / "customer.graphql"
    doc.write_text(doc.read_text().replace("creditLimit", "creditLimitt"))
    proc = capacity(
        "run",
        str(scenario),
        "--reports",
        str(tmp_path / "r"),
        "--state-dir",
        str(erp_stack.state_dir),
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("capacity: error:")]
    assert len(errors) == 1, proc.stderr
    assert str(doc) in errors[0] and "creditLimitt" in errors[0]
    assert not (tmp_path / "r").exists()


def test_wrong_variable_type_exits_2_naming_document_and_variable(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = write_scenario(
        tmp_path / "s",
        "graphql.toml",
        erp_stack,
        replace={'quantity = "${orders.quantity:int}"': 'quantity = "many"'},
    )
    proc = capacity(
        "run",
        str(scenario),
        "--reports",
        str(tmp_path / "r"),
        "--state-dir",
        str(erp_stack.state_dir),
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("capacity: error:")]
    assert len(errors) == 1, proc.stderr
    assert "create-invoice.graphql" in errors[0] and "$quantity" in errors[0]


def test_auth_secret_is_sent_but_never_written(erp_stack: StackState, tmp_path: Path) -> None:
    secret = "Bearer s3cr3t-token-do-not-leak"
    scenario = write_scenario(
        tmp_path / "s",
        "graphql.toml",
        erp_stack,
        replace={"embedded_stack = true": 'embedded_stack = true\nauth_env = "VEXTRUS_TEST_TOKEN"'},
    )
    missing = capacity(
        "run",
        str(scenario),
        "--reports",
        str(tmp_path / "r0"),
        "--state-dir",
        str(erp_stack.state_dir),
        "--time-scale",
        "0.2",
    )
    assert missing.returncode == 2
    assert "VEXTRUS_TEST_TOKEN is not set" in missing.stderr
    proc = capacity(
        "run",
        str(scenario),
        "--reports",
        str(tmp_path / "r"),
        "--state-dir",
        str(erp_stack.state_dir),
        "--time-scale",
        "0.2",
        env={"VEXTRUS_TEST_TOKEN": secret},
    )
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    assert "s3cr3t" not in proc.stdout + proc.stderr
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert b"s3cr3t" not in path.read_bytes(), path
    logs = Path(erp_stack.state_dir, "logs")
    assert all(b"s3cr3t" not in p.read_bytes() for p in logs.glob("*.log"))
    (run_dir,) = (tmp_path / "r").iterdir()
    assert any(r["ops"] for r in runfolder.iter_slices(run_dir))
