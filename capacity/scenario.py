"""Load and validate scenario TOML files into frozen objects.

Validation happens once, at load time, so that a typo stops the run before any load is sent:
every unknown key, wrong type or missing file raises `ConfigError` naming the file and key.
`scenarios/README.md` documents every key; `tests/test_scenario.py` keeps the two in step.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from capacity.errors import ConfigError

if TYPE_CHECKING:  # loaded by capacity.scenario_calls, which imports this module
    from capacity.scenario_calls import Chain, HttpRequest, WorkflowOptions

DEFAULT_GATEWAY_URL = "http://127.0.0.1:4000/graphql"
DEFAULT_MASTER_DATA_URL = "http://127.0.0.1:3010"
DEFAULT_WORKFLOW_URL = "http://127.0.0.1:3011"
DEFAULT_RULES_URL = "http://127.0.0.1:3012"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "vextrus"
DEFAULT_TASK_QUEUE = "vextrus-erp"
USER_KINDS = ("graphql", "rules", "workflows", "health", "http")
VARIABLE_CASTS = ("int", "float", "bool", "str")


@dataclass(frozen=True)
class Targets:
    gateway_url: str = DEFAULT_GATEWAY_URL
    master_data_url: str = DEFAULT_MASTER_DATA_URL
    workflow_url: str = DEFAULT_WORKFLOW_URL
    rules_url: str = DEFAULT_RULES_URL
    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    embedded_stack: bool = True
    auth_env: str | None = None
    worker_service: str = "workflow"  # the service hosting the Temporal workers (reports)

    def health_urls(self) -> dict[str, str]:
        """Health endpoint per service, as the stack description lists them."""
        gateway = urlsplit(self.gateway_url)
        return {
            "gateway": f"{gateway.scheme}://{gateway.netloc}/.well-known/apollo/server-health",
            "master-data": f"{self.master_data_url.rstrip('/')}/health",
            "workflow": f"{self.workflow_url.rstrip('/')}/health",
            "rules-engine": f"{self.rules_url.rstrip('/')}/health",
        }


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


@dataclass(frozen=True)
class WorkflowLoad:
    workflow_type: str
    args: Any  # a table: the workflow's one argument; an array: its arguments in order
    weight: int = 1
    options: WorkflowOptions | None = None  # None: the defaults (capacity.scenario_calls)


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
    requests: tuple[HttpRequest, ...] = ()  # [users.http] (capacity.scenario_calls)
    chains: tuple[Chain, ...] = ()


@dataclass(frozen=True)
class DataPool:
    name: str
    path: Path
    rows: tuple[Mapping[str, str], ...]
    mode: str = "cycle"


@dataclass(frozen=True)
class OperationSlo:
    pattern: str
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None


@dataclass(frozen=True)
class ServiceSlo:
    pattern: str
    cpu_cores: float | None = None
    mem_mb: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    description: str = ""
    targets: Targets = field(default_factory=Targets)
    load: LoadProfile = field(default_factory=LoadProfile)
    users: Mapping[str, UserClass] = field(default_factory=dict)
    data: Mapping[str, DataPool] = field(default_factory=dict)
    operation_slos: tuple[OperationSlo, ...] = ()
    service_slos: tuple[ServiceSlo, ...] = ()
    stack_tuning: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def slos_for_operation(self, operation: str) -> list[OperationSlo]:
        return [s for s in self.operation_slos if fnmatch.fnmatchcase(operation, s.pattern)]

    def slos_for_service(self, service: str) -> list[ServiceSlo]:
        return [s for s in self.service_slos if fnmatch.fnmatchcase(service, s.pattern)]


class _Section:
    """A TOML table being read: tracks which keys were consumed so leftovers are errors."""

    def __init__(self, file: Path, key: str, table: Any) -> None:
        self.file = file
        self.key = key
        if not isinstance(table, dict):
            raise self.error(key, f"expected a table, got {_type_name(table)}")
        self.table: dict[str, Any] = table
        self.seen: set[str] = set()

    def error(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.file}: key '{key}': {what}")

    def path(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(self.path(key), f"expected {_kinds_name(kinds)}, got boolean")
        if not isinstance(value, kinds):
            raise self.error(
                self.path(key), f"expected {_kinds_name(kinds)}, got {_type_name(value)}"
            )
        return value

    def require(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.table:
            raise self.error(self.path(key), "is required")
        return self.get(key, kind)

    def positive(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.get(key, float, default)
        if value < 0 or (value == 0 and not allow_zero):
            raise self.error(self.path(key), f"must be {'>= 0' if allow_zero else '> 0'}")
        return float(value)

    def sub(self, key: str) -> _Section | None:
        self.seen.add(key)
        if key not in self.table:
            return None
        return _Section(self.file, self.path(key), self.table[key])

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.error(self.path(unknown[0]), "unknown key")


def _type_name(value: Any) -> str:
    return {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _kinds_name(kinds: tuple[type, ...]) -> str:
    names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}
    names[dict] = "table"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_scenario(path: str | Path, *, time_scale: float | None = None) -> Scenario:
    """Read and validate a scenario file; raise ConfigError naming file and key on any problem.

    `time_scale` (default: the CAPACITY_TIME_SCALE environment variable, else 1) multiplies
    every duration, so a soak scenario can be smoke-checked in seconds.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: scenario file not found")
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    root = _Section(file, "", raw)
    base = file.parent

    meta = root.sub("scenario")
    name = file.stem
    description = ""
    if meta:
        name = meta.get("name", str, name)
        description = meta.get("description", str, "")
        meta.finish()

    targets = _load_targets(root.sub("targets"))
    load = _load_profile(root.sub("load"))
    data = _load_data(root.sub("data"), base)
    users = _load_users(root.sub("users"), base, data)
    if not users:
        raise root.error("users", "at least one user class is required")
    op_slos, svc_slos = _load_slos(root.sub("slos"))
    tuning = _load_tuning(root.sub("stack"))
    root.finish()
    scale = time_scale if time_scale is not None else _env_time_scale()
    if scale != 1.0:
        load = scale_durations(load, scale)
    scenario = Scenario(
        name=name,
        path=file,
        description=description,
        targets=targets,
        load=load,
        users=users,
        data=data,
        operation_slos=op_slos,
        service_slos=svc_slos,
        stack_tuning=tuning,
    )
    check_allowed_hosts(scenario)
    _check_calls(scenario)
    return scenario


