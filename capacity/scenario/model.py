"""The validated scenario: frozen objects built once by `capacity.scenario.load_scenario`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capacity.addresses import HttpUrl, parse_http_url
from capacity.endpoints import (
    APOLLO_HEALTH_PATH,
    DEFAULT_NAMESPACE,
    DEFAULT_TASK_QUEUE,
    DEFAULT_TEMPORAL_ADDRESS,
    HEALTH_PATHS,
    default_url,
)
from capacity.slos import SloSpec
from capacity.traces.config import TracesConfig

USER_KINDS = ("graphql", "rules", "workflows", "health", "http")
VARIABLE_CASTS = ("int", "float", "bool", "str")
# Scenario target keys and the service each one names.
TARGET_SERVICES = {
    "gateway": "gateway",
    "master_data": "master-data",
    "workflow": "workflow",
    "rules_engine": "rules-engine",
}
SCHEMA_INTROSPECTION = "introspection"
SCHEMA_OFF = "off"


@dataclass(frozen=True)
class HealthCheck:
    """How to tell a target is up before any load.

    `mode`: `auto` (the gateway: the stack description's path if it answers 2xx, else a
    `{ __typename }` query sent the way Apollo's CSRF prevention accepts), `http` (GET `url`,
    expect `status`), `graphql` (the `{ __typename }` query only), `tcp` or `off` (skipped).
    """

    mode: str = "http"
    url: str = ""
    status: int | None = None


@dataclass(frozen=True)
class GraphQLSettings:
    """How GraphQL traffic is sent and checked (`[targets.graphql]`)."""

    schema: str = SCHEMA_INTROSPECTION  # or "off", or the path of an SDL file
    method: str = "POST"
    persisted_queries: bool = False
    client_name: str = "vextrus-capacity"
    client_version: str = ""

    @property
    def schema_file(self) -> Path | None:
        if self.schema in (SCHEMA_INTROSPECTION, SCHEMA_OFF):
            return None
        return Path(self.schema)


@dataclass(frozen=True)
class Targets:
    gateway_url: str = default_url("gateway")
    master_data_url: str = default_url("master-data")
    workflow_url: str = default_url("workflow")
    rules_url: str = default_url("rules-engine")
    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    embedded_stack: bool = True
    auth_env: str | None = None
    health: Mapping[str, HealthCheck] = field(default_factory=dict)
    graphql: GraphQLSettings = field(default_factory=GraphQLSettings)
    headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    headers_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    worker_service: str = "workflow"  # the service hosting the Temporal workers (reports)

    def url_of(self, key: str) -> HttpUrl:
        """The parsed URL of a target key (`gateway`, `master_data`, ...)."""
        return parse_http_url(
            {
                "gateway": self.gateway_url,
                "master_data": self.master_data_url,
                "workflow": self.workflow_url,
                "rules_engine": self.rules_url,
            }[key]
        )

    def health_checks(self) -> dict[str, HealthCheck]:
        """Health check per service: configured ones, else the stack description's paths."""
        checks: dict[str, HealthCheck] = {}
        for key, service in TARGET_SERVICES.items():
            configured = self.health.get(key)
            url = self.url_of(key)
            if configured is not None:
                if configured.mode == "http" and configured.url.startswith("/"):
                    configured = HealthCheck(
                        "http", url.join(configured.url).plain, configured.status
                    )
                elif configured.mode in ("auto", "graphql", "tcp") and not configured.url:
                    target = url.join(APOLLO_HEALTH_PATH) if configured.mode == "auto" else url
                    configured = HealthCheck(configured.mode, target.plain, configured.status)
                checks[service] = configured
                continue
            if key == "gateway":
                checks[service] = HealthCheck("auto", url.join(APOLLO_HEALTH_PATH).plain)
            else:
                base = url.plain.rstrip("/")
                checks[service] = HealthCheck("http", base + HEALTH_PATHS[service])
        return checks

    def health_urls(self) -> dict[str, str]:
        """Service -> health URL (credentials removed) of checks that have one."""
        return {s: c.url for s, c in self.health_checks().items() if c.mode != "off" and c.url}

    def public_urls(self) -> dict[str, str]:
        """Target URLs as they may be written and printed: credentials removed."""
        out = {service: self.url_of(key).public for key, service in TARGET_SERVICES.items()}
        out["temporal"] = self.temporal_address
        return out

    def schema_source_label(self) -> str:
        schema = self.graphql.schema
        if schema == SCHEMA_INTROSPECTION:
            return "introspection"
        if schema == SCHEMA_OFF:
            return "off (documents not validated)"
        return f"schema file {Path(schema).name}"


