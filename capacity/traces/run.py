"""A run's tracing: the trace marker, the receiver's life, and what run.json records about it.

`capacity run` opens one before anything starts (so a busy port stops the run before load),
hands the marker to Locust (`--trace-id-prefix`), and after the load waits for the senders'
last batches before it records the receiver's counters in run.json (`traces`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from capacity import runfolder
from capacity.drivers.tracing import new_prefix
from capacity.scenario import Scenario
from capacity.traces.config import TracesConfig
from capacity.traces.receiver import TraceReceiver

QUIET_S = 1.5  # the embedded stack exports every 0.5 s; a collector's batches come sooner


class TraceRun:
    """The receiver of one run and the facts about it that go into run.json."""

    def __init__(self, scenario: Scenario, config: TracesConfig, prefix: str) -> None:
        self.config = config
        self.prefix = prefix
        self.namespace = scenario.targets.namespace
        self.receiver = TraceReceiver(
            prefix, host=config.host, port=config.port, max_spans=config.max_spans
        )

    @classmethod
    def open(cls, scenario: Scenario, prefix: str | None = None) -> TraceRun | None:
        """A bound receiver for a scenario with `[traces]`, else None."""
        if scenario.traces is None:
            return None
        return cls(scenario, scenario.traces, prefix or new_prefix())

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    def meta(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "trace_id_prefix": self.prefix,
            "trace_url": self.config.trace_url,
            "workflow_url": self.config.workflow_url,
            "namespace": self.namespace,
        }

    def start(self, run_dir: Path, say: Callable[[str], None]) -> None:
        runfolder.update_run_json(run_dir, traces=self.meta())
        self.receiver.start(run_dir)
        say(f"receiving spans on {self.endpoint} (trace ids {self.prefix}...)")

    def finish(self, run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
        """Wait for the last batches, record the counters in run.json, say what arrived."""
        self.receiver.wait_quiet(QUIET_S, self.config.flush_wait_s)
        stats = self.receiver.stats.as_json()
        runfolder.update_run_json(run_dir, traces={**self.meta(), **stats})
        if stats["write_error"]:
            runfolder.add_problems(run_dir, [f"spans were lost: {stats['write_error']}"])
        if stats["spans_kept"]:
            say(
                f"traces: {stats['spans_kept']} spans kept, {stats['spans_foreign']} of other "
                f"traces ignored, {stats['spans_over_limit']} over the limit"
            )
        else:
            say(f"no traces received on {self.endpoint} ({stats['spans_foreign']} foreign spans)")
        return stats

    def __enter__(self) -> TraceRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.stop()
