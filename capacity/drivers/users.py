"""Build Locust user classes and the load shape from a scenario.

An arrival-rate scenario (`[[load.arrival]]`) gets the same user classes wrapped by
`capacity.drivers.arrival`: one executor per process schedules the iterations and the users
form a pool of `load.max_users` (health users keep their own fixed count and rate).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from locust import LoadTestShape

from capacity.drivers.health import make_health_user
from capacity.drivers.variables import PoolCursor
from capacity.scenario import USER_KINDS, ArrivalStage, Scenario, Stage

CLASS_NAMES = {
    "graphql": "GraphQLUser",
    "rules": "RulesUser",
    "workflows": "WorkflowUser",
    "health": "HealthUser",
    "http": "HttpUser",
}


def build_user_classes(
    scenario: Scenario, kinds: Iterable[str] = USER_KINDS, hooks: Any = None
) -> dict[str, type]:
    """Locust user classes for the scenario's user classes among `kinds`, keyed by class name.

    `hooks` (`capacity.locust_plugin.CapacityHooks`) lets drivers take part in the run's
    slices: Temporal drains its completions before the last one, the arrival executor adds
    its counters to each.
    """
    cursors = {name: PoolCursor(pool) for name, pool in scenario.data.items()}
    targets = scenario.targets
    classes: dict[str, type] = {}
    for kind in kinds:
        spec = scenario.users.get(kind)
        if spec is None:
            continue
        name = CLASS_NAMES[kind]
        if kind == "graphql":
            from capacity.drivers.graphql import make_graphql_user

            classes[name] = make_graphql_user(spec, targets, cursors, name)
        elif kind in ("rules", "http"):
            from capacity.drivers.http import make_http_user

            if kind == "rules":  # the rules form: one configuration of the HTTP driver
                from capacity.scenario.calls import rules_requests

                classes[name] = make_http_user(
                    spec,
                    targets,
                    cursors,
                    name,
                    requests=rules_requests(spec.rule_sets),
                    trace_sample_rate=0.0,
                )
            else:
                from capacity.drivers.chains import compile_chains

                chains = compile_chains(spec, targets, cursors, hooks)
                classes[name] = make_http_user(spec, targets, cursors, name, chains=chains)
        elif kind == "workflows":
            from capacity.drivers.temporal import make_workflow_user

            classes[name] = make_workflow_user(
                spec,
                targets.temporal_address,
                targets.namespace,
                targets.task_queue,
                cursors,
                name,
                hooks=hooks,
                worker_service=targets.worker_service,
            )
        elif kind == "health":
            classes[name] = make_health_user(spec, targets, name)
    if scenario.load.arrival:
        return _arrival_classes(scenario, classes, hooks)
    return classes


def _arrival_classes(scenario: Scenario, classes: dict[str, type], hooks: Any) -> dict[str, type]:
    """Wrap the pool classes (all but health) to take iterations from one arrival executor."""
    from capacity.drivers.arrival import ArrivalExecutor, make_arrival_user

    pool = {
        name: cls
        for name, cls in classes.items()
        if name != CLASS_NAMES["health"] and getattr(cls, "weight", 1) > 0
    }
    if not pool:
        return classes
    executor = ArrivalExecutor(
        scenario.load.arrival, {name: int(getattr(cls, "weight", 1)) for name, cls in pool.items()}
    )
    return {
        name: make_arrival_user(cls, executor, name, hooks) if name in pool else cls
        for name, cls in classes.items()
    }


def build_shape(scenario: Scenario) -> type[LoadTestShape] | None:
    """A LoadTestShape for staged or arrival-rate profiles; None when -u/-r/-t describe the load."""
    if scenario.load.arrival:
        return type(
            "ScenarioShape",
            (ArrivalPoolShape,),
            {"arrival": scenario.load.arrival, "max_users": scenario.load.max_users},
        )
    if not scenario.load.stages:
        return None
    return type("ScenarioShape", (StagesShape,), {"stages": scenario.load.stages})


class StagesShape(LoadTestShape):
    """Runs the scenario's stages in order, then stops the test."""

    abstract = True
    stages: tuple[Stage, ...] = ()

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        elapsed = 0.0
        for stage in self.stages:
            elapsed += stage.duration_s
            if run_time < elapsed:
                return stage.users, stage.spawn_rate
        return None


class ArrivalPoolShape(LoadTestShape):
    """Holds the arrival-rate user pool (plus fixed-count users) for the profile's duration.

    The pool is started within about a second; the executor, not the user count, sets the load.
    """

    abstract = True
    arrival: tuple[ArrivalStage, ...] = ()
    max_users: int = 0

    def tick(self) -> tuple[int, float] | None:
        if self.get_run_time() >= sum(s.duration_s for s in self.arrival):
            return None
        runner = getattr(self, "runner", None)
        classes = getattr(runner, "user_classes", None) or ()
        fixed = sum(int(getattr(c, "fixed_count", 0) or 0) for c in classes)
        users = self.max_users + fixed
        return users, float(max(1, users))