@dataclass(frozen=True)
class Stage:
    """Hold `users` concurrent users for `duration_s`, reaching them at `spawn_rate` per second."""

    users: int
    duration_s: float
    spawn_rate: float
    kind: str = "step"


@dataclass(frozen=True)
class ArrivalStage:
    """Start iterations at `rate_per_s` (ramping linearly from the previous stage's rate)."""

    rate_per_s: float
    duration_s: float
    ramp: bool = False


@dataclass(frozen=True)
class LoadProfile:
    users: int = 10
    spawn_rate: float = 5.0
    duration_s: float = 60.0
    warmup_s: float = 0.0
    stages: tuple[Stage, ...] = ()
    arrival: tuple[ArrivalStage, ...] = ()
    max_users: int = 0
    slice_s: float = 2.0

    @property
    def total_duration_s(self) -> float:
        if self.stages:
            return sum(s.duration_s for s in self.stages)
        if self.arrival:
            return sum(s.duration_s for s in self.arrival)
        return self.duration_s

    @property
    def peak_users(self) -> int:
        if self.stages:
            return max(s.users for s in self.stages)
        if self.arrival:
            return self.max_users
        return self.users


@dataclass(frozen=True)
class GraphQLOperation:
    document_path: Path
    document: str
    operation_name: str
    variables: Mapping[str, Any]
    weight: int = 1
    is_query: bool = True


@dataclass(frozen=True)
class RuleCase:
    facts: Mapping[str, Any]
    expect: Mapping[str, Any] | None


@dataclass(frozen=True)
class RuleSetLoad:
    file: Path
    rule_set: str
    cases: tuple[RuleCase, ...]
    weight: int = 1


# --- driving the services' own APIs: [users.http], chains, workflow options (scenario.calls) ---

DEFAULT_SCHEDULE_TO_START_PER_S = 1.0


@dataclass(frozen=True)
class Assertion:
    """A check on an answer: the value at `pointer` equals, exists (or not), or lies in range.

    `label` selects the rules form's message ("wrong outcome: rate expected 0.15, got 0.1").
    """

    pointer: str
    tokens: tuple[str, ...]
    kind: str  # "equals", "exists", "range"
    value: Any = None  # equals: the expected value (may hold references); exists: a bool
    low: float | None = None
    high: float | None = None
    label: str = ""


