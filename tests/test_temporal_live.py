"""Temporal as real workloads use it, against the embedded stack: signals, queries and
updates counted and their failures named; schedule-to-start grows when the workers are
slowed while start latency does not."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_scenario
from helpers import summarize
from test_drivers_live import admin, op_totals, run_locust, verdict_exit

from capacity import runfolder
from capacity.stack.supervisor import StackState, temporal_binary

pytestmark = pytest.mark.stack

CALLS = """
[users.workflows]
wait_s = [0.0, 0.1]
timeout_s = 10

[[users.workflows.workflows]]
type = "InvoiceApproval"
args = ["INV-000002", "${customers.tier}"]
calls = [
  { query = "status", assert = [{ pointer = "/decision", equals = "pending" }] },
  { update = "set_priority", args = [4], assert = [{ pointer = "/priority", equals = 4 }] },
  { signal = "decide", args = ["approved"] },
]

[[users.workflows.workflows]]
type = "InvoiceApproval"
args = ["INV-000003", "clerk"]
wait_result = false
calls = [{ update = "set_priority", args = [7] }]

[[users.workflows.workflows]]
type = "PurchaseOrderApproval"
args = { vendorId = "V-001", amount = 1000.0, requestedBy = "test" }
calls = [{ signal = "decide", args = ["late"], pause_s = 1.5 }]
"""

LOAD = """
[users.workflows]
wait_s = [0.1, 0.2]
timeout_s = 15

[[users.workflows.workflows]]
type = "PurchaseOrderApproval"
args = { vendorId = "${orders.vendor_id}", amount = "${orders.amount:float}", requestedBy = "t" }
wait_result = false
schedule_to_start_per_s = 20
"""


def scenario(tmp_path: Path, state: StackState, users: str, name: str) -> Path:
    base = write_scenario(tmp_path / name, "services.toml", state)
    head = base.read_text(encoding="utf-8").split("[users.http]")[0]
    path = base.with_name(f"{name}.toml")
    path.write_text(head + users, encoding="utf-8")
    return path


def errors(totals: dict[str, Any], op: str) -> dict[str, int]:
    return {k[6:]: v for k, v in totals[op].items() if k.startswith("error:")}


def test_signals_queries_and_updates_are_counted_and_their_failures_named(
    erp_stack: StackState, tmp_path: Path
) -> None:
    path = scenario(tmp_path, erp_stack, CALLS, "calls")
    proc = run_locust(
        "erp.py", path, tmp_path / "run", "-u", "6", "-r", "6", "-t", "5s", "--stop-timeout", "20"
    )
    assert proc.returncode == verdict_exit(tmp_path / "run")[1], proc.stderr[-3000:]
    totals = op_totals(tmp_path / "run")
    starts = totals["workflow start InvoiceApproval"]["count"]
    queries = totals["workflow query InvoiceApproval status"]
    updates = totals["workflow update InvoiceApproval set_priority"]
    signals = totals["workflow signal InvoiceApproval decide"]
    # The first entry's three calls ran once per start of it and all passed their checks.
    assert queries["count"] == signals["count"] > 0 and queries["failures"] == 0
    assert signals["failures"] == 0
    # Every InvoiceApproval start got its update: the valid ones passed, each priority 7 was
    # rejected by the workflow's validator, and the failure says why.
    assert updates["count"] == starts
    assert updates["failures"] == starts - queries["count"] > 0
    assert errors(totals, "workflow update InvoiceApproval set_priority") == {
        "WorkflowUpdateFailedError: ValueError: priority must be 1-5, got 7": updates["failures"]
    }
    # A signal 1.5 s after the start meets a purchase order approval that has completed.
    late = totals["workflow signal PurchaseOrderApproval decide"]
    assert late["count"] == totals["workflow start PurchaseOrderApproval"]["count"] > 0
    assert late["failures"] == late["count"]
    (reason,) = errors(totals, "workflow signal PurchaseOrderApproval decide")
    assert "already completed" in reason, reason
    # The approvals that got their decision completed with it. (An iteration cut short when
    # the run stopped leaves its approval undecided until the execution timeout: a failure.)
    complete = totals["workflow complete InvoiceApproval"]
    assert complete["count"] - complete["failures"] == signals["count"], totals
    assert all("timed out" in k for k in errors(totals, "workflow complete InvoiceApproval"))


def saturation(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the workflow type's saturation row, its task queue row) from the run folder alone."""
    meta = json.loads((run_dir / runfolder.RUN_JSON).read_text())
    summary = summarize(
        list(runfolder.iter_slices(run_dir)),
        None,
        run_meta={**meta, "warmup_s": 0.0},
        operation_slos=(),
        service_slos=(),
    )
    temporal = summary["temporal"]
    return temporal["workflow_types"]["PurchaseOrderApproval"], temporal["task_queues"][
        "vextrus-erp"
    ]


def running_workflows(state: StackState) -> int:
    proc = subprocess.run(
        [str(temporal_binary()), "workflow", "count", "--address", state.temporal_address,
         "--namespace", state.namespace, "--query", 'ExecutionStatus="Running"'],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return int(proc.stdout.split(":")[-1].strip() or 0)


def wait_until_idle(state: StackState, timeout_s: float = 60.0) -> None:
    """Until no workflow runs in the namespace (tests share one stack)."""
    deadline = time.monotonic() + timeout_s
    while running_workflows(state) and time.monotonic() < deadline:
        time.sleep(1.0)


def test_schedule_to_start_grows_when_the_workers_are_slowed_and_starts_do_not(
    erp_stack: StackState, tmp_path: Path
) -> None:
    path = scenario(tmp_path, erp_stack, LOAD, "load")
    wait_until_idle(erp_stack)
    normal = run_locust("erp.py", path, tmp_path / "normal", "-u", "3", "-r", "3", "-t", "5s")
    assert normal.returncode == verdict_exit(tmp_path / "normal")[1], normal.stderr[-3000:]
    wait_until_idle(erp_stack)  # the slowed run starts from an empty task queue too
    admin(erp_stack, "workflow", "tuning", {"worker_task_slots": 2, "worker_task_delay_ms": 200})
    try:
        slowed = run_locust("erp.py", path, tmp_path / "slowed", "-u", "3", "-r", "3", "-t", "5s")
    finally:
        admin(erp_stack, "workflow", "tuning", {"worker_task_slots": 0, "worker_task_delay_ms": 0})
        wait_until_idle(erp_stack)
    assert slowed.returncode == verdict_exit(tmp_path / "slowed")[1], slowed.stderr[-3000:]
    before, queue_before = saturation(tmp_path / "normal")
    after, queue_after = saturation(tmp_path / "slowed")
    figures = {"normal": (before, queue_before), "slowed": (after, queue_after)}
    assert before["schedule_to_start_samples"] >= 20, figures
    assert after["schedule_to_start_samples"] >= 5, figures
    # Tasks wait for the two slow slots: the first task's wait grows many times over ...
    assert after["schedule_to_start_p50_ms"] >= max(
        200.0, 5 * before["schedule_to_start_p50_ms"]
    ), figures
    # ... while the server accepts starts as fast as before.
    assert after["start_p95_ms"] <= 3 * before["start_p95_ms"] + 50.0, figures
    # The server reports the queue's backlog (Temporal Server 1.32), and it grew.
    assert queue_before["reported"] and queue_after["reported"], figures
    assert queue_after["backlog_max"] > queue_before["backlog_max"], figures
