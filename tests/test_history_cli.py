"""`capacity history import|show`, `capacity check --history`, and `capacity run` recording
into the store (a failure to record is one warning, never a different verdict)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, write_scenario

from capacity.history.store import open_store
from capacity.stack.supervisor import StackState

SCENARIO_TOML = """\
[scenario]
name = "hist"
[load]
users = 2
duration_s = 20
[users.rules]
[[users.rules.rule_sets]]
file = "vat.json"
[slos.operations."rules *"]
p95_ms = 100
error_rate = 0.01
"""
SLOS = {
    "operations": [{"pattern": "rules *", "p95_ms": 100.0, "p99_ms": None, "error_rate": 0.01}],
    "services": [],
}


def capacity(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
    )


def scenario_file(tmp: Path) -> Path:
    (tmp / "vat.json").write_text('{"ruleSet": "vat", "cases": [{"facts": {}}]}')
    path = tmp / "hist.toml"
    path.write_text(SCENARIO_TOML)
    return path


def run_folder(
    root: Path, scenario: Path, n: int, p95_ms: float, *, duration_s: float = 20.0
) -> Path:
    run_id = f"20261201-{n:06d}-hist"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    meta = {
        "schema": 1,
        "run_id": run_id,
        "scenario": "hist",
        "scenario_path": str(scenario),
        "started_at": f"2026-12-01T00:{n // 60:02d}:{n % 60:02d}Z",
        "status": "complete",
        "load": {"users": 2, "duration_s": duration_s, "stages": 0},
        "services": {"rules-engine": 1234},
        "slos": SLOS,
    }
    summary: dict[str, Any] = {
        "schema": 1,
        "run_id": run_id,
        "scenario": "hist",
        "started_at": meta["started_at"],
        "status": "complete",
        "verdict": "pass",
        "reasons": [],
        "operations": {
            "rules vat": {"count": 2000, "failures": 0, "error_rate": 0.0, "p95_ms": p95_ms}
        },
        "resources": {
            "rules-engine": {"source": "process", "cpu_cores_mean": 0.2, "mem_mb_mean": 60.0}
        },
        "slos": [
            {
                "kind": "operation",
                "target": "rules vat",
                "metric": "p95_ms",
                "limit": 100.0,
                "value": p95_ms,
                "passed": p95_ms <= 100,
            }
        ],
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


REFERENCE_P95 = [20.1, 19.7, 20.4, 20.0, 19.8, 20.3]


@pytest.fixture
def store_with_reference(tmp_path: Path) -> tuple[Path, Path, Path]:
    scenario = scenario_file(tmp_path)
    folders = [
        run_folder(tmp_path / "reports", scenario, n, v) for n, v in enumerate(REFERENCE_P95)
    ]
    (tmp_path / "reports" / "not-a-run").mkdir()
    db = tmp_path / "h.sqlite"
    proc = capacity(
        "history",
        "import",
        *map(str, folders),
        str(tmp_path / "reports" / "not-a-run"),
        "--history",
        str(db),
        "--this-machine",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"6 run(s) imported into {db}, 1 skipped"
    assert "skipped" in proc.stderr and "not-a-run: not a run folder" in proc.stderr
    return tmp_path, scenario, db


def test_import_then_show_writes_tables_and_charts(store_with_reference) -> None:
    tmp, scenario, db = store_with_reference
    extra = [run_folder(tmp / "more", scenario, 10 + n, 30.0 + 0.3 * n) for n in range(6)]
    assert capacity("history", "import", *map(str, extra), "--history", str(db),
                    "--this-machine").returncode == 0  # fmt: skip
    proc = capacity("history", "--history", str(db), "--out", str(tmp / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "## hist" in proc.stdout and "12 run(s)" in proc.stdout
    row = next(ln for ln in proc.stdout.splitlines() if "| rules vat | p95_ms |" in ln)
    assert "from 20261201-000010-hist: 20.05 ms -> 30.75 ms (+53.4%, p=" in row
    html = (tmp / "out" / "history.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    data = json.loads((tmp / "out" / "history.json").read_text())
    (series,) = [
        s for s in data["scenarios"][0]["series"] if s["target"] == "rules vat" and
        s["metric"] == "p95_ms"
    ]  # fmt: skip
    assert [c["index"] for c in series["change_points"]] == [6]


def test_check_with_history_catches_a_regression(store_with_reference) -> None:
    tmp, scenario, db = store_with_reference
    slow = [run_folder(tmp / "now", scenario, 20 + n, v) for n, v in enumerate([27.0, 26.5, 27.4])]
    proc = capacity("check", *map(str, slow), "--history", str(db), "--last", "6",
                    "--json", str(tmp / "gate.json"))  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    gate = json.loads((tmp / "gate.json").read_text())
    assert gate["verdict"] == "regression"
    assert gate["reference_run_ids"] == [f"20261201-{n:06d}-hist" for n in range(6)]
    relative = {c["name"]: c for c in gate["checks"] if c["check"] == "relative"}
    assert set(relative) == {
        "rules vat p95_ms",
        "rules-engine cpu_cores_mean",
        "rules-engine mem_mb_mean",
    }
    check = relative["rules vat p95_ms"]
    assert check["verdict"] == "regression"
    assert check["baseline_values"] == REFERENCE_P95
    slo = [(c["name"], c["verdict"]) for c in gate["checks"] if c["check"] == "slo"]
    assert slo == [("rules vat p95_ms <= 100 ms", "pass"), ("rules vat error_rate <= 1%", "pass")]
    assert gate["notes"][0].startswith("reference: the 6 most recent trusted run(s) of 'hist'")


def test_check_with_history_passes_the_same_performance(store_with_reference) -> None:
    tmp, scenario, db = store_with_reference
    same = [run_folder(tmp / "now", scenario, 30 + n, v) for n, v in enumerate([20.2, 19.9, 20.0])]
    proc = capacity("check", *map(str, same), "--history", str(db), "--last", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_refuses_a_reference_from_another_environment(store_with_reference) -> None:
    tmp, scenario, db = store_with_reference
    other = [run_folder(tmp / "now", scenario, 40, 20.0, duration_s=2.0)]
    proc = capacity("check", *map(str, other), "--history", str(db))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"capacity: error: history store {db}: no trusted reference run of scenario 'hist' "
        "with this environment; 6 run(s) differ, the latest (20261201-000005-hist) in "
        "load.duration_s: 20 -> 2"
    )


def test_check_needs_a_baseline_or_history(tmp_path: Path) -> None:
    proc = capacity("check", str(tmp_path))
    assert proc.returncode == 2
    assert "give --baseline FILE or --history [DB]" in proc.stderr


@pytest.mark.stack
@pytest.mark.slow
def test_run_records_into_the_store_and_a_broken_store_only_warns(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = write_scenario(
        tmp_path / "s", "rules.toml", erp_stack,
        replace={"duration_s = 30": "duration_s = 6", "warmup_s = 3": "warmup_s = 1"},
    )  # fmt: skip
    common = ["run", str(scenario), "--state-dir", str(erp_stack.state_dir)]
    db = tmp_path / "h.sqlite"
    good = capacity(*common, "--reports", str(tmp_path / "a"), "--history", str(db),
                    "--sut-revision", "abc123", timeout_s=180)  # fmt: skip
    assert "warning: run not recorded" not in good.stderr
    (run_dir,) = (tmp_path / "a").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert good.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[summary["verdict"]]
    with open_store(db) as store:
        (run,) = store.runs()
    assert run.run_id == run_dir.name and run.verdict == summary["verdict"]
    fp = run.fingerprint
    assert fp["sut_revision"] == "abc123" and fp["temporal_server_version"]
    assert fp["service_limits"]["rules-engine"] == {"cpu_cores": 1.0, "mem_mb": None}
    assert fp["scenario_sha256"] and fp["host_cores"] and fp["load_generator_processes"] == 1
    assert run.operations["rules vat"]["p95_ms"] == summary["operations"]["rules vat"]["p95_ms"]
    not_a_db = tmp_path / "broken.sqlite"
    not_a_db.write_text("this is not SQLite " * 200)
    bad = capacity(*common, "--reports", str(tmp_path / "b"), "--history", str(not_a_db),
                   timeout_s=180)  # fmt: skip
    (bad_dir,) = (tmp_path / "b").iterdir()
    verdict = json.loads((bad_dir / "summary.json").read_text())["verdict"]
    assert bad.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[verdict]
    warnings = [ln for ln in bad.stderr.splitlines() if "not recorded" in ln]
    assert warnings == [
        f"warning: run not recorded in {not_a_db}: history store {not_a_db}: not a usable "
        "SQLite database (file is not a database)"
    ]
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(not_a_db).execute("SELECT 1 FROM runs").fetchall()
