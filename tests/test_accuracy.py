"""Recorder accuracy against ground truth: a server that measures its own service times.

The server (tests/servers.py, its own process) sleeps a lognormal delay per request and
returns the service time it measured. True client-side percentiles are the exact percentiles
of those service times plus the loopback overhead, calibrated per request as the median of
(Locust's exact response time - the server's service time) over the same run. The recorder's
P95 and P99 (from the run folder, through the analysis) must be within 1% or 0.5 ms of them,
with the load generator under half a core. Locust's own rounded percentiles are printed beside.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from servers import running_server

from capacity import runfolder
from capacity.analysis import summarize

REPO_ROOT = Path(__file__).resolve().parent.parent

LOCUSTFILE = """
import json, os, time
from locust import events
from capacity.drivers.users import build_user_classes
from capacity.locust_plugin import load_active_scenario

scenario = load_active_scenario("accuracy.toml")
globals().update(build_user_classes(scenario))
_pairs, _cpu = [], {}

@events.request.add_listener
def _pair(response_time, response=None, **_):
    headers = getattr(response, "headers", None) or {}
    service = headers.get("X-Service-Us") or headers.get("x-service-us")
    _pairs.append((response_time, int(service) if service else -1))

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


# (median delay ms, lognormal sigma, users, wait between requests s, run s): sample counts
# are about 1500 (1 ms), 1300 (100 ms) and 700 (2 s; many users, few samples, short run).
SCALES = {
    "1ms": (1.0, 0.5, 2, 0.004, 6),
    "100ms": (100.0, 0.5, 20, 0.0, 7),
    "2s": (2000.0, 0.15, 150, 0.0, 8),
}


@pytest.mark.parametrize("scale", list(SCALES))
def test_recorded_p95_p99_match_server_measured_truth(tmp_path: Path, scale: str) -> None:
    median_ms, sigma, users, wait_s, run_s = SCALES[scale]
    (tmp_path / "cases.json").write_text('{"ruleSet": "acc", "cases": [{"facts": {}}]}')
    (tmp_path / "accuracy_locustfile.py").write_text(LOCUSTFILE)
    args = ("delay", "--median-ms", str(median_ms), "--sigma", str(sigma), "--seed", "7")
    with running_server(*args) as server:
        scenario = tmp_path / "accuracy.toml"
        scenario.write_text(SCENARIO.format(url=server.url, wait_s=wait_s))
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
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        server_ms = np.array(server.samples_ms())
    client = json.loads(out.read_text())
    pairs = np.array(client["pairs"], dtype=float)
    client_ms, service_ms = pairs[:, 0], pairs[:, 1] / 1000.0
    assert (pairs[:, 1] >= 0).all()
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
    lines = [
        f"\n{scale}: {op['count']} requests ({len(server_ms)} served), load generator "
        f"{load_generator_cores:.2f} cores, loopback overhead median {offset_ms:.3f} ms "
        f"(p99 {np.percentile(overhead_ms, 99):.3f} ms)"
    ]
    failures = []
    spread_ms = float(np.percentile(overhead_ms, 99) - np.percentile(overhead_ms, 1))
    for pct in (50.0, 95.0, 99.0):
        key = f"p{pct:.0f}"
        service_p = nearest_rank_ms(server_ms, pct)
        truth = service_p + offset_ms
        exact_client = nearest_rank_ms(client_ms, pct)
        locust_value = loc[f"{pct:.0f}%"]
        lines.append(
            f"  {key}: server truth + overhead {truth:9.3f} ms | exact client {exact_client:9.3f}"
            f" | ours {ours[key]:9.3f} ({(ours[key] - truth) / truth:+.2%} vs truth, "
            f"{(ours[key] - exact_client) / exact_client:+.2%} vs client) | Locust "
            f"{locust_value:7.0f} ({(locust_value - exact_client) / exact_client:+.2%} vs client)"
        )
        if pct < 95.0:
            continue
        tolerance = max(0.01 * truth, 0.5)
        # the recorder against the exact client-side values of the same requests
        if abs(ours[key] - exact_client) > max(0.01 * exact_client, 0.5):
            failures.append(f"{key}: ours {ours[key]} vs exact client {exact_client:.3f}")
        # against the server's truth: the client percentile lies within the overhead's range
        low, high = service_p + overhead_ms.min() - tolerance, service_p + overhead_ms.max()
        if not low <= ours[key] <= high + tolerance:
            failures.append(f"{key}: ours {ours[key]} outside server truth [{low:.3f}, {high:.3f}]")
        # and calibrated: truth + median overhead, when the overhead is steady enough to judge
        if spread_ms <= tolerance:
            if abs(ours[key] - truth) > tolerance:
                failures.append(f"{key}: ours {ours[key]} vs truth {truth:.3f} (+-{tolerance:.3f})")
        else:
            warnings.warn(
                f"{scale} {key}: calibrated check not judged: loopback overhead spread "
                f"{spread_ms:.2f} ms > {tolerance} ms (busy machine)",
                stacklevel=1,
            )
    print("\n".join(lines))
    assert op["count"] == len(server_ms) == len(pairs), "every served request recorded once"
    assert load_generator_cores < 0.5
    assert not failures, failures