def _check_calls(scenario: Scenario) -> None:
    """Checks of `[users.http]` that need the whole scenario (capacity.scenario_calls)."""
    from capacity.scenario_calls import check_request_hosts

    check_request_hosts(scenario)


TIME_SCALE_ENV = "CAPACITY_TIME_SCALE"


def _env_time_scale() -> float:
    raw = os.environ.get(TIME_SCALE_ENV)
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {TIME_SCALE_ENV}: not a number: '{raw}'") from None
    if not 0 < value <= 100:
        raise ConfigError(f"environment variable {TIME_SCALE_ENV}: must be in (0, 100], got {raw}")
    return value


def scale_durations(load: LoadProfile, scale: float) -> LoadProfile:
    """The same profile with every duration multiplied by `scale` (slices stay as they are)."""
    return replace(
        load,
        duration_s=load.duration_s * scale,
        warmup_s=load.warmup_s * scale,
        stages=tuple(replace(st, duration_s=st.duration_s * scale) for st in load.stages),
        arrival=tuple(replace(st, duration_s=st.duration_s * scale) for st in load.arrival),
    )


def _load_targets(sec: _Section | None) -> Targets:
    if sec is None:
        return Targets()
    defaults = Targets()
    hosts = sec.get("allowed_hosts", list, list(defaults.allowed_hosts))
    if not all(isinstance(h, str) for h in hosts) or not hosts:
        raise sec.error(sec.path("allowed_hosts"), "expected a non-empty array of host names")
    targets = Targets(
        gateway_url=sec.get("gateway", str, defaults.gateway_url),
        master_data_url=sec.get("master_data", str, defaults.master_data_url),
        workflow_url=sec.get("workflow", str, defaults.workflow_url),
        rules_url=sec.get("rules_engine", str, defaults.rules_url),
        temporal_address=sec.get("temporal", str, defaults.temporal_address),
        namespace=sec.get("namespace", str, defaults.namespace),
        task_queue=sec.get("task_queue", str, defaults.task_queue),
        allowed_hosts=tuple(hosts),
        embedded_stack=sec.get("embedded_stack", bool, defaults.embedded_stack),
        auth_env=sec.get("auth_env", str, None),
        worker_service=sec.get("worker_service", str, defaults.worker_service),
    )
    for key in ("gateway", "master_data", "workflow", "rules_engine"):
        url = sec.table.get(key)
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise sec.error(sec.path(key), f"expected an http(s) URL, got '{url}'")
    sec.finish()
    return targets


