"""Recorder accuracy against ground truth: a server that measures its own service times.

The server (tests/servers.py, its own process) sleeps a lognormal delay per request and
returns the service time it measured. True client-side percentiles are the exact percentiles
of those service times plus the loopback overhead, calibrated as the median of (Locust's exact
response time - the server's service time) over the same requests. Over the steady state
(after the scenario's warm-up, as the summary reports it), the recorder's P95 and P99 (from
the run folder, through the analysis) must be within 1% or 0.5 ms of them, with the load
generator under half a core; a miss that this machine's measured loopback jitter explains is
an xfail (see below). Locust's own rounded percentiles are printed beside.

Server and load generator share one CPU: on this VM a wake-up across vCPUs adds 1-5 ms to
some round trips (measured: overhead P99 5.1 ms on two CPUs against 1.0 ms on one, 1 ms scale),
which is the machine's jitter, not the recorder's error. The first requests of 150 users
spawned at once carry ~45 ms of connection set-up; the warm-up keeps them out, as it does
in a real run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import summarize
from servers import running_server

from capacity import runfolder
from capacity.analysis.summary import in_steady_state

REPO_ROOT = Path(__file__).resolve().parent.parent

LOCUSTFILE = """
import json, os, time
from locust import events
from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("rules.toml"))
_pairs, _cpu = [], {}

@events.request.add_listener
def _pair(response_time, response=None, **_):
    headers = getattr(response, "headers", None) or {}
    service = headers.get("X-Service-Us") or headers.get("x-service-us")
    # time.time() now: the clock the recorder closes its slices on, so steady-state
    # membership can be matched request by request
    _pairs.append((response_time, int(service) if service else -1, time.time()))

def _mark(key):
    t = os.times()
    _cpu[key] = (t.user + t.system, time.monotonic())

events.test_start.add_listener(lambda **_: _mark("start"))
events.test_stop.add_listener(lambda **_: _mark("stop"))

