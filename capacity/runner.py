"""`capacity run`: stack, preflight, Locust, resource sampling, analysis, report, in order.

Locust runs as a child process (it monkey-patches everything for gevent; this process stays
plain), writing exact latency slices into the run folder while this process samples resources
and prints progress. Analysis only reads the run folder, so `capacity report` can redo it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from capacity import runfolder
from capacity.errors import CapacityError, StackError
from capacity.preflight import DIRECT_OPENER, run_preflight
from capacity.scenario import Scenario, load_scenario, slos_to_json

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "erp.py"
DEFAULT_STATE_DIR = Path(".capacity/stack")
PROGRESS_EVERY_S = 5.0
LOCUST_GRACE_S = 60.0


@dataclass(frozen=True)
class RunOptions:
    scenario_path: Path
    reports_root: Path = Path("reports")
    state_dir: Path = DEFAULT_STATE_DIR
    keep_stack: bool = False
    locustfile: Path = DEFAULT_LOCUSTFILE
    workers: int = 0


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def stack_ports(scenario: Scenario) -> dict[str, int]:
    """Ports of the embedded stack, taken from the scenario's target URLs."""
    t = scenario.targets

    def port(url: str, default: int) -> int:
        return urlsplit(url).port or default

    return {
        "gateway": port(t.gateway_url, 4000),
        "master-data": port(t.master_data_url, 3010),
        "workflow": port(t.workflow_url, 3011),
        "rules-engine": port(t.rules_url, 3012),
        "temporal": int(t.temporal_address.rsplit(":", 1)[1]),
    }


class EmbeddedStack:
    """Starts the embedded stack for a run unless one is already up; stops only its own."""

    def __init__(self, scenario: Scenario, state_dir: Path, say: Callable[[str], None]) -> None:
        self.scenario = scenario
        self.state_dir = state_dir
        self.say = say
        self.started = False
        self.state: Any = None

    def __enter__(self) -> EmbeddedStack:
        from capacity.stack import supervisor

        existing = supervisor.status(self.state_dir)
        if existing is not None:
            self.say(f"using the embedded stack already running ({self.state_dir})")
            self.state = existing
            if self.scenario.stack_tuning:
                apply_tuning(existing, self.scenario.stack_tuning)
            return self
        self.say("starting the embedded stack ...")
        config = supervisor.StackConfig(
            state_dir=self.state_dir,
            ports=stack_ports(self.scenario),
            tuning={k: dict(v) for k, v in self.scenario.stack_tuning.items()},
        )
        self.state = supervisor.up(config, progress=lambda line: self.say(f"  {line}"))
        self.started = True
        return self

    def pids(self) -> dict[str, int]:
        from capacity.stack import supervisor

        return supervisor.service_pids(self.state) if self.state is not None else {}

    def __exit__(self, *exc: object) -> None:
        if not self.started:
            return
        from capacity.stack import supervisor

        self.say("stopping the embedded stack ...")
        try:
            supervisor.down(self.state_dir)
        except StackError as err:
            self.say(f"warning: {err}")


