"""Faults during a run: the verdict says how the run went, never a pass it did not earn.

Each test breaks a real run the way an operator or a machine would (SIGKILL of the load
generator, of `capacity run` itself, of a stack service; a second run on the same stack; a
bug) and checks the honest verdict, its one-line reason and that nothing is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from conftest import REPO_ROOT, write_scenario

from capacity.stack.supervisor import StackState, pick_free_ports, port_in_use

pytestmark = pytest.mark.stack

SHORT = {"duration_s = 45": "duration_s = 12", "warmup_s = 5": "warmup_s = 2"}


def start_run(scenario: Path, reports: Path, *extra: str, state_dir: Path | None = None) -> Any:
    """`capacity run` in its own process group, output to files (read after it ends)."""
    args = [sys.executable, "-m", "capacity", "run", str(scenario), "--reports", str(reports)]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    reports.mkdir(parents=True, exist_ok=True)
    out = (reports / "capacity.out").open("w")
    err = (reports / "capacity.err").open("w")
    return subprocess.Popen(
        [*args, *extra], stdout=out, stderr=err, cwd=REPO_ROOT, start_new_session=True
    )


def stderr_of(reports: Path) -> str:
    return (reports / "capacity.err").read_text()


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def locust_children(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if "locust" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # a zombie or a process that just ended
            continue
    return found


def run_folder(reports: Path) -> Path:
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    return run_dir


def summary_of(reports: Path) -> dict[str, Any]:
    return json.loads((run_folder(reports) / "summary.json").read_text())


def own_stack_scenario(tmp_path: Path) -> Path:
    """The rules scenario on a fresh embedded stack (free ports) that `capacity run` starts."""
    ports: Any = SimpleNamespace(ports=pick_free_ports())  # where a stack will run
    return write_scenario(
        tmp_path / "s", "rules.toml", ports, replace={"duration_s = 30": "duration_s = 25"}
    )


def test_killed_load_generator_is_inconclusive_not_pass(
    erp_stack: StackState, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path / "s", "rules.toml", erp_stack)
    reports = tmp_path / "reports"
    proc = start_run(scenario, reports, state_dir=erp_stack.state_dir)
    (locust,) = wait_for(lambda: locust_children(proc.pid), 60, "Locust to start")
    time.sleep(6)  # some load, then the load generator dies
    locust.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=120) == 3, stderr_of(reports)
    summary = summary_of(reports)
    assert summary["verdict"] == "inconclusive"
    assert any("exited with signal SIGKILL" in r for r in summary["reasons"]), summary["reasons"]
    assert any(op["count_all"] > 0 for op in summary["operations"].values())  # kept


def test_second_run_on_one_stack_is_refused_or_shared_knowingly(tmp_path: Path) -> None:
    scenario = own_stack_scenario(tmp_path)
    state = tmp_path / "state"
    first = start_run(scenario, tmp_path / "r1", state_dir=state)
    wait_for(lambda: locust_children(first.pid), 90, "the first run's load")
    refused = subprocess.run(
        [sys.executable, "-m", "capacity", "run", str(scenario), "--state-dir", str(state),
         "--reports", str(tmp_path / "r2")],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.startswith("capacity: error:")]
    assert "is in use by capacity run rules" in line and "--share-stack" in line
    assert not (tmp_path / "r2").exists() or not any((tmp_path / "r2").iterdir())
    shared = subprocess.run(
        [sys.executable, "-m", "capacity", "run", str(scenario), "--state-dir", str(state),
         "--reports", str(tmp_path / "r3"), "--share-stack", "--time-scale", "0.3"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert first.wait(timeout=120) == 3, stderr_of(tmp_path / "r1")
    assert shared.returncode == 3, shared.stderr
    mine = summary_of(tmp_path / "r3")
    assert "this run shared the embedded stack with another run (--share-stack)" in mine["reasons"]
    theirs = summary_of(tmp_path / "r1")
    assert any(
        r.startswith("shared: another run used the embedded stack") for r in theirs["reasons"]
    )
    # A shared run's broken limits are not judged: the other run's load was in its figures.
    assert all(s["passed"] is not False for s in theirs["slos"] + mine["slos"])


def test_sigkill_of_capacity_run_leaves_nothing_running(tmp_path: Path) -> None:
    scenario = own_stack_scenario(tmp_path)
    state = tmp_path / "state"
    proc = start_run(scenario, tmp_path / "r1", state_dir=state)
    wait_for(lambda: locust_children(proc.pid), 90, "load")
    stack = json.loads((state / "stack.json").read_text())
    pids = [proc.pid, *(p.pid for p in locust_children(proc.pid))]
    pids += [s["pid"] for s in stack["services"].values()]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def all_gone() -> bool:
        return not [pid for pid in pids if running(pid)]

    wait_for(all_gone, 30, "every process of the killed run to end")
    ports = stack["ports"]
    wait_for(
        lambda: not any(port_in_use("127.0.0.1", p) for p in ports.values()),
        15,
        "the killed stack's ports to be free",
    )
    # The next run finds the dead run's state, starts a fresh stack and runs.
    again = subprocess.run(
        [sys.executable, "-m", "capacity", "run", str(scenario), "--state-dir", str(state),
         "--reports", str(tmp_path / "r2"), "--time-scale", "0.25"],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
    )  # fmt: skip
    assert again.returncode in (0, 1, 3), again.stderr
    assert "starting the embedded stack" in again.stderr
    assert (run_folder(tmp_path / "r2") / "summary.json").exists()


def test_a_service_that_dies_mid_run_is_named_and_drawn(tmp_path: Path) -> None:
    scenario = own_stack_scenario(tmp_path)
    state = tmp_path / "state"
    proc = start_run(scenario, tmp_path / "r1", state_dir=state)
    wait_for(lambda: locust_children(proc.pid), 90, "load")
    time.sleep(5)
    stack = json.loads((state / "stack.json").read_text())
    os.kill(stack["services"]["rules-engine"]["pid"], signal.SIGKILL)
    code = proc.wait(timeout=120)
    summary = summary_of(tmp_path / "r1")
    assert summary["verdict"] != "pass" and code in (1, 3)
    reasons = " | ".join(summary["reasons"])
    assert "process rules-engine" in reasons and "is gone" in reasons
    (outage,) = summary["outages"]
    assert outage["service"] == "rules-engine" and outage["to_s"] >= outage["from_s"]
    # It is not sampled at 0 CPU / 0 MB after it died, so its resource SLOs do not "pass" on it.
    # (Killed early, it may have no steady-state sample at all: then its one row is `samples`
    # with value 0, unjudged, which is right too.)
    rows = [s for s in summary["slos"] if s["target"] == "rules-engine" and s["kind"] == "service"]
    assert rows and not any(s["passed"] for s in rows), rows
    judged = [s for s in rows if s["metric"] != "samples"]
    assert all(s["value"] is None or s["value"] > 0 for s in judged), rows


def test_an_internal_error_exits_4_with_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from capacity import cli
    from capacity.commands import report

    def broken(_args: Any) -> int:
        raise KeyError("a bug")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "run", broken)
    monkeypatch.setattr(cli, "build_parser", _parser_with(report, broken))
    assert cli.main(["report", str(tmp_path)]) == 4
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("capacity: internal error (KeyError); the traceback is in ")
    log = Path(line.rsplit(" ", 1)[1])
    assert log.is_file() and "KeyError: 'a bug'" in log.read_text()


def _parser_with(module: Any, func: Callable[[Any], int]) -> Callable[..., Any]:
    import argparse

    def build(_only: str | None = None) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="capacity")
        sub = parser.add_subparsers(dest="command")
        module.add_parser(sub)
        parser.set_defaults()
        for action in sub.choices.values():
            action.set_defaults(func=func)
        return parser

    return build


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 256 KiB tmpfs (root only): a reports folder that fills up during a run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_mid_run_stops_it_with_one_line_and_keeps_the_data(
    erp_stack: StackState, tmp_path: Path, small_disk: Path
) -> None:
    scenario = write_scenario(tmp_path / "s", "smoke.toml", erp_stack, replace=SHORT)
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (256 * 1024 - 40 * 1024))  # about 40 KiB left for the run
    reports = small_disk / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "capacity", "run", str(scenario), "--reports", str(reports),
         "--state-dir", str(erp_stack.state_dir)],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("capacity: error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0], proc.stderr
    run_dir = run_folder(reports)
    assert not (run_dir / "summary.json").exists()  # never half written
    filler.unlink()  # space again: the measurements are all there to report
    report = subprocess.run(
        [sys.executable, "-m", "capacity", "report", str(run_dir)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert report.returncode == 3, report.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "inconclusive"
    assert sum(op["count_all"] for op in summary["operations"].values()) > 0