@events.quitting.add_listener
def _dump(**_):
    with open(os.environ["ACCURACY_OUT"], "w") as fh:
        json.dump({"pairs": _pairs, "cpu": _cpu}, fh)
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
warmup_s = {warmup_s}
[users.rules]
wait_s = [{wait_s}, {wait_s}]
[[users.rules.rule_sets]]
file = "cases.json"
"""


def nearest_rank_ms(samples_ms: np.ndarray, pct: float) -> float:
    ordered = np.sort(samples_ms)
    return float(ordered[max(1, int(np.ceil(pct / 100.0 * len(ordered)))) - 1])


def locust_percentiles(stats_csv: Path, name: str) -> dict[str, float]:
    with stats_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == name:
                return {key: float(row[key]) for key in ("50%", "95%", "99%")}
    raise AssertionError(f"{name} not in {stats_csv}")


# (median delay ms, lognormal sigma, users, wait between requests s, run s, warm-up s):
# steady-state samples are about 2000 (1 ms), 900 (100 ms) and 450 (2 s). At 1 ms one user
# back to back keeps the CPU awake (idle waits let it sleep, and each wake-up adds jitter).
SCALES = {
    "1ms": (1.0, 0.5, 1, 0.0, 5, 1.5),
    "100ms": (100.0, 0.5, 20, 0.0, 7, 1.5),
    "2s": (2000.0, 0.15, 150, 0.0, 10, 4.0),
}


# Not met reliably here (issue 4 is blocked on it). This VM's own loopback round trip jitters
# by 1-5 ms on about 1% of requests (a bare geventhttpclient loop: overhead P99 - median
# 0.3-1.0 ms from run to run, P99.9 1.1-5 ms), which is as large as the tolerance at the
# 1 ms scale and can move a 100 ms P99 by a few ms; the first CI run of this test failed the
# 1 ms P95 (+0.66 ms) and the 100 ms P99 (+4.6 ms, +1.3%). A miss no larger than the tolerance
# plus that jitter, measured on the same requests (overhead P99.9 - median), is reported as
# xfail with its figures, never as a pass; anything beyond it fails.


def shared_cpu() -> set[int]:
    """One CPU for the server and the load generator (the last one this process may use)."""
    return {max(os.sched_getaffinity(0))}


def steady_mask(run_dir: Path, event_s: np.ndarray) -> np.ndarray:
    """Which requests fell in the slices the summary counts as steady state."""
    meta = runfolder.read_meta(run_dir)
    assert meta.load_started_at is not None
    steady_start_s = meta.load_started_at + meta.warmup_s
    mask = np.zeros(len(event_s), dtype=bool)
    for record in runfolder.iter_slices(run_dir):
        if in_steady_state(record, steady_start_s):
            start, end = float(record["t_start_s"]), float(record["t_end_s"])
            mask |= (event_s >= start) & (event_s < end)
    return mask


@pytest.mark.parametrize("scale", list(SCALES))
def test_recorded_p95_p99_match_server_measured_truth(tmp_path: Path, scale: str) -> None:
    median_ms, sigma, users, wait_s, run_s, warmup_s = SCALES[scale]
    (tmp_path / "cases.json").write_text('{"ruleSet": "acc", "cases": [{"facts": {}}]}')
    (tmp_path / "accuracy_locustfile.py").write_text(LOCUSTFILE)
    args = ("delay", "--median-ms", str(median_ms), "--sigma", str(sigma), "--seed", "7")
    cpu = shared_cpu()
    with running_server(*args, cpus=cpu) as server:
        scenario = tmp_path / "accuracy.toml"
        scenario.write_text(
            SCENARIO.format(
                url=server.url, wait_s=wait_s, users=users, run_s=run_s, warmup_s=warmup_s
            )
        )
        run_dir, out = tmp_path / "run", tmp_path / "client.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPACITY_")}
        env["ACCURACY_OUT"] = str(out)
        proc = subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", str(tmp_path / "accuracy_locustfile.py"),
                "--headless", "--scenario", str(scenario), "--run-dir", str(run_dir),
                "--no-preflight", "--only-summary", "--loglevel", "WARNING",
                "-u", str(users), "-r", str(users), "-t", f"{run_s}s", "--stop-timeout", "10",
                "--csv", str(tmp_path / "locust"),
            ],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=run_s + 60,
            preexec_fn=lambda: os.sched_setaffinity(0, cpu),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        server_all_ms = np.array(server.samples_ms())
    client = json.loads(out.read_text())
    pairs = np.array(client["pairs"], dtype=float)
    assert (pairs[:, 1] >= 0).all()
    assert len(pairs) == len(server_all_ms), "every served request reported once"
    steady = steady_mask(run_dir, pairs[:, 2])
    client_ms, service_ms = pairs[steady, 0], pairs[steady, 1] / 1000.0
    overhead_ms = client_ms - service_ms
    (cpu0, wall0), (cpu1, wall1) = client["cpu"]["start"], client["cpu"]["stop"]
    load_generator_cores = (cpu1 - cpu0) / (wall1 - wall0)

    meta = runfolder.read_json(run_dir / runfolder.RUN_JSON)
    summary = summarize(
        list(runfolder.iter_slices(run_dir)), None, run_meta=meta, operation_slos=[],
        service_slos=[],
    )  # fmt: skip
    op = summary["operations"]["rules acc"]
    ours = {"p50": op["p50_ms"], "p95": op["p95_ms"], "p99": op["p99_ms"]}
    loc = locust_percentiles(tmp_path / "locust_stats.csv", "rules acc")
    offset_ms = float(np.median(overhead_ms))
    jitter_ms = float(np.percentile(overhead_ms, 99.9)) - offset_ms
    lines = [
        f"\n{scale}: {len(pairs)} requests, {op['count']} in the steady state "
        f"({len(client_ms)} matched by time), load generator {load_generator_cores:.2f} "
        f"cores, loopback overhead median {offset_ms:.3f} ms "
        f"(p99 {np.percentile(overhead_ms, 99):.3f} ms)"
    ]
    failures: list[str] = []
    known_misses: list[str] = []
    for pct in (50.0, 95.0, 99.0):
        key = f"p{pct:.0f}"
        service_p = nearest_rank_ms(service_ms, pct)
        truth = service_p + offset_ms
        exact_client = nearest_rank_ms(client_ms, pct)
        tolerance = max(0.01 * truth, 0.5)
        lines.append(
            f"  {key}: server truth + overhead {truth:9.3f} ms | exact client {exact_client:9.3f}"
            f" | ours {ours[key]:9.3f} ({ours[key] - truth:+.3f} ms, "
            f"{(ours[key] - truth) / truth:+.2%} vs truth; tolerance {tolerance:.3f} ms) "
            f"| Locust {loc[f'{pct:.0f}%']:7.0f} (whole run, rounded)"
        )
        if pct < 95.0:
            continue
        if abs(ours[key] - truth) > tolerance:
            miss = f"{key}: ours {ours[key]} vs truth {truth:.3f} (+-{tolerance:.3f})"
            if abs(ours[key] - truth) <= tolerance + jitter_ms:
                known_misses.append(f"{miss}, within the measured jitter {jitter_ms:.3f} ms")
            else:
                failures.append(f"{miss}, beyond the measured jitter {jitter_ms:.3f} ms")
        # the recorder against the exact client-side values of (nearly: a request on a slice
        # boundary may fall on either side) the same requests
        if abs(ours[key] - exact_client) > max(0.01 * exact_client, 0.5):
            failures.append(f"{key}: ours {ours[key]} vs exact client {exact_client:.3f}")
    print("\n".join(lines))
    # Slice boundaries are stored to the millisecond: a request within 1 ms of one may be
    # matched to its neighbour.
    assert abs(op["count"] - len(client_ms)) <= 2
    assert load_generator_cores < 0.5
    assert not failures, failures
    if known_misses:
        pytest.xfail(f"{scale}: loopback jitter of this machine: {'; '.join(known_misses)}")
