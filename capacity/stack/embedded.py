"""The embedded stack for one run: held under a lease, started unless up, stopped if ours.

A stack another run holds is refused (or shared knowingly with `--share-stack`); a stack
left by a killed run is stopped and started afresh rather than reused; the services a run
starts end with it, even when it is killed with SIGKILL (`capacity.stack.lease`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from capacity.addresses import parse_host_port
from capacity.endpoints import DEFAULT_PORTS
from capacity.errors import StackError
from capacity.scenario import Scenario
from capacity.stack.lease import StackLease


def stack_ports(scenario: Scenario) -> dict[str, int]:
    """Ports of the embedded stack, taken from the scenario's target URLs."""
    t = scenario.targets
    temporal = parse_host_port(t.temporal_address)[1]
    ports = {
        "gateway": t.url_of("gateway").port,
        "master-data": t.url_of("master_data").port,
        "workflow": t.url_of("workflow").port,
        "rules-engine": t.url_of("rules_engine").port,
        "temporal": temporal,
    }
    if temporal != DEFAULT_PORTS["temporal"]:
        # Temporal's HTTP and metrics ports follow its gRPC port as 7243/7244 follow 7233, so
        # a second stack on other ports does not collide with the first one's.
        ports["temporal-http"] = temporal + 10
        ports["temporal-metrics"] = temporal + 11
    return ports


class EmbeddedStack:
    """Context manager: the stack for a run (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        state_dir: Path,
        say: Callable[[str], None],
        *,
        share: bool = False,
        keep: bool = False,
    ) -> None:
        self.scenario = scenario
        self.state_dir = state_dir
        self.say = say
        self.share = share
        self.keep = keep
        self.started = False
        self.state: Any = None
        self.config: Any = None
        self.lease = StackLease(state_dir, f"capacity run {scenario.name}")
        # where its services send spans: the run's [traces] receiver (None: no tracing)
        self.otlp_endpoint = scenario.traces.endpoint if scenario.traces else None

    def __enter__(self) -> EmbeddedStack:
        from capacity.stack import supervisor

        self.lease.acquire(share=self.share)
        try:
            if self.lease.shared:
                self.say(f"sharing the embedded stack another run holds ({self.state_dir})")
            existing = supervisor.status(self.state_dir)
            if existing is not None and not existing.owner_gone:
                if not self.lease.shared:
                    self.say(f"using the embedded stack already running ({self.state_dir})")
                self.state = existing
                exporting = getattr(existing, "otlp_endpoint", None)
                if self.otlp_endpoint and exporting != self.otlp_endpoint:
                    self.say(
                        f"warning: the running stack sends spans to {exporting or 'nowhere'}, "
                        f"not to this run's receiver ({self.otlp_endpoint}): restart it with "
                        "`capacity stack down` to see its traces"
                    )
                if self.scenario.stack_tuning:
                    from capacity.stack.tuning import apply_tuning

                    apply_tuning(existing, self.scenario.stack_tuning)
                return self
            if self.lease.shared:
                raise StackError(f"no embedded stack is running in {self.state_dir} to share")
            self.say("starting the embedded stack ...")
            config = supervisor.StackConfig(
                state_dir=self.state_dir,
                ports=stack_ports(self.scenario),
                tuning={k: dict(v) for k, v in self.scenario.stack_tuning.items()},
                otlp_endpoint=self.otlp_endpoint,
            )
            self.config = config
            self.state = supervisor.up(
                config, progress=lambda line: self.say(f"  {line}"), tie_to_parent=not self.keep
            )
            self.started = True
            return self
        except BaseException:
            self.lease.release()
            raise

    def reset(self) -> str:
        """Restart the stack this run started, so the next run meets the same system: a fresh
        Temporal database, PostgreSQL data and service state (they grow with every run: the
        Temporal server kept every finished workflow, 194 -> 320 MB over 12 runs). Returns
        what was done, for run.json."""
        from capacity.stack import supervisor

        if not self.started or self.config is None:
            return "not reset: the embedded stack was already running when this run began"
        self.say("resetting the embedded stack (fresh Temporal, PostgreSQL and service state) ...")
        supervisor.down(self.state_dir)
        self.state = supervisor.up(self.config, tie_to_parent=not self.keep)
        return "embedded stack restarted before this run (fresh Temporal, PostgreSQL and state)"

    def pids(self) -> dict[str, int]:
        from capacity.stack import supervisor

        return supervisor.service_pids(self.state) if self.state is not None else {}

    def shared_with(self) -> list[str]:
        """Why this run's figures may include another run's load (empty: they do not)."""
        if self.lease.shared:
            return ["this run shared the embedded stack with another run (--share-stack)"]
        others = self.lease.sharers_seen()
        if others:
            return [f"shared: another run used the embedded stack during this one ({others[0]})"]
        return []

    def __exit__(self, *exc: object) -> None:
        from capacity.stack import supervisor

        try:
            if not self.started or self.keep:
                return
            live = self.lease.live_sharers()
            if live:
                self.say(
                    f"leaving the embedded stack running: run(s) {', '.join(live)} still use "
                    "it (`capacity stack down` stops it)"
                )
                return
            self.say("stopping the embedded stack ...")
            try:
                supervisor.down(self.state_dir)
            except StackError as err:
                self.say(f"warning: {err}")
        finally:
            self.lease.release()
