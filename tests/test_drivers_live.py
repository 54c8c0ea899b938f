"""Each locustfile against the real embedded stack: traffic flows, stats are named by
operation, and every failure the stack injects is counted exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, write_scenario

from capacity import runfolder
from capacity.stack.supervisor import StackState

pytestmark = pytest.mark.stack
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def admin(state: StackState, service: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{state.services[service].url}/admin/{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"},
    )
    with DIRECT.open(req, timeout=10) as resp:
        return json.loads(resp.read())


def run_locust(
    locustfile: str, scenario: Path, run_dir: Path, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO_ROOT / "locustfiles" / locustfile),
        "--headless",
        "--only-summary",
        "--scenario",
        str(scenario),
        "--run-dir",
        str(run_dir),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT)


def verdict_exit(run_dir: Path) -> tuple[str, int]:
    """The verdict a plain `locust -f` run wrote, and the exit code it must have given."""
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["verdict"], {"pass": 0, "fail": 1, "inconclusive": 3}[summary["verdict"]]


def op_totals(run_dir: Path) -> dict[str, Counter[str]]:
    totals: dict[str, Counter[str]] = {}
    for record in runfolder.iter_slices(run_dir):
        for name, op in record["ops"].items():
            c = totals.setdefault(name, Counter())
            c["count"] += op["count"]
            c["failures"] += op["failures"]
            c["partial"] += op["partial"]
            for msg, n in op["errors"].items():
                c[f"error:{msg}"] += n
    return totals


def test_erp_locustfile_mixed_traffic_without_failures(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path / "s", "smoke.toml", erp_stack)
    proc = run_locust("erp.py", scenario, tmp_path / "run", "-u", "10", "-r", "10", "-t", "8s")
    verdict, code = verdict_exit(tmp_path / "run")
    assert proc.returncode == code and verdict != "fail", proc.stdout[-3000:] + proc.stderr[-3000:]
    totals = op_totals(tmp_path / "run")
    kinds = {name.split(" ")[0] for name in totals}
    assert {"graphql", "rules", "workflow", "health"} <= kinds, totals
    for name in ("workflow start", "workflow complete"):
        assert any(n.startswith(name) for n in totals), totals
    assert all(c["count"] > 0 for c in totals.values())
    assert sum(c["failures"] for c in totals.values()) == 0, totals
    # Every started workflow's completion was recorded before the run folder closed.
    for wf in ("PurchaseOrderApproval", "InvoicePosting"):
        assert totals[f"workflow start {wf}"]["count"] == totals[f"workflow complete {wf}"]["count"]
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["status"] == "complete"


@pytest.mark.parametrize(
    ("locustfile", "scenario_name", "prefix"),
    [
        ("graphql_ops.py", "graphql.toml", "graphql "),
        ("rules.py", "rules.toml", "rules "),
        ("workflows.py", "workflows.toml", "workflow "),
    ],
)
def test_each_driver_locustfile(
    erp_stack: StackState, tmp_path: Path, locustfile: str, scenario_name: str, prefix: str
) -> None:
    scenario = write_scenario(tmp_path / "s", scenario_name, erp_stack)
    proc = run_locust(locustfile, scenario, tmp_path / "run", "-u", "5", "-r", "5", "-t", "5s")
    verdict, code = verdict_exit(tmp_path / "run")
    assert proc.returncode == code and verdict != "fail", proc.stdout[-3000:] + proc.stderr[-3000:]
    totals = op_totals(tmp_path / "run")
    assert totals and all(name.startswith(prefix) for name in totals), totals
    assert sum(c["count"] for c in totals.values()) >= 5


def injected(state: StackState, service: str) -> Counter[str]:
    return Counter(admin(state, service, "stats")["injected"])


@pytest.fixture
def reset_tuning(erp_stack: StackState):
    yield
    defaults = {"error_rate": 0.0}
    admin(erp_stack, "gateway", "tuning", {**defaults, "graphql_error_rate": 0.0})
    admin(erp_stack, "rules-engine", "tuning", {**defaults, "wrong_outcome_rate": 0.0})
    admin(erp_stack, "workflow", "tuning", {"workflow_failure_rate": 0.0})


def test_graphql_faults_are_counted_exactly(
    erp_stack: StackState, tmp_path: Path, reset_tuning: None
) -> None:
    scenario = write_scenario(tmp_path / "s", "graphql.toml", erp_stack)
    before = injected(erp_stack, "gateway")
    admin(erp_stack, "gateway", "tuning", {"error_rate": 0.1, "graphql_error_rate": 0.2})
    # --no-preflight: the injected 500s would also hit the schema introspection before load.
    proc = run_locust(
        "graphql_ops.py",
        scenario,
        tmp_path / "run",
        "-u",
        "8",
        "-r",
        "8",
        "-t",
        "6s",
        "--no-preflight",
    )
    admin(erp_stack, "gateway", "tuning", {"error_rate": 0.0, "graphql_error_rate": 0.0})
    after = injected(erp_stack, "gateway")
    # The plain Locust path judges the scenario's SLOs and exits with the verdict's code.
    assert proc.returncode == verdict_exit(tmp_path / "run")[1] in (1, 3), proc.stderr[-2000:]
    totals = op_totals(tmp_path / "run")
    http_500 = after["http_500"] - before["http_500"]
    gql_errors = after["graphql_error"] - before["graphql_error"]
    assert http_500 > 0 and gql_errors > 0
    failures = sum(c["failures"] for c in totals.values())
    assert failures == http_500 + gql_errors
    errors: Counter[str] = Counter()
    for c in totals.values():
        errors.update({k: v for k, v in c.items() if k.startswith("error:")})
    assert sum(v for k, v in errors.items() if "INJECTED" in k) == gql_errors
    # A GraphQL error on a nullable root field leaves `data` (partial); on a non-null root
    # field the null propagates to `data: null` (not partial).
    for name, c in totals.items():
        injected_here = sum(v for k, v in c.items() if k.startswith("error:") and "INJECTED" in k)
        nullable_root = name in ("graphql GetCustomer", "graphql GetInvoice")
        assert c["partial"] == (injected_here if nullable_root else 0), name
    assert sum(c["partial"] for c in totals.values()) > 0


def test_wrong_rule_outcomes_and_500s_are_counted_exactly(
    erp_stack: StackState, tmp_path: Path, reset_tuning: None
) -> None:
    scenario = write_scenario(tmp_path / "s", "rules.toml", erp_stack)
    before = injected(erp_stack, "rules-engine")
    admin(erp_stack, "rules-engine", "tuning", {"error_rate": 0.05, "wrong_outcome_rate": 0.2})
    proc = run_locust("rules.py", scenario, tmp_path / "run", "-u", "8", "-r", "8", "-t", "6s")
    admin(erp_stack, "rules-engine", "tuning", {"error_rate": 0.0, "wrong_outcome_rate": 0.0})
    after = injected(erp_stack, "rules-engine")
    assert proc.returncode == verdict_exit(tmp_path / "run")[1] in (1, 3), proc.stderr[-2000:]
    totals = op_totals(tmp_path / "run")
    wrong = after["wrong_outcome"] - before["wrong_outcome"]
    http_500 = after["http_500"] - before["http_500"]
    assert wrong > 0 and http_500 > 0
    assert sum(c["failures"] for c in totals.values()) == wrong + http_500
    wrong_seen = sum(v for c in totals.values() for k, v in c.items() if "wrong outcome" in k)
    assert wrong_seen == wrong


def test_failing_workflows_are_counted_exactly(
    erp_stack: StackState, tmp_path: Path, reset_tuning: None
) -> None:
    scenario = write_scenario(tmp_path / "s", "workflows.toml", erp_stack)
    before = injected(erp_stack, "workflow")
    admin(erp_stack, "workflow", "tuning", {"workflow_failure_rate": 0.25})
    proc = run_locust("workflows.py", scenario, tmp_path / "run", "-u", "6", "-r", "6", "-t", "6s")
    admin(erp_stack, "workflow", "tuning", {"workflow_failure_rate": 0.0})
    after = injected(erp_stack, "workflow")
    assert proc.returncode == verdict_exit(tmp_path / "run")[1] in (1, 3), proc.stderr[-2000:]
    totals = op_totals(tmp_path / "run")
    failed = after["workflow_failure"] - before["workflow_failure"]
    assert failed > 0
    complete_failures = sum(
        c["failures"] for n, c in totals.items() if n.startswith("workflow complete")
    )
    start_failures = sum(c["failures"] for n, c in totals.items() if n.startswith("workflow start"))
    assert start_failures == 0
    assert complete_failures == failed


def test_unserved_workflow_type_is_reported_not_hung(erp_stack: StackState, tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "s",
        "workflows.toml",
        erp_stack,
        # Weight 50 to 1: with 1 to 1, a 3 s run of two users started five workflows, all of
        # the served type, in one CI run (1 in 32), and there was nothing to report.
        replace={'type = "InvoicePosting"\nweight = 1': 'type = "NoSuchWorkflow"\nweight = 50'},
    )
    proc = run_locust("workflows.py", scenario, tmp_path / "run", "-u", "2", "-r", "2", "-t", "3s")
    totals = op_totals(tmp_path / "run")
    unserved = totals["workflow complete NoSuchWorkflow"]
    assert unserved["count"] > 0 and unserved["failures"] == unserved["count"]
    messages = [k for k in unserved if k.startswith("error:")]
    assert any("not served on task queue" in m for m in messages), messages
    assert proc.returncode == verdict_exit(tmp_path / "run")[1] in (1, 3)


def test_task_queue_without_workers_is_reported(erp_stack: StackState, tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "s",
        "workflows.toml",
        erp_stack,
        replace={'task_queue = "vextrus-erp"': 'task_queue = "nobody-polls-this"'},
    )
    proc = run_locust("workflows.py", scenario, tmp_path / "run", "-u", "2", "-r", "2", "-t", "2s")
    totals = op_totals(tmp_path / "run")
    completes = [c for n, c in totals.items() if n.startswith("workflow complete")]
    assert completes and all(c["failures"] == c["count"] > 0 for c in completes), totals
    messages = [k for c in completes for k in c if k.startswith("error:")]
    assert all("no worker polls task queue nobody-polls-this" in m for m in messages), messages
    assert proc.returncode == verdict_exit(tmp_path / "run")[1] in (1, 3)


def test_down_target_stops_locust_with_one_line(tmp_path: Path) -> None:
    from capacity.stack.supervisor import pick_free_ports

    ports = pick_free_ports()  # free: nothing listens there
    fake = type("S", (), {"ports": ports})()
    scenario = write_scenario(tmp_path / "s", "smoke.toml", fake)
    proc = run_locust(
        "erp.py", scenario, tmp_path / "run", "-u", "5", "-r", "5", "-t", "5s", timeout_s=60
    )
    assert proc.returncode == 2
    # Locust's own "Starting Locust" log line may precede ours; nothing else may follow.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Starting Locust" not in ln]
    assert len(lines) == 1, proc.stderr
    assert "capacity: error: target gateway at http://127.0.0.1:" in lines[0]
    assert "unreachable" in lines[0]
    assert not (tmp_path / "run").exists()  # no run folder: no load was sent
