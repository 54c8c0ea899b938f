"""Truth checks of the server-side figures on the real embedded stack.

Real OpenTelemetry SDK spans from every stand-in, real PostgreSQL (pgserver) behind
master-data, a known database delay injected with the `db_delay_*` knobs:

- the measured database P50/P95 match the injected distribution (uniform 0-60 ms: 30 / 57 ms,
  plus the query and the service's own loop lag, a bounded shift);
- every sampled request's client latency is at least the gateway's server span, and each
  operation's breakdown sums to the gateway's server time within 5%;
- a slowed database (120 ms per statement) turns the DB SLO red while the API P95 stays green;
- a run whose spans go nowhere completes and says "no traces received" (inconclusive, not fail).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, free_ports, reset_tuning, retarget, write_scenario

from capacity.stack.supervisor import StackState

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SCENARIO = """
[scenario]
name = "traces-truth"

[targets]
gateway = "http://127.0.0.1:4000/graphql"
master_data = "http://127.0.0.1:3010"
workflow = "http://127.0.0.1:3011"
rules_engine = "http://127.0.0.1:3012"
temporal = "127.0.0.1:7233"

[load]
users = 8
spawn_rate = 8
duration_s = {duration_s}
warmup_s = 2

[data.customers]
csv = "data/customers.csv"

[users.graphql]
wait_s = [0.05, 0.15]
trace_sample_rate = 1.0

[[users.graphql.operations]]
document = "graphql/customer.graphql"
variables = {{ id = "${{customers.id}}" }}

[[users.graphql.operations]]
document = "graphql/customers.graphql"
variables = {{ country = "${{customers.country}}", offset = 0, limit = 10 }}

[slos.operations."graphql *"]
p95_ms = 500

[slos.spans."db *"]
p95_ms = 100

[stack.tuning.master-data]
{tuning}

[traces]
port = 14318
"""


def run(stack: StackState, tmp: Path, tuning: str, duration_s: float = 12, **replace: str) -> tuple[
    subprocess.CompletedProcess[str], dict[str, Any]
]:  # fmt: skip
    folder = tmp / "s"
    write_scenario(folder, "graphql.toml", None)  # documents and data pools beside it
    text = retarget(SCENARIO.format(duration_s=duration_s, tuning=tuning), stack)
    for old, new in replace.items():
        text = text.replace(old, new)
    scenario = folder / "traces-truth.toml"
    scenario.write_text(text, encoding="utf-8")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "capacity", "run", str(scenario), "--reports",
             str(tmp / "r"), "--state-dir", str(stack.state_dir)],
            capture_output=True, text=True, timeout=240, cwd=REPO_ROOT,
        )  # fmt: skip
    finally:
        reset_tuning(stack)
    (run_dir,) = (tmp / "r").iterdir()
    return proc, json.loads((run_dir / "summary.json").read_text())


def slo(summary: dict[str, Any], target: str) -> dict[str, Any]:
    (row,) = [s for s in summary["slos"] if s["target"] == target and s["metric"] == "p95_ms"]
    return row


def test_measured_db_time_matches_the_injected_delay(erp_stack: StackState, tmp_path: Path) -> None:
    proc, summary = run(erp_stack, tmp_path, 'db_delay_dist = "uniform"\ndb_delay_ms = 30')
    assert proc.returncode == 0, proc.stderr[-2000:]
    traces = summary["traces"]
    db = traces["targets"]["db postgresql"]
    assert db["traces"] >= 200 and db["count"] >= 300
    # uniform(0, 60 ms) per statement: P50 30 ms, P95 57 ms. A span also holds the query and
    # the service's event-loop lag: a shift of ~1 ms on a quiet machine, 6 ms measured at a
    # load average of 7.5 on 2 cores. So: never below the injected quantiles, the spread
    # between them kept (the distribution's shape), and a bounded shift.
    assert db["p50_ms"] >= 29.9 and db["p95_ms"] >= 56.9, db
    assert db["p95_ms"] - db["p50_ms"] == pytest.approx(27.0, abs=3.0), db
    assert db["p50_ms"] - 30.0 <= 10.0 and db["p95_ms"] - 57.0 <= 10.0, db
    assert slo(summary, "db postgresql") == {"kind": "span", "target": "db postgresql",
        "metric": "p95_ms", "limit": 100.0, "value": db["p95_ms"], "passed": True,
        "pattern": "db *", "samples": db["traces"]}  # fmt: skip
    # every sampled request joins its trace; the few in flight when the load stopped (at most
    # one per user) reached the stack but were never answered to a recorder
    assert traces["traces"] - 8 <= traces["client_checked"] <= traces["traces"]
    assert traces["client_below_server"] == 0
    for name, op in traces["operations"].items():
        assert op["traces"] >= 40, name
        assert {"gateway", "master-data", "postgresql"} <= set(op["breakdown_ms"]), name
        assert op["breakdown_sum_ms"] == pytest.approx(op["server_mean_ms"], rel=0.05), name
        assert op["breakdown_ms"]["postgresql"] > 0.5 * op["server_mean_ms"], name
        assert op["outside_mean_ms"] >= 0, name
    report = (Path(proc.stdout.strip()).parent / "report.md").read_text()
    assert "## Where the time goes (server-side traces)" in report
    assert "`SELECT doc FROM customers WHERE id = $1 AND injected_delay($2)`" in report


def test_a_slow_database_fails_the_db_slo_not_the_api(
    erp_stack: StackState, tmp_path: Path
) -> None:
    proc, summary = run(
        erp_stack, tmp_path, 'db_delay_dist = "fixed"\ndb_delay_ms = 120', duration_s=8
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert summary["verdict"] == "fail"
    db = slo(summary, "db postgresql")
    assert db["passed"] is False and 120.0 <= db["value"] < 200.0
    api = [s for s in summary["slos"] if s["kind"] == "operation" and s["metric"] == "p95_ms"]
    assert api and all(s["passed"] is True for s in api), api


def test_no_collector_means_no_traces_received_not_a_failure(
    erp_stack: StackState, tmp_path: Path
) -> None:
    elsewhere = free_ports(1)[0]  # the stack keeps sending to its own endpoint: nothing arrives
    proc, summary = run(erp_stack, tmp_path, "", duration_s=5, **{
        "[traces]\nport = ": f"[traces]\nflush_wait_s = 1\nport = {elsewhere}  # "})  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "no traces received" in proc.stderr
    assert summary["verdict"] == "inconclusive"
    assert summary["traces"]["note"].startswith("no traces received")
    assert any(r.startswith("no traces received") for r in summary["reasons"])
    assert slo(summary, "db *")["passed"] is None
    report = (Path(proc.stdout.strip()).parent / "report.md").read_text()
    assert "no traces received" in report
