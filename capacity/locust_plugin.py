"""The toolkit's Locust plugin: options, preflight, exact recording, the run folder, the verdict.

Importing it adds a `capacity` argument group to Locust's command line (`--scenario`,
`--run-dir`, `--reports`, `--no-preflight`, `--time-scale`, ...: see `locust -f X --help`).
A locustfile calls `locustfile_users(...)`, which loads the active scenario, installs one
`CapacityPlugin` on Locust's events and returns the user classes to export.

The plugin runs the preflight checks before any load (a down target stops Locust with one line
and exit 2), records every request into HDR histogram slices written to the run folder, and
in distributed mode ships workers' slices to the master (`capacity.distributed`); only the
master (or a local runner) writes files. A plain `locust -f` run writes the same run folder
as `capacity run` (run.json metadata, slices, resources of the known services) and, at the
end, prints the SLO verdict and exits with its code: 0 pass, 1 an SLO failed, 3 inconclusive.
Under `capacity run` (which writes run.json first) the plugin leaves the verdict to it and
exits 0 after a clean flush, so any other exit code means the load generator broke.

Drivers extend the plugin through its own events (`CapacityHooks`), passed to them as an
argument: nothing here is a module-level registry.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.event import EventHook
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from capacity import runfolder, shipped
from capacity.distributed import MasterTracker, WorkerShipper
from capacity.errors import EXIT_INTERNAL, EXIT_PASS, CapacityError, RunFolderError
from capacity.recorder import SliceRecorder
from capacity.report.text import verdict_text
from capacity.scenario import USER_KINDS, Scenario, load_scenario

log = logging.getLogger("capacity")


class CapacityHooks:
    """The toolkit's own events, beside Locust's.

    `before_final_slice` fires at test stop before the last slice closes; a listener returns
    once its in-flight work (Temporal completions) is recorded. `slice_closing` fires with
    `record=` (a dict) before each slice is written; a listener may add fields to it.
    """

    def __init__(self) -> None:
        self.before_final_slice = EventHook()
        self.slice_closing = EventHook()


def argv_value(flag: str, argv: list[str] | None = None) -> str | None:
    """`--flag X` or `--flag=X` from the command line, read before Locust parses it (Locust
    imports the locustfile, which needs the scenario, before it parses its options)."""
    args = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def load_active_scenario(default: str) -> Scenario:
    """The scenario named by `--scenario` or CAPACITY_SCENARIO, else the shipped scenario
    `default`, scaled by `--time-scale`; bad input exits 2 with one line."""
    import os

    try:
        chosen = argv_value("--scenario") or os.environ.get("CAPACITY_SCENARIO")
        path = Path(chosen) if chosen else shipped.scenario_path(str(default))
        scale_text = argv_value("--time-scale") or os.environ.get("CAPACITY_TIME_SCALE")
        try:
            scale = float(scale_text) if scale_text else 1.0
        except ValueError:
            raise CapacityError(f"--time-scale: expected a number, got '{scale_text}'") from None
        return load_scenario(path, time_scale=scale)
    except CapacityError as exc:
        print(f"capacity: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def locustfile_users(default: str, kinds: Iterable[str] = USER_KINDS) -> dict[str, type]:
    """What a locustfile exports: the active scenario's user classes (and load shape), with
    the plugin installed on Locust's events."""
    from capacity.drivers.users import build_shape, build_user_classes

    scenario = load_active_scenario(default)
    plugin = CapacityPlugin(scenario)
    plugin.install(events)
    classes = build_user_classes(scenario, kinds, hooks=plugin.hooks)
    shape = build_shape(scenario)
    if shape is not None:
        classes["ScenarioShape"] = shape
    return classes


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("capacity", "Vextrus capacity toolkit options")
    group.add_argument(
        "--scenario",
        env_var="CAPACITY_SCENARIO",
        default=None,
        help="Scenario TOML file (default: the locustfile's own shipped scenario)",
    )
    group.add_argument(
        "--run-dir",
        env_var="CAPACITY_RUN_DIR",
        default=None,
        help="Run folder for exact latencies, resources and the verdict (default: a new folder "
        "under --reports)",
    )
    group.add_argument(
        "--reports",
        env_var="CAPACITY_REPORTS",
        default="reports",
        help="Folder that receives new run folders (default: ./reports)",
    )
    group.add_argument(
        "--state-dir",
        env_var="CAPACITY_STATE_DIR",
        default=None,
        help="Embedded stack state folder whose services a run samples (default: .capacity/stack)",
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
    group.add_argument(
        "--time-scale",
        env_var="CAPACITY_TIME_SCALE",
        default=None,
        help="Multiply every duration of the scenario by this factor (e.g. 0.1)",
    )
    group.add_argument(
        "--arrival-split",
        env_var="CAPACITY_ARRIVAL_SPLIT",
        default=None,
        help="index/count: this process's share of an arrival-rate scenario's iterations",
    )
    group.add_argument(
        "--arrival-workers",
        env_var="CAPACITY_ARRIVAL_WORKERS",
        type=int,
        default=None,
        help="On a worker: how many workers share the arrival rate (default: the whole rate)",
    )


class CapacityPlugin:
    """One per Locust process: the scenario, its recorder and, on the writer, the run folder."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.hooks = CapacityHooks()
        self.recorder: SliceRecorder | None = None
        self.writer: runfolder.SliceWriter | None = None
        self.run_dir: Path | None = None
        self.shipper: WorkerShipper | None = None
        self.master: MasterTracker | None = None
        self.ticker: Any = None
        self.runner: Any = None
        self.options: Any = None
        self.schema_sha256: str | None = None
        self.sampler: Any = None
        self.owns_run = False  # a plain `locust -f` run: this process judges and exits with it
        self.problems: list[str] = []
        self.traces: Any = None  # a plain run's trace receiver (capacity run has its own)

    def install(self, locust_events: Any) -> None:
        locust_events.init.add_listener(self.on_init)
        locust_events.test_start.add_listener(self.on_test_start)
        locust_events.test_stop.add_listener(self.on_test_stop)
        locust_events.quitting.add_listener(self.on_quitting)

    # -- events --------------------------------------------------------------------------
    def on_init(self, environment: Environment, **_: Any) -> None:
        runner = self.runner = environment.runner
        options = self.options = environment.parsed_options
        worker = runfolder.worker_id()
        sink: Any
        if isinstance(runner, WorkerRunner):
            self.shipper = sink = WorkerShipper(runner, worker)
        else:
            if not getattr(options, "no_preflight", False):
                from capacity.preflight import run_preflight

                try:
                    self.schema_sha256 = run_preflight(self.scenario)
                except CapacityError as exc:
                    print(f"capacity: error: {exc}", file=sys.stderr)
                    sys.exit(exc.exit_code)
            try:
                self.run_dir = self._open_run_dir(options)
                self.writer = runfolder.SliceWriter(self.run_dir)
                if self.owns_run and self.scenario.traces is not None:
                    self._start_traces(options)
            except CapacityError as exc:
                print(f"capacity: error: {exc}", file=sys.stderr)
                sys.exit(exc.exit_code)
            sink = self._write_slice
            if isinstance(runner, MasterRunner):
                self.master = MasterTracker(runner, sink, self.run_dir)
        users = (lambda: runner.user_count) if runner is not None else (lambda: 0)
        self.recorder = SliceRecorder(
            sink,
            worker=worker,
            users=users,
            on_close=lambda record: self.hooks.slice_closing.fire(record=record),
        )
        if not isinstance(runner, MasterRunner):
            environment.events.request.add_listener(self.recorder.on_request)

    def _start_traces(self, options: Any) -> None:
        """A plain run of a scenario with `[traces]` receives its spans as `capacity run` does.

        The trace marker is `--trace-id-prefix` or a new one, set on the options so this
        process's users use it; workers of a distributed plain run need the same option.
        """
        from capacity.drivers.tracing import new_prefix
        from capacity.traces.run import TraceRun

        assert self.run_dir is not None and self.scenario.traces is not None
        prefix = getattr(options, "trace_id_prefix", None) or new_prefix()
        if options is not None:
            options.trace_id_prefix = prefix
        self.traces = TraceRun(self.scenario, self.scenario.traces, prefix)
        self.traces.start(self.run_dir, log.info)

    def _open_run_dir(self, options: Any) -> Path:
        """`--run-dir` (made if missing) or a new folder under `--reports`; run.json is written
        here unless `capacity run` already wrote it (then that process owns the verdict)."""
        if options is not None and options.run_dir:
            run_dir = Path(options.run_dir).absolute()
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunFolderError(
                    f"{run_dir}: cannot create run folder: {runfolder.describe_os_error(exc)}"
                ) from None
        else:
            reports = Path(getattr(options, "reports", None) or "reports")
            run_dir = runfolder.create_run_dir(reports, self.scenario.name)
        if not (run_dir / runfolder.RUN_JSON).exists():
            self.owns_run = True
            extra = {"graphql_schema_sha256": self.schema_sha256} if self.schema_sha256 else {}
            runfolder.start_run_json(run_dir, self.scenario, **extra)
            self._record_command_line_load(run_dir, options)
        return run_dir

    def _record_command_line_load(self, run_dir: Path, options: Any) -> None:
        """`-u`, `-r` and `-t` replace a closed-model scenario's users and duration: run.json
        records the load this run was asked for, which its length is judged against."""
        load = self.scenario.load
        if load.stages or load.arrival or options is None:
            return
        users = getattr(options, "num_users", None)
        run_time = getattr(options, "run_time", None)
        if users is None and run_time is None:
            return
        meta = runfolder.read_meta(run_dir)
        planned = dict(meta.get("load") or {})
        if users is not None:
            planned["users"] = int(users)
        if getattr(options, "spawn_rate", None) is not None:
            planned["spawn_rate"] = float(options.spawn_rate)
        planned["duration_s"] = float(run_time) if run_time else None
        runfolder.update_run_json(run_dir, load=planned)

    def _write_slice(self, record: dict[str, Any]) -> None:
        assert self.writer is not None
        try:
            self.writer(record)
        except RunFolderError as exc:
            # Keep what was measured, stop the load: a run with a hole must not go on.
            self.problems.append(f"the run stopped early: {exc}")
            log.error("capacity: %s; stopping the run", exc)
            if self.recorder is not None and self.writer.error is not None:
                gevent.spawn(self._stop_runner)

    def _stop_runner(self) -> None:
        runner = self.runner
        if runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING):
            runner.stop()

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        if self.recorder is None:
            return
        if self.run_dir is not None:
            fields: dict[str, Any] = {"load_started_at": round(time.time(), 3)}
            if self.master is None:
                fields["workers"] = [runfolder.worker_id()]
            runfolder.update_run_json(self.run_dir, **fields)
            if self.owns_run and self.sampler is None:
                self.sampler = self._start_sampler()
        if self.master is not None:
            self.master.on_test_start()
            return
        self.recorder.close_slice()  # discard nothing: slices before start are empty
        if self.ticker is None:
            self.ticker = gevent.spawn(self._tick, self.scenario.load.slice_s)

    def _tick(self, slice_s: float) -> None:
        recorder = self.recorder
        assert recorder is not None
        next_s = time.monotonic() + slice_s
        while True:
            gevent.sleep(max(0.0, next_s - time.monotonic()))
            next_s += slice_s
            recorder.close_slice()

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.ticker is not None:
            self.ticker.kill(block=False)
            self.ticker = None
        if self.master is not None:
            self.master.flush()
            return
        if self.recorder is not None:
            self.hooks.before_final_slice.fire()
            self.recorder.close_slice()
        if self.shipper is not None:
            self.shipper.send_final()

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        """Stop the load and flush before anything closes (SIGINT/SIGTERM land here first).

        Locust fires `quitting` before it stops the runner, so without this the last slice
        (closed at test_stop) would find the run folder already closed.
        """
        runner = environment.runner
        if self.master is not None:
            self.master.flush()
            self.master.close()
        elif self.shipper is not None:
            self.shipper.on_quitting()
            return
        elif runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING):
            runner.stop()
        if self.writer is None or self.run_dir is None:
            return
        self.writer.close()
        if self.sampler is not None:
            self.sampler.stop()
            self.problems += self.sampler.problems
        if self.writer.error and not any(self.writer.error in p for p in self.problems):
            self.problems.append(f"the run stopped early: {self.writer.error}")
        if self.traces is not None:  # the senders' last batches, then the receiver's counters
            self.traces.finish(self.run_dir, log.info)
            self.traces.receiver.stop()
        try:
            runfolder.add_problems(self.run_dir, self.problems)
            if self.owns_run:
                environment.process_exit_code = self._judge()
            else:
                # Under `capacity run`: 0 says the flush was clean; the runner judges.
                environment.process_exit_code = EXIT_PASS if not self.writer.error else 3
        except CapacityError as exc:
            print(f"capacity: error: {exc}", file=sys.stderr)
            environment.process_exit_code = exc.exit_code

    def _judge(self) -> int:
        """The end of a plain `locust -f` run: status, report, verdict line, exit code."""
        from capacity.errors import exit_code_for
        from capacity.report.build import build_report

        assert self.run_dir is not None
        runfolder.update_run_json(
            self.run_dir, status="complete", ended_at=runfolder.iso_utc(time.time())
        )
        try:
            summary = build_report(self.run_dir)
        except CapacityError:
            raise
        except Exception:  # a bug in analysis: the measurements stay; say where they are
            log.exception("capacity: analysis failed")
            print(
                f"capacity: internal error while analysing {self.run_dir}; the measurements are "
                f"kept there (capacity report {self.run_dir} retries)",
                file=sys.stderr,
            )
            return EXIT_INTERNAL
        print(verdict_text(summary, self.run_dir), file=sys.stderr)
        return exit_code_for(summary["verdict"])

    def _start_sampler(self) -> Any:
        """Resources of a plain `locust -f` run: this process, the embedded stack's services
        when one is running here, and the scenario's `[resources]`."""
        import os

        from capacity.collect import ProcessSource, Sampler
        from capacity.collect.plan import resource_sources
        from capacity.stack import supervisor

        assert self.run_dir is not None
        pids: dict[str, int] = {}
        if self.scenario.targets.embedded_stack:
            state_dir = getattr(self.options, "state_dir", None) or supervisor.DEFAULT_STATE_DIR
            try:
                state = supervisor.status(Path(state_dir))
            except CapacityError as exc:
                self.problems.append(f"embedded stack not sampled: {exc}")
                state = None
            if state is not None:
                pids = supervisor.service_pids(state)
        try:
            sources = resource_sources(self.scenario.resources, pids)
        except CapacityError as exc:
            self.problems.append(f"resources not sampled: {exc}")
            return None
        name = "locust-master" if self.master is not None else "locust"
        sources.append(ProcessSource({name: os.getpid()}))
        return Sampler(sources, self.run_dir / runfolder.RESOURCES, interval_s=1.0).start()
