"""Build Locust user classes and the load shape from a scenario."""

from __future__ import annotations

from collections.abc import Iterable

from locust import LoadTestShape

from capacity.drivers.health import make_health_user
from capacity.drivers.rules import make_rules_user
from capacity.drivers.variables import PoolCursor
from capacity.preflight import auth_headers
from capacity.scenario import USER_KINDS, Scenario, Stage

CLASS_NAMES = {
    "graphql": "GraphQLUser",
    "rules": "RulesUser",
    "workflows": "WorkflowUser",
    "health": "HealthUser",
}


def build_user_classes(scenario: Scenario, kinds: Iterable[str] = USER_KINDS) -> dict[str, type]:
    """Locust user classes for the scenario's user classes among `kinds`, keyed by class name."""
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

            auth = auth_headers(scenario).get("Authorization")
            classes[name] = make_graphql_user(spec, targets.gateway_url, cursors, auth, name)
        elif kind == "rules":
            classes[name] = make_rules_user(spec, targets.rules_url, name)
        elif kind == "workflows":
            from capacity.drivers.temporal import make_workflow_user

            classes[name] = make_workflow_user(
                spec, targets.temporal_address, targets.namespace, targets.task_queue, cursors, name
            )
        elif kind == "health":
            classes[name] = make_health_user(spec, targets.health_urls(), name)
    return classes


def build_shape(scenario: Scenario) -> type[LoadTestShape] | None:
    """A LoadTestShape for staged profiles; None when -u/-r/-t describe the load."""
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