def apply_tuning(state: Any, tuning: Mapping[str, Mapping[str, Any]]) -> None:
    """Set knobs on a running stack through each stand-in's `/admin/tuning` endpoint."""
    for service, knobs in tuning.items():
        info = state.services.get(service)
        if info is None or not info.url.startswith("http"):
            raise StackError(f"stack.tuning.{service}: no tunable service of that name")
        base = info.url.split("/graphql")[0].rstrip("/")
        req = urllib.request.Request(
            f"{base}/admin/tuning",
            data=json.dumps(dict(knobs)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with DIRECT_OPENER.open(req, timeout=5):
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise StackError(f"stack.tuning.{service}: rejected: {detail}") from None


def locust_command(options: RunOptions, scenario: Scenario, run_dir: Path) -> list[str]:
    load = scenario.load
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(options.locustfile),
        "--headless",
        "--scenario",
        str(scenario.path),
        "--run-dir",
        str(run_dir),
        "--no-preflight",
        "--only-summary",
        "--logfile",
        str(run_dir / runfolder.LOCUST_LOG),
    ]
    if not load.stages:
        run_time_s = max(1, math.ceil(load.duration_s))  # Locust takes whole seconds
        cmd += ["-u", str(load.users), "-r", str(load.spawn_rate), "-t", f"{run_time_s}s"]
    return cmd


def _progress_line(run_dir: Path, started: float, total_s: float, seen: int) -> tuple[str, int]:
    """One line about the slices written since the last call."""
    records = list(runfolder.iter_slices(run_dir))
    new = records[seen:]
    count = sum(op.get("count", 0) for r in new for op in r.get("ops", {}).values())
    fails = sum(op.get("failures", 0) for r in new for op in r.get("ops", {}).values())
    span = sum(float(r["t_end_s"]) - float(r["t_start_s"]) for r in new)
    users = new[-1].get("users", 0) if new else 0
    elapsed = time.monotonic() - started
    rps = count / span if span > 0 else 0.0
    line = (
        f"  [{elapsed:5.0f}s/{total_s:.0f}s] users {users:4d}  {rps:7.1f} req/s  failures {fails}"
    )
    return line, len(records)


def run_locust(
    options: RunOptions, scenario: Scenario, run_dir: Path, say: Callable[[str], None]
) -> int:
    """Run Locust to completion, printing progress; SIGINT/SIGTERM stop it gracefully."""
    cmd = locust_command(options, scenario, run_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out: TextIO
    with (run_dir / "locust.out").open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        stopping = {"signal": False}

        def forward(signum: int, _frame: Any) -> None:
            stopping["signal"] = True
            say("stopping the load (the run folder keeps everything measured) ...")
            proc.send_signal(signal.SIGINT)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            started = time.monotonic()
            total_s = scenario.load.total_duration_s
            seen = 0
            next_progress = started + PROGRESS_EVERY_S
            while proc.poll() is None:
                time.sleep(0.2)
                now = time.monotonic()
                if now >= next_progress:
                    line, seen = _progress_line(run_dir, started, total_s, seen)
                    say(line)
                    next_progress = now + PROGRESS_EVERY_S
                if now - started > total_s + LOCUST_GRACE_S:
                    say("Locust did not stop on time; terminating it")
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        code = proc.wait()
    if code == 2 and not stopping["signal"]:
        tail = (run_dir / "locust.out").read_text(encoding="utf-8", errors="replace")
        lines = [ln for ln in tail.splitlines() if ln.startswith("capacity: error:")]
        if lines:
            raise CapacityError(lines[-1].removeprefix("capacity: error: "))
        last = [ln for ln in tail.splitlines() if ln.strip()][-1:] or ["no output"]
        raise CapacityError(f"Locust refused to start ({run_dir / 'locust.out'}): {last[0]}")
    return code


def run_scenario(options: RunOptions, say: Callable[[str], None]) -> RunResult:
    from capacity.report.build import build_report

    scenario = load_scenario(options.scenario_path)
    stack = (
        EmbeddedStack(scenario, options.state_dir, say) if scenario.targets.embedded_stack else None
    )
    with stack if stack is not None else _Null():
        say("checking targets ...")
        run_preflight(scenario)
        run_dir = runfolder.create_run_dir(options.reports_root, scenario.name)
        runfolder.update_run_json(
            run_dir,
            run_id=run_dir.name,
            scenario=scenario.name,
            scenario_path=str(scenario.path),
            started_at=runfolder.iso_utc(time.time()),
            status="running",
            warmup_s=scenario.load.warmup_s,
            slice_s=scenario.load.slice_s,
            load={
                "users": scenario.load.peak_users,
                "duration_s": scenario.load.total_duration_s,
                "stages": len(scenario.load.stages),
            },
            targets=scenario.targets.health_urls(),
            services=stack.pids() if stack else {},
            slos=slos_to_json(scenario),
        )
        say(f"run folder: {run_dir}")
        sampler = _start_sampler(run_dir, stack.pids() if stack else {}, say)
        try:
            code = run_locust(options, scenario, run_dir, say)
        finally:
            if sampler is not None:
                sampler.stop()
        runfolder.update_run_json(
            run_dir,
            status="complete",
            ended_at=runfolder.iso_utc(time.time()),
            locust_exit_code=code,
        )
    summary = build_report(run_dir)
    return RunResult(run_dir, summary)


def _start_sampler(run_dir: Path, pids: dict[str, int], say: Callable[[str], None]) -> Any:
    from capacity.collect import HostSource, ProcessSource, Sampler

    sources: list[Any] = [HostSource()]
    if pids:
        sources.insert(0, ProcessSource(pids))
    sampler = Sampler(
        sources,
        run_dir / runfolder.RESOURCES,
        interval_s=1.0,
        on_warning=lambda m: say(f"warning: {m}"),
    )
    sampler.start()
    return sampler


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
