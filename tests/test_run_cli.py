"""`capacity run` end to end on the real stack, and `capacity report` on its run folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, write_scenario

from capacity.stack.supervisor import StackState, pick_free_ports

pytestmark = pytest.mark.stack

SHORT = {"duration_s = 45": "duration_s = 14", "warmup_s = 5": "warmup_s = 3"}
RUN_FILES = (
    "run.json",
    "slices.jsonl",
    "resources.csv",
    "summary.json",
    "report.html",
    "report.md",
)


def capacity(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def smoke_run(erp_stack: StackState, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("run")
    scenario = write_scenario(tmp / "s", "smoke.toml", erp_stack, replace=SHORT)
    proc = capacity(
        "run",
        str(scenario),
        "--reports",
        str(tmp / "reports"),
        "--state-dir",
        str(erp_stack.state_dir),
    )
    run_dirs = sorted((tmp / "reports").iterdir())
    return proc, run_dirs


def test_run_writes_a_complete_run_folder(smoke_run) -> None:
    proc, run_dirs = smoke_run
    assert len(run_dirs) == 1, proc.stderr
    run_dir = run_dirs[0]
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert proc.stdout.strip() == str(run_dir / "report.html")
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = {"pass": 0, "fail": 1, "inconclusive": 3}[summary["verdict"]]
    assert proc.returncode == expected, proc.stderr
    assert "req/s" in proc.stderr  # progress lines while the load ran
    for key in (
        "schema",
        "scenario",
        "started_at",
        "duration_s",
        "verdict",
        "operations",
        "resources",
        "slos",
    ):
        assert key in summary
    assert summary["schema"] == 1 and summary["scenario"] == "smoke"
    ops = summary["operations"]
    for prefix in ("graphql ", "rules ", "workflow start ", "workflow complete "):
        matching = [op for name, op in ops.items() if name.startswith(prefix)]
        assert matching and all(op["count"] > 0 and op["p95_ms"] > 0 for op in matching), prefix
    for op in ops.values():
        assert {"count", "failures", "rps", "p50_ms", "p95_ms", "p99_ms"} <= set(op)
    for service in ("gateway", "master-data", "workflow", "rules-engine", "temporal"):
        res = summary["resources"][service]
        assert res["mem_mb_max"] > 1 and res["cpu_cores_mean"] is not None, service
    slo_targets = {s["target"] for s in summary["slos"]}
    assert {"gateway", "master-data", "workflow", "rules-engine"} <= slo_targets
    assert all({"limit", "value", "passed"} <= set(s) for s in summary["slos"])


def test_resources_are_sampled_at_1_hz(smoke_run) -> None:
    _, run_dirs = smoke_run
    with (run_dirs[0] / "resources.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["target"] == "gateway"]
    times = [float(r["ts_unix_s"]) for r in rows]
    assert len(times) >= 12
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(0.8 <= g <= 1.3 for g in gaps), gaps


def test_report_remakes_the_same_summary(smoke_run) -> None:
    _, run_dirs = smoke_run
    run_dir = run_dirs[0]
    before = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()
    (run_dir / "report.html").unlink()
    proc = capacity("report", str(run_dir))
    after = json.loads((run_dir / "summary.json").read_text())
    assert after == before
    assert proc.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[after["verdict"]]
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # charts embedded: readable offline


def test_unreachable_target_exits_2_before_any_load(tmp_path: Path) -> None:
    fake = type("S", (), {"ports": pick_free_ports()})()
    scenario = write_scenario(
        tmp_path / "s",
        "smoke.toml",
        fake,
        replace={"embedded_stack = true": "embedded_stack = false"},
    )
    proc = capacity("run", str(scenario), "--reports", str(tmp_path / "reports"))
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("capacity: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "target gateway at http://127.0.0.1:" in errors[0]
    assert not (tmp_path / "reports").exists()


def test_report_on_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    proc = capacity("report", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"capacity: error: {tmp_path / 'nope'}: run folder not found"


def test_stack_ports_follow_a_non_default_temporal_port(tmp_path: Path) -> None:
    from capacity.scenario import load_scenario
    from capacity.stack.embedded import stack_ports

    default = stack_ports(load_scenario(REPO_ROOT / "scenarios" / "smoke.toml"))
    assert default["temporal"] == 7233 and "temporal-http" not in default  # stack defaults
    text = (REPO_ROOT / "scenarios" / "smoke.toml").read_text().replace(":7233", ":17233")
    assert ":17233" in text
    moved = tmp_path / "smoke.toml"
    moved.write_text(text)
    for name in ("graphql", "rules", "data"):  # the scenario's relative files
        if (REPO_ROOT / "scenarios" / name).exists():
            (tmp_path / name).symlink_to(REPO_ROOT / "scenarios" / name)
    ports = stack_ports(load_scenario(moved))
    assert ports["temporal"] == 17233
    assert (ports["temporal-http"], ports["temporal-metrics"]) == (17243, 17244)


def test_plain_locust_and_capacity_run_folders_judge_the_same_slos(
    smoke_run, erp_stack: StackState, tmp_path: Path
) -> None:
    """Whoever writes a run folder records the same metadata, so the same scenario gives the
    same SLO rows (limits, targets, metrics) and the same planned load."""
    _proc, run_dirs = smoke_run
    managed = run_dirs[0]
    scenario = json.loads((managed / "run.json").read_text())["scenario_path"]
    plain = tmp_path / "plain"
    proc = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "erp.py"),
            "--scenario", scenario, "--headless", "--run-dir", str(plain), "--only-summary",
            "--state-dir", str(erp_stack.state_dir), "-u", "20", "-r", "10", "-t", "14s",
        ],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads((plain / "summary.json").read_text())
    assert proc.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[summary["verdict"]]

    def rows(folder: Path) -> set[tuple[str, str, str, float]]:
        slos = json.loads((folder / "summary.json").read_text())["slos"]
        return {(s["kind"], s["target"], s["metric"], s["limit"]) for s in slos}

    assert rows(plain) == rows(managed)
    meta = {k: json.loads((f / "run.json").read_text()) for k, f in (("p", plain), ("m", managed))}
    for key in ("slos", "warmup_s", "slice_s", "targets", "scenario_sha256", "host_cores"):
        assert meta["p"][key] == meta["m"][key], key
    assert meta["p"]["load"]["users"] == meta["m"]["load"]["users"] == 20
    assert meta["p"]["load"]["duration_s"] == 14.0
