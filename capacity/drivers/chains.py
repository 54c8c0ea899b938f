"""Request chains: steps run in order by one user, values of one answer feeding the next step.

A chain (`[[users.http.chains]]`) is HTTP requests and workflow starts in order; a step's
`extract` takes values from its answer (or, for a workflow step, from its result) by JSON
pointer into the chain's own values, which later steps read as `${chain.name}`. Each step
is reported as its own operation (`http <name>`, `workflow start <Type>`, ...) and the whole
chain as `chain <name>`: its end-to-end latency, a failure naming the step that failed (the
chain stops there). The values live in one dict per run of the chain, in the user's greenlet,
so concurrent users never see each other's ids.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capacity.drivers.http import CompiledRequest, compile_request
from capacity.drivers.variables import PoolCursor
from capacity.scenario import Targets, UserClass
from capacity.scenario.model import Chain

REQUEST_TYPE = "chain"


@dataclass
class CompiledChain:
    name: str
    weight: int
    steps: list[Any]  # CompiledRequest or CompiledWorkflow
    base_url: str
    targets: Targets

    def run(self, user: Any) -> None:
        """Run the steps in order in this user's greenlet; report `chain <name>` at the end."""
        values: dict[str, Any] = {}
        # Under an arrival rate the context carries the iteration's intended start: it belongs
        # to the chain, whose latency it corrects; a step's own latency starts at its send.
        ctx = user.context()
        step_ctx: dict[str, Any] = {}
        start_time = time.time()
        t0 = time.perf_counter()
        failure: str | None = None
        for step in self.steps:
            if isinstance(step, CompiledRequest):
                body, error = user.send(step, user.headers_for(step), values, step_ctx)
                if body is None:
                    failure = f"{step.name}: {error}"[:200]
            else:
                failure = self._workflow(user, step, step_ctx, values)
            if failure is not None:
                break
        user.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=self.name,
            response_time=(time.perf_counter() - t0) * 1000.0,
            response_length=0,
            exception=failure,
            context=ctx,
            start_time=start_time,
            url=None,
        )

    def _workflow(
        self, user: Any, flow: Any, ctx: dict[str, Any], values: dict[str, Any]
    ) -> str | None:
        from capacity.drivers.temporal import fire_for, run_workflow, session_for

        targets = self.targets
        session = session_for(targets.temporal_address, targets.namespace, targets.worker_service)
        fire = fire_for(user.environment.events.request.fire)
        return run_workflow(session, fire, flow, ctx, values)


def compile_chains(
    spec: UserClass, targets: Targets, cursors: Mapping[str, PoolCursor], hooks: Any = None
) -> list[CompiledChain]:
    """The chains of `[users.http]`; when one starts workflows, the Temporal driver joins the
    run's slices (`hooks`: drain completions before the last one, the saturation probe)."""
    if any(step.workflow is not None for c in spec.chains for step in c.steps):
        from capacity.drivers.temporal import install_hooks

        install_hooks(hooks, targets.worker_service)
    return [compile_chain(c, targets, cursors, spec.timeout_s) for c in spec.chains]


def compile_chain(
    chain: Chain, targets: Targets, cursors: Mapping[str, PoolCursor], timeout_s: float
) -> CompiledChain:
    steps: list[Any] = []
    for step in chain.steps:
        if step.request is not None:
            steps.append(compile_request(step.request, targets, cursors))
        else:
            from capacity.drivers.temporal import compile_workflow

            assert step.workflow is not None
            steps.append(compile_workflow(step.workflow, targets.task_queue, timeout_s, cursors))
    first = next((s.base_url for s in steps if isinstance(s, CompiledRequest)), None)
    base_url = first or targets.workflow_url.rstrip("/")
    return CompiledChain(f"chain {chain.name}", chain.weight, steps, base_url, targets)
