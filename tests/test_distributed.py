"""Distributed runs on the real stack: a master and two workers, merged exactly, worker loss.

The merge test logs every request the workers make (a locustfile that adds a raw-sample
listener next to the recorder) and rebuilds one histogram of all samples from that log: the
merged slices must equal it, whatever the merge order, and the request counts must equal
Locust's own final totals (`--json-file`).
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import REPO_ROOT, write_scenario

from capacity import runner
from capacity.recorder import SliceRecorder
from capacity.runfolder.histograms import Counts, merge_counts, percentile_ms
from capacity.runner import RunOptions, run_scenario
from capacity.stack.supervisor import StackState

pytestmark = pytest.mark.stack

PERCENTILES = (50.0, 95.0, 99.0, 99.9, 100.0)
RAW_LOCUSTFILE = """
import os, time
from locust import events
from capacity.locust_plugin import locustfile_users

globals().update(locustfile_users("rules.toml", kinds=("rules",)))
_out = []

@events.request.add_listener
def _raw(name, response_time, exception=None, wire_time=None, **_):
    if not _out:
        _out.append(open(os.path.join(os.environ["RAW_SAMPLES_DIR"], f"{os.getpid()}.tsv"), "a"))
    _out[0].write(f"{name}\\t{response_time!r}\\t{wire_time!r}\\t{int(exception is not None)}\\n")
    _out[0].flush()
"""


def rules_scenario(dest: Path, stack: StackState, duration_s: int) -> Path:
    return write_scenario(
        dest,
        "rules.toml",
        stack,
        replace={
            "duration_s = 30": f"duration_s = {duration_s}",
            "warmup_s = 3": "warmup_s = 2",
            "users = 10": "users = 6",
            "spawn_rate = 5": "spawn_rate = 6",
            "wait_s = [0.3, 0.9]": "wait_s = [0.01, 0.03]",
        },
    )


def slices_of(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "slices.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def merged(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per operation: one histogram merged from the records' histograms, in the given order."""
    hists: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        for name, op in record["ops"].items():
            if op["hist"]:
                hists[name].append(Counts.decode(op["hist"]))
    return {name: merge_counts(h) for name, h in hists.items()}


def figures(hist: Any) -> tuple[Any, ...]:
    return (hist.total, *(percentile_ms(hist, p) for p in PERCENTILES))


