"""`capacity run`: stack, preflight, Locust, resource sampling, analysis, report, in order.

Locust runs as a child process (it monkey-patches everything for gevent; this process stays
plain), writing exact latency slices into the run folder while this process samples resources
and prints progress. Analysis only reads the run folder, so `capacity report` can redo it.

Everything that can go wrong reaches the verdict: a Locust process that did not end cleanly,
a service that died, a sampler or writer that failed, a stack shared with another run. Every
process this run starts ends with it, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capacity import runfolder, shipped
from capacity.endpoints import DEFAULT_STATE_DIR
from capacity.errors import CapacityError
from capacity.scenario import Scenario, load_scenario
from capacity.stack.embedded import EmbeddedStack
from capacity.stack.lease import die_with_parent
from capacity.traces.run import TraceRun

PROGRESS_EVERY_S = 5.0
LOCUST_GRACE_S = 60.0
LOOPBACK = "127.0.0.1"
WORKER_CONNECT_WAIT_S = 60.0
WORKER_EXIT_GRACE_S = 15.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunOptions:
    scenario_path: Path
    reports_root: Path = Path("reports")
    state_dir: Path = DEFAULT_STATE_DIR
    keep_stack: bool = False
    locustfile: Path = field(default_factory=shipped.locustfile_path)
    workers: int = 0
    time_scale: float = 1.0
    share_stack: bool = False
    repeat: dict[str, Any] | None = None  # {group, index, of, side}: a run of a repeat series
    reset: str | None = None  # what was reset before this run (stationary system under test)

    def absolute(self) -> RunOptions:
        """The same options with every path absolute: child processes run elsewhere."""
        return RunOptions(
            scenario_path=self.scenario_path.absolute(),
            reports_root=self.reports_root.absolute(),
            state_dir=self.state_dir.absolute(),
            keep_stack=self.keep_stack,
            locustfile=self.locustfile.absolute(),
            workers=self.workers,
            time_scale=self.time_scale,
            share_stack=self.share_stack,
            repeat=self.repeat,
            reset=self.reset,
        )


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def locust_command(
    options: RunOptions,
    scenario: Scenario,
    run_dir: Path,
    *,
    master_port: int | None = None,
    trace_id_prefix: str | None = None,
) -> list[str]:
    """The local Locust process, or with `master_port` the master (it runs no users itself)."""
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
        "--time-scale",
        repr(options.time_scale),
        # Let requests in flight at the end finish and be recorded: a request the server
        # served but the recorder never saw would make counts differ from the server's.
        "--stop-timeout",
        f"{STOP_TIMEOUT_S:g}",
    ]
    if trace_id_prefix:
        cmd += ["--trace-id-prefix", trace_id_prefix]
    if master_port is not None:
        cmd += [
            "--master",
            "--master-bind-host",
            LOOPBACK,
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            str(options.workers),
            "--expect-workers-max-wait",
            f"{WORKER_CONNECT_WAIT_S:g}",
        ]
    if not load.stages:
        run_time_s = max(1, math.ceil(load.duration_s))  # Locust takes whole seconds
        cmd += ["-u", str(load.users), "-r", str(load.spawn_rate), "-t", f"{run_time_s}s"]
    return cmd


def worker_command(
    options: RunOptions,
    scenario: Scenario,
    run_dir: Path,
    master_port: int,
    index: int,
    trace_id_prefix: str | None = None,
) -> list[str]:
    """Worker `index` (1-based) of a distributed run; it writes nothing but its own log."""
    trace = ["--trace-id-prefix", trace_id_prefix] if trace_id_prefix else []
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(options.locustfile),
        "--worker",
        "--master-host",
        LOOPBACK,
        "--master-port",
        str(master_port),
        "--scenario",
        str(scenario.path),
        "--logfile",
        str(run_dir / f"locust-worker-{index}.log"),
        "--time-scale",
        repr(options.time_scale),
        # The arrival-rate executor's share: every worker sends 1/N of the scenario's rate.
        "--arrival-split",
        f"{index - 1}/{options.workers}",
        *trace,
    ]


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on `host` right now (the master binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def worker_id_of(pid: int) -> str:
    """The id a worker on this machine puts in its slices (`runfolder.worker_id()` there)."""
    return f"{socket.gethostname()}-{pid}"


@dataclass
class LocustProcess:
    """One Locust process of a run: `locust`, `locust-master` or `locust-worker-N`."""

    name: str
    popen: subprocess.Popen[bytes]
    out_path: Path
    exited_at_s: float | None = None  # wall clock when first seen gone

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def is_worker(self) -> bool:
        return self.name.startswith("locust-worker-")


def start_locust_processes(
    options: RunOptions, scenario: Scenario, run_dir: Path, trace_id_prefix: str | None = None
) -> list[LocustProcess]:
    """Start the local Locust process, or the master then `options.workers` workers.

    Each gets its own session, so a terminal's Ctrl-C reaches only `capacity run`, which
    forwards one SIGINT to the master: a second SIGINT would interrupt Locust's flush. Each
    also gets SIGTERM when this process dies, so no load outlives a killed run.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if options.workers <= 0:
        cmd = locust_command(options, scenario, run_dir, trace_id_prefix=trace_id_prefix)
        return [_spawn("locust", cmd, run_dir, env)]
    port = free_port()
    master_cmd = locust_command(
        options, scenario, run_dir, master_port=port, trace_id_prefix=trace_id_prefix
    )
    procs = [_spawn("locust-master", master_cmd, run_dir, env, out_name="locust.out")]
    for index in range(1, options.workers + 1):
        cmd = worker_command(options, scenario, run_dir, port, index, trace_id_prefix)
        procs.append(_spawn(f"locust-worker-{index}", cmd, run_dir, env))
    return procs


