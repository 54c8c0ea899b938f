"""The toolkit's Locust plugin: importing it registers its options and event hooks.

It adds a `capacity` argument group (`--scenario`, `--run-dir`, `--no-preflight`), runs the
preflight checks before any load (a down target stops Locust with one line and exit 2),
and records every request into HDR histogram slices written to the run folder. In distributed
mode workers ship closed slices to the master (see `capacity.distributed`); only the master
(or a local runner) writes files, and SIGINT/SIGTERM stop the load and flush before they do.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from capacity import runfolder
from capacity.distributed import MasterTracker, WorkerShipper
from capacity.errors import CapacityError
from capacity.recorder import SliceRecorder
from capacity.scenario import Scenario, load_scenario

log = logging.getLogger("capacity")

REPO_ROOT = Path(__file__).resolve().parent.parent


def scenario_path(default: str | Path) -> Path:
    """The scenario named by `--scenario` or CAPACITY_SCENARIO, else `default`.

    Read from argv at import time because Locust imports the locustfile (which builds its user
    classes from the scenario) before it parses the command line.
    """
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--scenario" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--scenario="):
            return Path(arg.split("=", 1)[1])
    env = os.environ.get("CAPACITY_SCENARIO")
    return Path(env) if env else Path(default)


def load_active_scenario(default: str | Path) -> Scenario:
    """Load the active scenario for a locustfile; bad input exits 2 with one line."""
    path = scenario_path(default)
    try:
        scenario = load_scenario(path)
    except CapacityError as exc:
        print(f"capacity: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    _state.scenario = scenario
    return scenario


class _State:
    scenario: Scenario | None = None
    recorder: SliceRecorder | None = None
    writer: runfolder.SliceWriter | None = None
    run_dir: Path | None = None
    shipper: WorkerShipper | None = None
    master: MasterTracker | None = None
    ticker: Any = None
    owns_run_json = False


_state = _State()


def current_recorder() -> SliceRecorder | None:
    """This process's recorder, once Locust's init event has run (None before)."""
    return _state.recorder


# Called at test stop before the final slice closes, so in-flight work (Temporal completions)
# lands in the run folder. Each hook waits cooperatively and returns when drained.
before_final_slice: list[Callable[[], None]] = []


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("capacity", "Vextrus capacity toolkit options")
    group.add_argument(
        "--scenario",
        env_var="CAPACITY_SCENARIO",
        default=None,
        help="Scenario TOML file (default: the locustfile's own)",
    )
    group.add_argument(
        "--run-dir",
        env_var="CAPACITY_RUN_DIR",
        default=None,
        help="Run folder for exact latency slices (default: a new folder under reports/)",
    )
    group.add_argument(
        "--no-preflight",
        env_var="CAPACITY_NO_PREFLIGHT",
        action="store_true",
        default=False,
        help="Skip target health checks and GraphQL validation before load",
    )
    group.add_argument(
        "--trace-id-prefix",
        env_var="CAPACITY_TRACE_ID_PREFIX",
        default=None,
        help="8 hex digits every trace id of this run starts with (capacity run sets it)",
    )


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    scenario = _state.scenario
    if scenario is None:
        return
    runner = environment.runner
    options = environment.parsed_options
    worker = runfolder.worker_id()
    sink: Callable[[dict[str, Any]], None]
    if isinstance(runner, WorkerRunner):
        _state.shipper = sink = WorkerShipper(runner, worker)
    else:
        if not getattr(options, "no_preflight", False):
            from capacity.preflight import run_preflight

            try:
                run_preflight(scenario)
            except CapacityError as exc:
                print(f"capacity: error: {exc}", file=sys.stderr)
                sys.exit(exc.exit_code)
        run_dir = _open_run_dir(scenario, options)
        _state.writer = sink = runfolder.SliceWriter(run_dir)
        if isinstance(runner, MasterRunner):
            _state.master = MasterTracker(runner, sink, run_dir)
    user_count = (lambda: runner.user_count) if runner is not None else (lambda: 0)
    _state.recorder = SliceRecorder(sink, worker=worker, users=user_count)
    if not isinstance(runner, MasterRunner):
        environment.events.request.add_listener(_state.recorder.on_request)


def _open_run_dir(scenario: Scenario, options: Any) -> Path:
    """The run folder from `--run-dir` (made if missing) or a new one; run.json if absent."""
    run_dir = Path(options.run_dir) if options and options.run_dir else None
    if run_dir is None:
        run_dir = runfolder.create_run_dir(REPO_ROOT / "reports", scenario.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    _state.run_dir = run_dir
    if not (run_dir / runfolder.RUN_JSON).exists():
        _state.owns_run_json = True
        runfolder.start_run_json(run_dir, scenario)
    return run_dir


def _tick(slice_s: float) -> None:
    recorder = _state.recorder
    assert recorder is not None
    next_s = time.monotonic() + slice_s
    while True:
        gevent.sleep(max(0.0, next_s - time.monotonic()))
        next_s += slice_s
        recorder.close_slice()


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    if _state.recorder is None:
        return
    if _state.run_dir is not None:
        fields: dict[str, Any] = {"load_started_at": round(time.time(), 3)}
        if _state.master is None:
            fields["workers"] = [runfolder.worker_id()]
        runfolder.update_run_json(_state.run_dir, **fields)
    if _state.master is not None:
        _state.master.on_test_start()
        return
    _state.recorder.close_slice()  # discard nothing: slices before start are empty
    slice_s = _state.scenario.load.slice_s if _state.scenario else 2.0
    if _state.ticker is None:
        _state.ticker = gevent.spawn(_tick, slice_s)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if _state.ticker is not None:
        _state.ticker.kill(block=False)
        _state.ticker = None
    if _state.master is not None:
        _state.master.flush()
        return
    if _state.recorder is not None:
        for drain in before_final_slice:
            drain()
        _state.recorder.close_slice()
    if _state.shipper is not None:
        _state.shipper.send_final()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    """Stop the load and flush before anything closes (SIGINT/SIGTERM land here first).

    Locust fires `quitting` before it stops the runner, so without this the last slice
    (closed at test_stop) would find the run folder already closed.
    """
    runner = environment.runner
    if _state.master is not None:
        _state.master.flush()
        _state.master.close()
    elif _state.shipper is not None:
        _state.shipper.on_quitting()
        return
    elif runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING):
        runner.stop()
    if _state.writer is None or _state.run_dir is None:
        return
    _state.writer.close()
    if _state.owns_run_json:
        runfolder.update_run_json(
            _state.run_dir, status="complete", ended_at=runfolder.iso_utc(time.time())
        )
    print(
        f"capacity: exact latencies in {_state.run_dir} "
        f"(render with: capacity report {_state.run_dir})",
        file=sys.stderr,
    )