@dataclass(frozen=True)
class HttpVariant:
    """One body of a request with the assertions on its answer (a rule set has one per case)."""

    body: Any
    assertions: tuple[Assertion, ...] = ()


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request of `[users.http]`, a chain step, or one rule set of `[users.rules]`."""

    name: str  # the operation name: "http <name>", or "rules <RuleSet>"
    method: str
    path: str
    variants: tuple[HttpVariant, ...]
    target: str | None = None  # a [targets] key
    base_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: tuple[int, ...] = ()  # expected statuses; () = any 2xx or 3xx
    extract: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    weight: int = 1
    templated: bool = True  # False: bodies are data, `${` in them is sent as is
    key: str = ""  # the scenario key it came from, for messages


@dataclass(frozen=True)
class WorkflowCall:
    """A signal, query or update sent to a started workflow, its own operation."""

    kind: str  # "signal", "query", "update"
    handler: str
    args: tuple[Any, ...] = ()
    assertions: tuple[Assertion, ...] = ()
    pause_s: float = 0.0


@dataclass(frozen=True)
class WorkflowOptions:
    """How a workflow is started and driven, beyond its type and arguments."""

    id_template: str | None = None
    id_reuse_policy: str | None = None
    id_conflict_policy: str | None = None
    search_attributes: Mapping[str, Any] = field(default_factory=dict)
    memo: Mapping[str, Any] = field(default_factory=dict)
    task_queue: str | None = None
    wait_result: bool = True
    calls: tuple[WorkflowCall, ...] = ()
    extract: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schedule_to_start_per_s: float = DEFAULT_SCHEDULE_TO_START_PER_S


DEFAULT_WORKFLOW_OPTIONS = WorkflowOptions()


@dataclass(frozen=True)
class ChainStep:
    """One step of a chain: an HTTP request or a workflow start (exactly one is set)."""

    request: HttpRequest | None = None
    workflow: WorkflowLoad | None = None


@dataclass(frozen=True)
class Chain:
    """Steps run in order by one user; `chain <name>` is their end-to-end latency."""

    name: str
    steps: tuple[ChainStep, ...]
    weight: int = 1


@dataclass(frozen=True)
class WorkflowLoad:
    workflow_type: str
    args: Any  # a table: the workflow's one argument; an array: its arguments in order
    weight: int = 1
    options: WorkflowOptions | None = None  # None: the defaults


@dataclass(frozen=True)
class UserClass:
    kind: str
    weight: int = 1
    wait_s: tuple[float, float] = (0.5, 1.5)
    operations: tuple[GraphQLOperation, ...] = ()
    rule_sets: tuple[RuleSetLoad, ...] = ()
    workflows: tuple[WorkflowLoad, ...] = ()
    trace_sample_rate: float = 1.0
    timeout_s: float = 30.0
    fixed_count: int = 0
    rate_per_s: float = 0.0
    requests: tuple[HttpRequest, ...] = ()  # [users.http]
    chains: tuple[Chain, ...] = ()


@dataclass(frozen=True)
class DataPool:
    name: str
    path: Path
    rows: tuple[Mapping[str, str], ...]
    mode: str = "cycle"


@dataclass(frozen=True)
class ResourceSelection:
    """What `capacity run` samples besides the load generator (`[resources]`)."""

    host: bool = True
    containers: tuple[str, ...] = ()
    compose_project: str | None = None
    processes: Mapping[str, int | str] = field(default_factory=dict)
    docker_host: str | None = None

    @property
    def any_docker(self) -> bool:
        return bool(self.containers or self.compose_project)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    description: str = ""
    targets: Targets = field(default_factory=Targets)
    load: LoadProfile = field(default_factory=LoadProfile)
    users: Mapping[str, UserClass] = field(default_factory=dict)
    data: Mapping[str, DataPool] = field(default_factory=dict)
    slos: tuple[SloSpec, ...] = ()
    stack_tuning: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stack_keep_state: bool = False  # repeated runs keep the stack's state (no reset between)
    resources: ResourceSelection = field(default_factory=ResourceSelection)
    time_scale: float = 1.0
    traces: TracesConfig | None = None  # [traces]: the run's OTLP receiver (capacity.traces)

    def slos_of(self, kind: str) -> tuple[SloSpec, ...]:
        return tuple(s for s in self.slos if s.kind == kind)


# One request per iteration: the closed-loop think time is the mean wait.
ONE_REQUEST_KINDS = frozenset({"graphql", "rules"})


def think_time_s(users: Mapping[str, UserClass]) -> float | None:
    """Mean think time of a closed loop, or None when Little's law cannot use one.

    Known only when every user class sends one request per iteration (graphql, rules) and
    none is a fixed-count class (health checks pace themselves); workflow users send two.
    """
    classes = list(users.values())
    if not classes or any(c.kind not in ONE_REQUEST_KINDS or c.fixed_count > 0 for c in classes):
        return None
    total_weight = sum(c.weight for c in classes)
    if total_weight <= 0:
        return None
    return sum(c.weight * (c.wait_s[0] + c.wait_s[1]) / 2.0 for c in classes) / total_weight