@pytest.mark.slow
def test_master_and_two_workers_merge_exactly(
    erp_stack: StackState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = rules_scenario(tmp_path / "s", erp_stack, duration_s=8)
    locustfile = tmp_path / "raw_rules.py"
    locustfile.write_text(RAW_LOCUSTFILE)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    monkeypatch.setenv("RAW_SAMPLES_DIR", str(raw_dir))
    stats_json = tmp_path / "locust-stats.json"
    plain_command = runner.locust_command

    def with_json(*args: Any, **kwargs: Any) -> list[str]:
        return [*plain_command(*args, **kwargs), "--json-file", str(stats_json.with_suffix(""))]

    monkeypatch.setattr(runner, "locust_command", with_json)
    lines: list[str] = []
    options = RunOptions(
        scenario_path=scenario,
        reports_root=tmp_path / "reports",
        state_dir=erp_stack.state_dir,
        locustfile=locustfile,
        workers=2,
    )
    result = run_scenario(options, lines.append)
    run_dir = result.run_dir
    meta = json.loads((run_dir / "run.json").read_text())
    records = slices_of(run_dir)

    workers = meta["workers"]
    assert len(workers) == 2 and meta["lost_workers"] == []
    procs = meta["locust_processes"]
    assert set(procs) == {"locust-master", "locust-worker-1", "locust-worker-2"}
    assert {procs[f"locust-worker-{i}"]["worker_id"] for i in (1, 2)} == set(workers)
    per_worker: Counter[str] = Counter()
    for record in records:
        per_worker[record["worker"]] += sum(op["count"] for op in record["ops"].values())
    assert set(per_worker) == set(workers) and min(per_worker.values()) > 50, per_worker

    # One histogram of every sample the workers' users recorded, straight from the raw log.
    raw_files = sorted(raw_dir.iterdir())
    assert {f"{p.stem}" for p in raw_files} == {w.rsplit("-", 1)[1] for w in workers}
    single: list[dict[str, Any]] = []
    truth = SliceRecorder(single.append, worker="all")
    raw_counts: Counter[str] = Counter()
    for path in raw_files:
        for line in path.read_text().splitlines():
            name, response_time, wire_time, failed = line.split("\t")
            truth.on_request(
                name,
                float(response_time),
                "x" if failed == "1" else None,
                wire_time=None if wire_time == "None" else float(wire_time),
            )
            raw_counts[name] += 1
    truth.close_slice()
    truth_hists = merged(single)

    in_order = merged(records)
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    by_worker = [merged([r for r in records if r["worker"] == w]) for w in reversed(workers)]
    assert set(in_order) == set(truth_hists) and len(truth_hists) == 3
    for name, hist in truth_hists.items():
        expected = figures(hist)
        assert figures(in_order[name]) == expected, name
        assert figures(merged(shuffled)[name]) == expected, name
        regrouped = merge_counts(m[name] for m in by_worker if name in m)
        assert figures(regrouped) == expected, name

    # Counts add up exactly: slices == raw log == Locust's own final totals.
    slice_counts: Counter[str] = Counter()
    slice_failures: Counter[str] = Counter()
    for record in records:
        for name, op in record["ops"].items():
            slice_counts[name] += op["count"]
            slice_failures[name] += op["failures"]
    assert slice_counts == raw_counts
    locust_stats = json.loads(stats_json.read_text())
    assert {e["name"]: e["num_requests"] for e in locust_stats} == dict(slice_counts)
    assert {e["name"]: e["num_failures"] for e in locust_stats} == {
        name: slice_failures[name] for name in slice_counts
    }
    summary = result.summary
    assert {n: op["count_all"] for n, op in summary["operations"].items()} == dict(slice_counts)

    # Every Locust process was sampled as a resource target; each wrote its own log.
    with (run_dir / "resources.csv").open() as fh:
        targets = Counter(row["target"] for row in csv.DictReader(fh))
    for name in ("locust-master", "locust-worker-1", "locust-worker-2"):
        assert targets[name] >= 5, targets
        assert (run_dir / ("locust.log" if name == "locust-master" else f"{name}.log")).exists()
    assert targets["rules-engine"] >= 5


def capacity(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "capacity", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )


def wait_for_slices(reports: Path, proc: subprocess.Popen[str], workers: int) -> Path:
    """The run folder, once every worker has sent a slice with requests in it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        run_dirs = list(reports.glob("*/slices.jsonl"))
        if run_dirs:
            busy = {
                r["worker"]
                for r in slices_of(run_dirs[0].parent)
                if any(op["count"] for op in r["ops"].values())
            }
            if len(busy) >= workers:
                return run_dirs[0].parent
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no slices from {workers} workers within 60 s")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_is_named_and_its_slices_kept(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = rules_scenario(tmp_path / "s", erp_stack, duration_s=14)
    reports = tmp_path / "reports"
    proc = capacity(
        "run",
        str(scenario),
        "--reports",
        str(reports),
        "--state-dir",
        str(erp_stack.state_dir),
        "--workers",
        "2",
    )
    run_dir = wait_for_slices(reports, proc, workers=2)
    victim = slices_of(run_dir)[-1]["worker"]
    victim_pid = int(victim.rsplit("-", 1)[1])
    assert "--worker" in psutil.Process(victim_pid).cmdline()
    time.sleep(1.0)
    before = [r for r in slices_of(run_dir) if r["worker"] == victim]
    os.kill(victim_pid, signal.SIGKILL)
    killed_at_s = time.time()
    code, err = finish(proc)
    assert code in (0, 1, 3), err

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete"
    assert meta["lost_workers"] == [victim], err
    assert "heartbeat" in meta["lost_worker_details"][victim]["reason"]
    survivor = next(w for w in meta["workers"] if w != victim)
    records = slices_of(run_dir)
    after = [r for r in records if r["worker"] == victim]
    assert after[: len(before)] == before  # nothing already reported is lost
    assert max(r["t_end_s"] for r in after) <= killed_at_s
    assert max(r["t_end_s"] for r in after) >= killed_at_s - 2.5  # at most a slice missing
    later = [r for r in records if r["worker"] == survivor and r["t_start_s"] > killed_at_s + 3]
    assert sum(op["count"] for r in later for op in r["ops"].values()) > 0  # the run went on
    assert (run_dir / "summary.json").exists() and (run_dir / "report.html").exists()
    assert f"(pid {victim_pid}) exited with signal SIGKILL" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"][victim]["lost"] is True
    assert summary["verdict"] == "inconclusive"
    assert any(victim in reason for reason in summary["reasons"])
    assert victim in (run_dir / "report.html").read_text()
    assert victim in (run_dir / "report.md").read_text()


def test_sigterm_stops_master_and_workers_and_keeps_the_last_slices(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = rules_scenario(tmp_path / "s", erp_stack, duration_s=40)
    reports = tmp_path / "reports"
    proc = capacity(
        "run",
        str(scenario),
        "--reports",
        str(reports),
        "--state-dir",
        str(erp_stack.state_dir),
        "--workers",
        "2",
    )
    run_dir = wait_for_slices(reports, proc, workers=2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    signalled_at_s = time.time()
    code, err = finish(proc)
    assert code in (0, 1, 3), err
    assert "stopping the load" in err

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["stopped_by_signal"] == "SIGTERM"
    assert meta["lost_workers"] == []
    for name, entry in meta["locust_processes"].items():
        assert entry["exit_code"] == 0, (name, err)
        assert not psutil.pid_exists(entry["pid"]) or psutil.Process(entry["pid"]).status() == (
            psutil.STATUS_ZOMBIE
        )
    last_end: dict[str, float] = defaultdict(float)
    for record in slices_of(run_dir):
        last_end[record["worker"]] = max(last_end[record["worker"]], record["t_end_s"])
    assert set(last_end) == set(meta["workers"])
    for worker, end_s in last_end.items():
        assert end_s >= signalled_at_s, (worker, end_s, signalled_at_s)  # closed after the stop
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert (run_dir / "report.html").exists() and (run_dir / "report.md").exists()