def target_hosts(targets: Targets) -> dict[str, str]:
    """The host each target points at, keyed by the scenario key that names it."""
    hosts = {
        "targets.gateway": urlsplit(targets.gateway_url).hostname or "",
        "targets.master_data": urlsplit(targets.master_data_url).hostname or "",
        "targets.workflow": urlsplit(targets.workflow_url).hostname or "",
        "targets.rules_engine": urlsplit(targets.rules_url).hostname or "",
        "targets.temporal": targets.temporal_address.rsplit(":", 1)[0].strip("[]"),
    }
    return hosts


def check_allowed_hosts(scenario: Scenario) -> None:
    """Refuse a target host outside the allow-list, so a typo never loads the wrong system."""
    allowed = set(scenario.targets.allowed_hosts)
    for key, host in target_hosts(scenario.targets).items():
        if host not in allowed:
            raise ConfigError(
                f"{scenario.path}: key '{key}': host '{host}' is not in targets.allowed_hosts "
                f"{sorted(allowed)}; refusing to send load there"
            )


def _load_profile(sec: _Section | None) -> LoadProfile:
    if sec is None:
        return LoadProfile()
    default = LoadProfile()
    stages: list[Stage] = []
    raw_stages = sec.get("stages", list, [])
    for i, raw in enumerate(raw_stages):
        st = _Section(sec.file, f"{sec.path('stages')}[{i}]", raw)
        kind = st.get("kind", str, "step")
        if kind not in ("ramp", "step", "spike", "soak"):
            raise st.error(st.path("kind"), f"expected ramp, step, spike or soak, got '{kind}'")
        users = st.require("users", int)
        if "duration_s" not in st.table:
            _missing(st, "duration_s")
        if users < 0:
            raise st.error(st.path("users"), "must be >= 0")
        stages.append(
            Stage(
                users=users,
                duration_s=st.positive("duration_s", 0.0),
                spawn_rate=st.positive("spawn_rate", max(1.0, float(users))),
                kind=kind,
            )
        )
        st.finish()
    arrival: list[ArrivalStage] = []
    for i, raw in enumerate(sec.get("arrival", list, [])):
        st = _Section(sec.file, f"{sec.path('arrival')}[{i}]", raw)
        if "duration_s" not in st.table:
            _missing(st, "duration_s")
        if "rate_per_s" not in st.table:
            _missing(st, "rate_per_s")
        arrival.append(
            ArrivalStage(
                rate_per_s=st.positive("rate_per_s", 0.0, allow_zero=True),
                duration_s=st.positive("duration_s", 0.0),
                ramp=st.get("ramp", bool, False),
            )
        )
        st.finish()
    if stages and arrival:
        raise sec.error(sec.path("arrival"), "use either load.stages or load.arrival, not both")
    users = sec.get("users", int, default.users)
    if users < 1:
        raise sec.error(sec.path("users"), "must be >= 1")
    profile = LoadProfile(
        users=users,
        spawn_rate=sec.positive("spawn_rate", default.spawn_rate),
        duration_s=sec.positive("duration_s", default.duration_s),
        warmup_s=sec.positive("warmup_s", default.warmup_s, allow_zero=True),
        stages=tuple(stages),
        arrival=tuple(arrival),
        max_users=sec.get("max_users", int, 50 if arrival else 0),
        slice_s=sec.positive("slice_s", default.slice_s),
    )
    if not 0.5 <= profile.slice_s <= 5.0:
        raise sec.error(sec.path("slice_s"), "must be between 0.5 and 5 seconds")
    if profile.warmup_s >= profile.total_duration_s:
        raise sec.error(sec.path("warmup_s"), "must be shorter than the run")
    sec.finish()
    return profile