def _spawn(
    name: str, cmd: list[str], run_dir: Path, env: dict[str, str], out_name: str | None = None
) -> LocustProcess:
    out_path = run_dir / (out_name or f"{name}.out")
    with out_path.open("wb") as out:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.getcwd(),
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    return LocustProcess(name, popen, out_path)


class Progress:
    """One line every few seconds about the slices written since the last one (constant cost:
    only the newly appended part of slices.jsonl is read)."""

    def __init__(self, run_dir: Path, total_s: float) -> None:
        self.tail = runfolder.SliceTail(run_dir)
        self.total_s = total_s
        self.started = time.monotonic()

    def line(self) -> str:
        count = fails = 0
        span_by_worker: dict[str, float] = {}
        users_by_worker: dict[str, int] = {}

        def add(record: dict[str, Any]) -> None:
            nonlocal count, fails
            for op in record["ops"].values():
                count += int(op.get("count", 0))
                fails += int(op.get("failures", 0))
            worker = str(record.get("worker", ""))
            span = float(record["t_end_s"]) - float(record["t_start_s"])
            span_by_worker[worker] = span_by_worker.get(worker, 0.0) + span
            users_by_worker[worker] = int(record.get("users", 0))

        self.tail.read_new(add)
        span = max(span_by_worker.values(), default=0.0)
        users = sum(users_by_worker.values())
        elapsed = time.monotonic() - self.started
        rps = count / span if span > 0 else 0.0
        return (
            f"  [{elapsed:5.0f}s/{self.total_s:.0f}s] users {users:4d}  {rps:7.1f} req/s  "
            f"failures {fails}"
        )


