"""Reported latency against packet-capture truth: tcpdump on loopback during real runs.

tcpdump (Debian's package) captures every segment to and from the target port while a short
real run goes; `wire_capture.exchanges` pairs each request with its response per connection
and takes the first request byte to the last response byte as the request's wire latency.
Every operation's reported P50, P95 and P99 (from the run folder, through the analysis, as
`summary.json` has them) must lie within 1% or 0.25 ms of the exact (nearest-rank)
percentiles of those wire latencies, whichever is larger, and every operation's count must
equal the number of its exchanges on the wire. No allowance: the drivers time at the socket
(`capacity/drivers/wire_timing.py`), so the load generator's own time (~1 ms a request here,
several under contention) is not in the figure judged, and nothing has to be subtracted.

The runs have no warm-up, so the steady state is every request and truth and report cover
the same requests; excluding the warm-up is tested on its own (`test_analysis.py`). Client
figures (Locust's own, the run's client-observed P99 and overhead) are printed beside.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO_ROOT, write_scenario
from servers import running_server
from wire_capture import TCPDUMP, Exchange, capture, exchanges

from capacity import runfolder
from capacity.analysis.summary import summarize
from capacity.stack.supervisor import StackState

LOCUSTFILE = """
from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("accuracy.toml"))
"""

SCENARIO = """
[scenario]
name = "accuracy"
[targets]
rules_engine = "{url}"
embedded_stack = false
[load]
users = {users}
spawn_rate = {users}
duration_s = {run_s}
warmup_s = 0
[users.rules]
wait_s = [0, 0]
[[users.rules.rule_sets]]
file = "cases.json"
"""

# fixed delay ms: (users back to back, run s); about 2000, 1300 and 1100 requests here
SCALES = {"1ms": (1.0, 1, 5), "10ms": (10.0, 4, 5), "100ms": (100.0, 20, 6)}
PERCENTILES = (50.0, 95.0, 99.0)


@pytest.fixture(autouse=True)
def _tcpdump() -> None:
    if TCPDUMP is None or os.geteuid() != 0:
        why = "tcpdump is not installed" if TCPDUMP is None else "capturing needs root"
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI must run this test: .ci/test-setup.sh)")
        pytest.skip(why)


def nearest_rank_ms(samples_ms: np.ndarray, pct: float) -> float:
    ordered = np.sort(samples_ms)
    return float(ordered[max(1, int(np.ceil(pct / 100.0 * len(ordered)))) - 1])


def truth_by_operation(
    found: list[Exchange], name_of: Callable[[bytes], str | None]
) -> dict[str, np.ndarray]:
    by_op: dict[str, list[float]] = defaultdict(list)
    for x in found:
        name = name_of(bytes(x.request))
        if name is not None:
            by_op[name].append(x.wire_ms)
    return {name: np.array(values) for name, values in by_op.items()}


def run_summary(run_dir: Path) -> dict[str, Any]:
    """The summary as `capacity report` makes it from the run folder."""
    return summarize(runfolder.iter_slices(run_dir), None, runfolder.read_meta(run_dir)).summary


def locust_p99(stats_csv: Path) -> dict[str, float]:
    with stats_csv.open(newline="") as fh:
        return {row["Name"]: float(row["99%"]) for row in csv.DictReader(fh)}


def compare(
    label: str,
    operations: Mapping[str, Mapping[str, Any]],
    truth: Mapping[str, np.ndarray],
    locust: Mapping[str, float] | None = None,
) -> list[str]:
    """Print the reported figures against the truth; return every miss."""
    misses: list[str] = []
    lines = [f"\n{label}: load average {os.getloadavg()[0]:.2f}"]
    for name, op in sorted(operations.items()):
        wire = truth.get(name, np.array([]))
        lines.append(
            f"  {name}: {op['count']} reported, {len(wire)} on the wire; basis "
            f"{op['latency_basis']}; client P99 {op.get('p99_client_ms')} ms"
            + (f" (Locust {locust.get(name)})" if locust else "")
            + f", overhead P50/P99 {op.get('client_overhead_p50_ms')}/"
            f"{op.get('client_overhead_p99_ms')} ms, {op.get('connects')} connects"
        )
        if op["count"] != len(wire):
            misses.append(f"{name}: {op['count']} reported, {len(wire)} on the wire")
            continue
        for pct in PERCENTILES:
            key = f"p{pct:.0f}_ms"
            exact = nearest_rank_ms(wire, pct)
            tolerance = max(0.01 * exact, 0.25)
            diff = op[key] - exact
            lines.append(
                f"    {key}: wire {exact:9.3f} | reported {op[key]:9.3f} ({diff:+.3f} ms, "
                f"{diff / exact:+.2%}; tolerance {tolerance:.3f} ms)"
            )
            if abs(diff) > tolerance:
                misses.append(f"{name} {key}: reported {op[key]} vs wire {exact:.3f}")
    print("\n".join(lines))
    return misses


@pytest.mark.parametrize("scale", list(SCALES))
def test_fixed_delay_percentiles_match_the_wire(tmp_path: Path, scale: str) -> None:
    delay_ms, users, run_s = SCALES[scale]
    (tmp_path / "cases.json").write_text('{"ruleSet": "acc", "cases": [{"facts": {}}]}')
    (tmp_path / "accuracy_locustfile.py").write_text(LOCUSTFILE)
    with running_server("delay", "--dist", "fixed", "--median-ms", str(delay_ms)) as server:
        scenario = tmp_path / "accuracy.toml"
        scenario.write_text(SCENARIO.format(url=server.url, users=users, run_s=run_s))
        run_dir = tmp_path / "run"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPACITY_")}
        with capture(server.port, tmp_path / "wire.pcap"):
            proc = subprocess.run(
                [
                    sys.executable, "-m", "locust", "-f", str(tmp_path / "accuracy_locustfile.py"),
                    "--headless", "--scenario", str(scenario), "--run-dir", str(run_dir),
                    "--no-preflight", "--only-summary", "--loglevel", "WARNING",
                    "-u", str(users), "-r", str(users), "-t", f"{run_s}s", "--stop-timeout", "10",
                    "--csv", str(tmp_path / "locust"),
                ],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=run_s + 60,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    found = exchanges(tmp_path / "wire.pcap", server.port)
    truth = truth_by_operation(found, lambda r: "rules acc" if b'"ruleSet": "acc"' in r else None)
    operations = run_summary(run_dir)["operations"]
    assert set(operations) == {"rules acc"}
    assert operations["rules acc"]["latency_basis"] == "wire"
    assert len(truth["rules acc"]) > 500
    misses = compare(
        f"fixed {delay_ms:g} ms", operations, truth, locust_p99(tmp_path / "locust_stats.csv")
    )
    assert not misses, misses


OPERATION_NAME = re.compile(rb'"operationName":\s*"(\w+)"')


def graphql_operation(request: bytes) -> str | None:
    match = OPERATION_NAME.search(request)
    return f"graphql {match.group(1).decode()}" if match else None


@pytest.mark.stack
def test_graphql_scenario_percentiles_match_the_wire(erp_stack: StackState, tmp_path: Path) -> None:
    """The shipped GraphQL scenario (10 users, four operations) for 12 s, no warm-up."""
    scenario = write_scenario(
        tmp_path / "s",
        "graphql.toml",
        erp_stack,
        replace={"duration_s = 30": "duration_s = 12", "warmup_s = 3": "warmup_s = 0"},
    )
    port = erp_stack.ports["gateway"]
    with capture(port, tmp_path / "wire.pcap"):
        proc = subprocess.run(
            [
                sys.executable, "-m", "capacity", "run", str(scenario),
                "--reports", str(tmp_path / "r"), "--state-dir", str(erp_stack.state_dir),
            ],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    operations = summary["operations"]
    assert len(operations) == 4 and all(op["failures_all"] == 0 for op in operations.values())
    assert {op["latency_basis"] for op in operations.values()} == {"wire"}
    # The preflight's own requests (validation, health) are on the wire too: not operations.
    truth = truth_by_operation(exchanges(tmp_path / "wire.pcap", port), graphql_operation)
    truth = {name: wire for name, wire in truth.items() if name in operations}
    assert run_summary(run_dir)["operations"] == operations  # the folder gives the summary
    misses = compare("graphql.toml", operations, truth)
    assert not misses, misses