def _missing(sec: _Section, key: str) -> NoReturn:
    raise sec.error(sec.path(key), "is required")


def _load_data(sec: _Section | None, base: Path) -> dict[str, DataPool]:
    pools: dict[str, DataPool] = {}
    if sec is None:
        return pools
    for name in list(sec.table):
        pool = sec.sub(name)
        assert pool is not None
        rel = pool.require("csv", str)
        path = (base / rel).resolve()
        if not path.is_file():
            raise pool.error(pool.path("csv"), f"file not found: {path}")
        mode = pool.get("mode", str, "cycle")
        if mode not in ("cycle", "random"):
            raise pool.error(pool.path("mode"), f"expected cycle or random, got '{mode}'")
        with path.open(newline="", encoding="utf-8") as fh:
            rows = tuple(dict(r) for r in csv.DictReader(fh))
        if not rows:
            raise pool.error(pool.path("csv"), f"{path} has no data rows")
        pools[name] = DataPool(name=name, path=path, rows=rows, mode=mode)
        pool.finish()
    sec.finish()
    return pools


def _check_variables(sec: _Section, key: str, value: Any, data: Mapping[str, DataPool]) -> None:
    """Every `${pool.column}` reference must name a pool and a column that exist."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_variables(sec, f"{key}.{k}", v, data)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_variables(sec, f"{key}[{i}]", v, data)
    elif isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        ref, _, cast = value[2:-1].partition(":")
        if cast and cast not in VARIABLE_CASTS:
            raise sec.error(key, f"unknown conversion ':{cast}'; expected one of {VARIABLE_CASTS}")
        pool_name, _, column = ref.partition(".")
        pool = data.get(pool_name)
        if pool is None:
            raise sec.error(key, f"data pool '{pool_name}' is not defined under [data]")
        if column not in pool.rows[0]:
            raise sec.error(key, f"column '{column}' not in {pool.path.name}")


def _load_users(
    sec: _Section | None, base: Path, data: Mapping[str, DataPool]
) -> dict[str, UserClass]:
    users: dict[str, UserClass] = {}
    if sec is None:
        return users
    for kind in list(sec.table):
        if kind not in USER_KINDS:
            raise sec.error(sec.path(kind), f"unknown user class; expected one of {USER_KINDS}")
        u = sec.sub(kind)
        assert u is not None
        wait = u.get("wait_s", list, [0.5, 1.5])
        if (
            len(wait) != 2
            or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in wait)
            or not 0 <= wait[0] <= wait[1]
        ):
            raise u.error(u.path("wait_s"), "expected [min, max] seconds with 0 <= min <= max")
        weight = u.get("weight", int, 1)
        if weight < 0:
            raise u.error(u.path("weight"), "must be >= 0")
        rate = u.get("trace_sample_rate", float, 1.0)
        if not 0.0 <= rate <= 1.0:
            raise u.error(u.path("trace_sample_rate"), "must be between 0 and 1")
        requests, chains = _load_http(u, data) if kind == "http" else ((), ())
        cls = UserClass(
            kind=kind,
            weight=weight,
            wait_s=(float(wait[0]), float(wait[1])),
            operations=_load_operations(u, base, data) if kind == "graphql" else (),
            rule_sets=_load_rule_sets(u, base) if kind == "rules" else (),
            workflows=_load_workflows(u, data) if kind == "workflows" else (),
            trace_sample_rate=rate,
            timeout_s=u.positive("timeout_s", 30.0),
            fixed_count=u.get("fixed_count", int, 1 if kind == "health" else 0),
            rate_per_s=u.positive("rate_per_s", 0.5 if kind == "health" else 0.0, allow_zero=True),
            requests=requests,
            chains=chains,
        )
        u.finish()
        users[kind] = cls
    sec.finish()
    return users


def _load_operations(
    u: _Section, base: Path, data: Mapping[str, DataPool]
) -> tuple[GraphQLOperation, ...]:
    from graphql import GraphQLError, OperationDefinitionNode, parse

    ops: list[GraphQLOperation] = []
    raw_ops = u.get("operations", list, [])
    if not raw_ops:
        raise u.error(u.path("operations"), "at least one operation is required")
    for i, raw in enumerate(raw_ops):
        o = _Section(u.file, f"{u.path('operations')}[{i}]", raw)
        rel = o.require("document", str)
        doc_path = (base / rel).resolve()
        if not doc_path.is_file():
            raise o.error(o.path("document"), f"file not found: {doc_path}")
        text = doc_path.read_text(encoding="utf-8")
        try:
            doc = parse(text)
        except GraphQLError as exc:
            raise ConfigError(f"{doc_path}: invalid GraphQL: {exc.message}") from None
        names = [
            d.name.value
            for d in doc.definitions
            if isinstance(d, OperationDefinitionNode) and d.name is not None
        ]
        op_name = o.get("operation", str, names[0] if len(names) == 1 else "")
        if not op_name:
            raise o.error(o.path("operation"), f"{doc_path.name} has several operations {names}")
        if op_name not in names:
            raise o.error(o.path("operation"), f"no operation '{op_name}' in {doc_path.name}")
        variables = o.get("variables", dict, {})
        _check_variables(o, o.path("variables"), variables, data)
        weight = o.get("weight", int, 1)
        if weight < 1:
            raise o.error(o.path("weight"), "must be >= 1")
        ops.append(GraphQLOperation(doc_path, text, op_name, variables, weight))
        o.finish()
    return tuple(ops)


def _load_rule_sets(u: _Section, base: Path) -> tuple[RuleSetLoad, ...]:
    sets: list[RuleSetLoad] = []
    raw_sets = u.get("rule_sets", list, [])
    if not raw_sets:
        raise u.error(u.path("rule_sets"), "at least one rule set is required")
    for i, raw in enumerate(raw_sets):
        r = _Section(u.file, f"{u.path('rule_sets')}[{i}]", raw)
        rel = r.require("file", str)
        path = (base / rel).resolve()
        if not path.is_file():
            raise r.error(r.path("file"), f"file not found: {path}")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("ruleSet"), str):
            raise ConfigError(f"{path}: key 'ruleSet': expected the rule set's name (string)")
        raw_cases = doc.get("cases")
        if not isinstance(raw_cases, list) or not raw_cases:
            raise ConfigError(f"{path}: key 'cases': expected a non-empty array")
        cases = []
        for j, case in enumerate(raw_cases):
            if not isinstance(case, dict) or not isinstance(case.get("facts"), dict):
                raise ConfigError(f"{path}: key 'cases[{j}].facts': expected an object")
            expect = case.get("expect")
            if expect is not None and not isinstance(expect, dict):
                raise ConfigError(f"{path}: key 'cases[{j}].expect': expected an object")
            unknown = set(case) - {"facts", "expect", "name"}
            if unknown:
                raise ConfigError(f"{path}: key 'cases[{j}].{sorted(unknown)[0]}': unknown key")
            cases.append(RuleCase(facts=case["facts"], expect=expect))
        weight = r.get("weight", int, 1)
        if weight < 1:
            raise r.error(r.path("weight"), "must be >= 1")
        sets.append(RuleSetLoad(path, doc["ruleSet"], tuple(cases), weight))
        r.finish()
    return tuple(sets)


def _load_workflows(u: _Section, data: Mapping[str, DataPool]) -> tuple[WorkflowLoad, ...]:
    from capacity.scenario_calls import load_workflow

    raw_flows = u.get("workflows", list, [])
    if not raw_flows:
        raise u.error(u.path("workflows"), "at least one workflow is required")
    return tuple(
        load_workflow(_Section(u.file, f"{u.path('workflows')}[{i}]", raw), data, None)
        for i, raw in enumerate(raw_flows)
    )


def _load_http(
    u: _Section, data: Mapping[str, DataPool]
) -> tuple[tuple[HttpRequest, ...], tuple[Chain, ...]]:
    from capacity.scenario_calls import load_http_user

    return load_http_user(u, data)


def _load_slos(sec: _Section | None) -> tuple[tuple[OperationSlo, ...], tuple[ServiceSlo, ...]]:
    if sec is None:
        return (), ()
    ops: list[OperationSlo] = []
    services: list[ServiceSlo] = []
    op_sec = sec.sub("operations")
    if op_sec:
        for pattern in list(op_sec.table):
            s = op_sec.sub(pattern)
            assert s is not None
            ops.append(
                OperationSlo(
                    pattern,
                    p95_ms=_opt_positive(s, "p95_ms"),
                    p99_ms=_opt_positive(s, "p99_ms"),
                    error_rate=_opt_positive(s, "error_rate", allow_zero=True),
                )
            )
            s.finish()
        op_sec.finish()
    svc_sec = sec.sub("services")
    if svc_sec:
        for pattern in list(svc_sec.table):
            s = svc_sec.sub(pattern)
            assert s is not None
            services.append(
                ServiceSlo(
                    pattern,
                    cpu_cores=_opt_positive(s, "cpu_cores"),
                    mem_mb=_opt_positive(s, "mem_mb"),
                )
            )
            s.finish()
        svc_sec.finish()
    sec.finish()
    return tuple(ops), tuple(services)


def _opt_positive(sec: _Section, key: str, *, allow_zero: bool = False) -> float | None:
    if key not in sec.table:
        sec.seen.add(key)
        return None
    return sec.positive(key, 0.0, allow_zero=allow_zero)


def slos_to_json(scenario: Scenario) -> dict[str, list[dict[str, Any]]]:
    """The scenario's SLOs as plain data, stored in run.json so reports need no scenario file."""
    return {
        "operations": [asdict(s) for s in scenario.operation_slos],
        "services": [asdict(s) for s in scenario.service_slos],
    }


def slos_from_json(
    data: Mapping[str, Any],
) -> tuple[tuple[OperationSlo, ...], tuple[ServiceSlo, ...]]:
    ops = tuple(OperationSlo(**d) for d in data.get("operations", ()))
    services = tuple(ServiceSlo(**d) for d in data.get("services", ()))
    return ops, services


def _load_tuning(sec: _Section | None) -> dict[str, dict[str, Any]]:
    if sec is None:
        return {}
    tuning: dict[str, dict[str, Any]] = {}
    t = sec.sub("tuning")
    if t:
        for service in list(t.table):
            knobs = t.sub(service)
            assert knobs is not None
            tuning[service] = dict(knobs.table)
            knobs.seen.update(knobs.table)
        t.finish()
    sec.finish()
    return tuning