def run_locust(
    options: RunOptions,
    scenario: Scenario,
    run_dir: Path,
    say: Callable[[str], None],
    *,
    service_pids: Mapping[str, int] | None = None,
    trace_id_prefix: str | None = None,
) -> int:
    """Run Locust to completion, printing progress; SIGINT/SIGTERM stop it gracefully.

    With `service_pids`, resources are sampled (1 Hz, into resources.csv) for those services,
    the scenario's `[resources]` and every Locust process, by one sampler started once the
    Locust processes exist. Returns the exit code of the local process or the master.
    """
    stopping: dict[str, str] = {}
    procs: list[LocustProcess] = []

    def forward(signum: int, _frame: Any) -> None:
        if stopping:
            say("already stopping: waiting for Locust to flush the run folder ...")
            return
        stopping["signal"] = signal.Signals(signum).name
        say("stopping the load (the run folder keeps everything measured) ...")
        if procs and procs[0].popen.poll() is None:
            procs[0].popen.send_signal(signal.SIGINT)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    sampler = None
    problems: list[str] = []
    try:
        procs.extend(start_locust_processes(options, scenario, run_dir, trace_id_prefix))
        if service_pids is not None:
            sampler = _start_sampler(run_dir, scenario, service_pids, procs, problems)
        _supervise(procs, scenario, say, run_dir)
    finally:
        _stop_leftovers(procs, say)
        if sampler is not None:
            sampler.stop()
            problems += [p for p in sampler.problems if not p.startswith("process locust")]
            outages = [o for o in sampler.outages if not o[0].startswith("locust")]
            if outages:
                runfolder.update_run_json(
                    run_dir,
                    outages=[{"service": s, "from_s": a, "to_s": b} for s, a, b in outages],
                )
        for s, handler in old.items():
            signal.signal(s, handler)
    code = procs[0].popen.wait()
    _record_processes(run_dir, procs, stopping.get("signal"))
    runfolder.add_problems(run_dir, problems)
    for problem in problems:
        say(f"warning: {problem}")
    if code == 2 and not stopping:
        for proc in procs:
            text = proc.out_path.read_text(encoding="utf-8", errors="replace")
            lines = [ln for ln in text.splitlines() if ln.startswith("capacity: error:")]
            if lines:
                raise CapacityError(lines[-1].removeprefix("capacity: error: "))
        main = procs[0].out_path
        text = main.read_text(encoding="utf-8", errors="replace")
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
        raise CapacityError(f"Locust refused to start ({main}): {last[0]}")
    return code


def _supervise(
    procs: list[LocustProcess],
    scenario: Scenario,
    say: Callable[[str], None],
    run_dir: Path,
) -> None:
    """Wait for the local process or master to exit, printing progress and worker losses."""
    main = procs[0]
    total_s = scenario.load.total_duration_s
    progress = Progress(run_dir, total_s)
    limit_s = total_s + LOCUST_GRACE_S + (WORKER_CONNECT_WAIT_S if len(procs) > 1 else 0.0)
    next_progress = progress.started + PROGRESS_EVERY_S
    while main.popen.poll() is None:
        time.sleep(0.2)
        now = time.monotonic()
        if now >= next_progress:
            say(progress.line())
            next_progress = now + PROGRESS_EVERY_S
        for proc in procs[1:]:
            if proc.exited_at_s is None and proc.popen.poll() is not None:
                proc.exited_at_s = time.time()
                if proc.popen.returncode != 0:
                    say(f"warning: {proc.name} (pid {proc.pid}) exited with {_describe(proc)}")
        if now - progress.started > limit_s:
            say("Locust did not stop on time; terminating it")
            _terminate(main)
    main.exited_at_s = time.time()


def _stop_leftovers(procs: list[LocustProcess], say: Callable[[str], None]) -> None:
    """Give workers time to quit after the master (it told them to), then end them."""
    deadline = time.monotonic() + WORKER_EXIT_GRACE_S
    for proc in procs:
        while proc.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.popen.poll() is None:
            say(f"warning: {proc.name} (pid {proc.pid}) did not exit; terminating it")
            _terminate(proc)
        if proc.exited_at_s is None:
            proc.exited_at_s = time.time()


def _terminate(proc: LocustProcess) -> None:
    proc.popen.terminate()
    try:
        proc.popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()


def _describe(proc: LocustProcess) -> str:
    code = proc.popen.returncode
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _record_processes(run_dir: Path, procs: list[LocustProcess], signal_name: str | None) -> None:
    """Add the Locust processes, and workers that died before the master, to run.json.

    The master names lost workers itself from missed heartbeats; this adds local workers it
    could not see (killed before their first report) or whose loss it did not live to record.
    """
    path = run_dir / runfolder.RUN_JSON
    meta = runfolder.read_json(path) if path.exists() else {}
    master_end_s = procs[0].exited_at_s or time.time()
    processes: dict[str, Any] = {}
    workers = list(meta.get("workers") or [])
    lost = list(meta.get("lost_workers") or [])
    details = dict(meta.get("lost_worker_details") or {})
    for proc in procs:
        entry: dict[str, Any] = {"pid": proc.pid, "exit_code": proc.popen.returncode}
        if proc.is_worker:
            worker = worker_id_of(proc.pid)
            entry["worker_id"] = worker
            if worker not in workers:
                workers.append(worker)
            died_early = (
                proc.exited_at_s is not None
                and proc.exited_at_s < master_end_s
                and proc.popen.returncode != 0
            )
            if died_early and worker not in lost:
                lost.append(worker)
                details[worker] = {
                    "reason": f"process exited with {_describe(proc)} before the run ended",
                    "detected_at": runfolder.iso_utc(proc.exited_at_s or time.time()),
                }
        processes[proc.name] = entry
    fields: dict[str, Any] = {"locust_processes": processes}
    if len(procs) > 1:
        fields.update(workers=workers, lost_workers=lost, lost_worker_details=details)
    if signal_name:
        fields["stopped_by_signal"] = signal_name
    runfolder.update_run_json(run_dir, **fields)


def run_scenario(
    options: RunOptions, say: Callable[[str], None], *, stack: EmbeddedStack | None = None
) -> RunResult:
    """One measured run, from stack to report; returns the run folder and its summary.

    `stack`: an embedded stack the caller already holds (repeated runs share one); else this
    run takes and releases its own when the scenario uses the embedded stack.
    """
    from capacity.preflight import run_preflight
    from capacity.report.build import build_report

    options = options.absolute()
    scenario = load_scenario(options.scenario_path, time_scale=options.time_scale)
    runfolder.check_reports_root(options.reports_root)
    receiver = TraceRun.open(scenario)  # binds its port now: a busy port stops us before load
    owned = stack is None and scenario.targets.embedded_stack
    if not owned and stack is not None and stack.state is not None and scenario.stack_tuning:
        # A stack held for a series of runs: each run sets its own scenario's knobs.
        from capacity.stack.tuning import apply_tuning

        apply_tuning(stack.state, scenario.stack_tuning)
    if owned:
        stack = EmbeddedStack(
            scenario, options.state_dir, say, share=options.share_stack, keep=options.keep_stack
        )
    elif not scenario.targets.embedded_stack:
        stack = None
    with stack if owned and stack is not None else _Null(), receiver or _Null():
        say("checking targets ...")
        schema_sha256 = run_preflight(scenario)
        run_dir = runfolder.create_run_dir(options.reports_root, scenario.name)
        runfolder.start_run_json(
            run_dir,
            scenario,
            services=stack.pids() if stack else {},
            stack={
                "embedded": stack is not None,
                "started_by_this_run": bool(stack and stack.started),
            },
            **({"repeat": options.repeat} if options.repeat else {}),
            **({"graphql_schema_sha256": schema_sha256} if schema_sha256 else {}),
            **({"reset": options.reset} if options.reset else {}),
        )
        say(f"run folder: {run_dir}")
        if receiver is not None:
            receiver.start(run_dir, say)
        code = run_locust(
            options,
            scenario,
            run_dir,
            say,
            service_pids=stack.pids() if stack else {},
            trace_id_prefix=receiver.prefix if receiver else None,
        )
        if receiver is not None:
            receiver.finish(run_dir, say)
        if stack is not None:
            runfolder.add_problems(run_dir, stack.shared_with(), scope="all")
        runfolder.update_run_json(
            run_dir,
            status="complete",
            ended_at=runfolder.iso_utc(time.time()),
            locust_exit_code=code,
        )
    summary = build_report(run_dir)
    return RunResult(run_dir, summary)


def _start_sampler(
    run_dir: Path,
    scenario: Scenario,
    service_pids: Mapping[str, int],
    procs: list[LocustProcess],
    problems: list[str],
) -> Any:
    from capacity.collect import ProcessSource, Sampler
    from capacity.collect.plan import resource_sources

    try:
        sources = resource_sources(scenario.resources, service_pids)
    except CapacityError as exc:
        problems.append(f"resources not sampled: {exc}")
        sources = []
    sources.append(ProcessSource({p.name: p.pid for p in procs}))
    sampler = Sampler(
        sources,
        run_dir / runfolder.RESOURCES,
        interval_s=1.0,
        on_warning=lambda _message: None,  # collected in sampler.problems, printed at the end
    )
    sampler.start()
    return sampler


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
