"""Scenario keys that drive the services' own APIs: HTTP requests, request chains, Temporal.

`[users.http]` holds `[[requests]]` (method, target or base URL, path, headers, JSON body,
expected status, assertions by JSON pointer) and `[[chains]]` (steps that pass values taken
from one answer to the next request or workflow start). `[[users.workflows.workflows]]`
gains several arguments, id templates with reuse/conflict policies, search attributes, memo,
fire-and-forget, and signals, queries and updates. Validation follows `capacity.scenario`:
every problem is a ConfigError naming the file and the key. `[users.rules]` is translated
into HTTP requests here (`rules_requests`), so one driver serves both forms.

Kept apart from `capacity.scenario`, which calls in here; the references syntax is
`capacity.refs`, JSON pointers `capacity.jsonpointer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from capacity.errors import ConfigError
from capacity.jsonpointer import PointerError, parse_pointer
from capacity.refs import CASTS, CHAIN_POOL, RESERVED_POOLS, UUID_REF, Ref, split_refs
from capacity.scenario import DataPool, RuleSetLoad, Scenario, WorkflowLoad, _Section

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
REQUEST_TARGETS = ("gateway", "master_data", "workflow", "rules_engine")
ID_REUSE_POLICIES = (
    "allow_duplicate",
    "allow_duplicate_failed_only",
    "reject_duplicate",
    "terminate_if_running",
)
ID_CONFLICT_POLICIES = ("fail", "use_existing", "terminate_existing")
ASSERTION_KINDS = {"equals": "equals", "exists": "exists", "min": "range", "max": "range"}
DEFAULT_SCHEDULE_TO_START_PER_S = 1.0
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def workflow_args(load: WorkflowLoad) -> list[Any]:
    """The workflow's positional arguments: a table is the single argument, an array the list."""
    return list(load.args) if isinstance(load.args, list | tuple) else [load.args]


# --- loading ----------------------------------------------------------------------------


def load_http_user(
    u: _Section, data: Mapping[str, DataPool]
) -> tuple[tuple[HttpRequest, ...], tuple[Chain, ...]]:
    """`[users.http]`: its requests and chains (at least one of either)."""
    _check_reserved_pools(u, data)
    raw_requests = u.get("requests", list, [])
    raw_chains = u.get("chains", list, [])
    if not raw_requests and not raw_chains:
        raise u.error(u.path("requests"), "at least one request or chain is required")
    requests = tuple(
        load_request(_Section(u.file, f"{u.path('requests')}[{i}]", raw), data, None)
        for i, raw in enumerate(raw_requests)
    )
    chains = tuple(
        load_chain(_Section(u.file, f"{u.path('chains')}[{i}]", raw), data)
        for i, raw in enumerate(raw_chains)
    )
    _unique(u, "requests", [r.name for r in requests])
    _unique(u, "chains", [c.name for c in chains])
    return requests, chains


def _unique(s: _Section, key: str, names: Sequence[str]) -> None:
    """Two requests (or chains) of one name would share one operation's figures: refused."""
    for i, name in enumerate(names):
        if name in names[:i]:
            raise s.error(f"{s.path(key)}[{i}].name", f"duplicate name '{name.split(' ', 1)[-1]}'")


def load_request(
    r: _Section, data: Mapping[str, DataPool], chain_keys: set[str] | None
) -> HttpRequest:
    """One request table; `chain_keys` (a chain step) are the values earlier steps extracted."""
    in_chain = chain_keys is not None
    name = r.require("name", str)
    if not name.strip():
        raise r.error(r.path("name"), "must not be empty")
    method = r.get("method", str, "GET").upper()
    if method not in HTTP_METHODS:
        raise r.error(r.path("method"), f"expected one of {', '.join(HTTP_METHODS)}")
    target = r.get("target", str, None)
    base_url = r.get("base_url", str, None)
    if target is not None and base_url is not None:
        raise r.error(r.path("base_url"), "use either target or base_url, not both")
    if target is None and base_url is None:
        raise r.error(r.path("target"), f"is required (one of {REQUEST_TARGETS}), or base_url")
    if target is not None and target not in REQUEST_TARGETS:
        raise r.error(r.path("target"), f"expected one of {REQUEST_TARGETS}, got '{target}'")
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "${" in base_url:
            raise r.error(r.path("base_url"), f"expected an http(s) URL, got '{base_url}'")
    path = r.require("path", str)
    if not path.startswith("/"):
        raise r.error(r.path("path"), f"must start with '/', got '{path}'")
    check_refs(r, r.path("path"), path, data, chain_keys)
    headers = r.get("headers", dict, {})
    for header, value in headers.items():
        where = f"{r.path('headers')}.{header}"
        if not _HEADER_NAME.fullmatch(header):
            raise r.error(where, "not a valid header name")
        if not isinstance(value, str):
            raise r.error(where, "expected a string")
        check_refs(r, where, value, data, chain_keys)
    r.seen.add("body")
    body = r.table.get("body")
    if body is not None and not isinstance(body, dict | list):
        raise r.error(r.path("body"), "expected a table or an array (the JSON body)")
    check_refs(r, r.path("body"), body, data, chain_keys)
    status = _load_status(r)
    assertions = load_assertions(r, data, chain_keys)
    extract = _load_extract(r) if in_chain else {}
    weight = 1 if in_chain else r.get("weight", int, 1)
    if weight < 1:
        raise r.error(r.path("weight"), "must be >= 1")
    r.finish()
    return HttpRequest(
        name=f"http {name}",
        method=method,
        path=path,
        variants=(HttpVariant(body, assertions),),
        target=target,
        base_url=base_url,
        headers=dict(headers),
        status=status,
        extract=extract,
        weight=weight,
        key=r.key,
    )


def _load_status(r: _Section) -> tuple[int, ...]:
    raw = r.get("status", (int, list), None)
    if raw is None:
        return ()
    codes = raw if isinstance(raw, list) else [raw]
    if not codes or not all(
        isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
    ):
        raise r.error(r.path("status"), "expected an HTTP status (100-599) or an array of them")
    return tuple(codes)


def _load_extract(s: _Section) -> dict[str, tuple[str, ...]]:
    raw = s.get("extract", dict, {})
    out: dict[str, tuple[str, ...]] = {}
    for key, pointer in raw.items():
        where = f"{s.path('extract')}.{key}"
        if not _IDENTIFIER.fullmatch(key):
            raise s.error(where, "a chain value's name must be an identifier")
        if not isinstance(pointer, str):
            raise s.error(where, "expected a JSON pointer (string)")
        out[key] = _pointer(s, where, pointer)
    return out


def _pointer(s: _Section, where: str, text: str) -> tuple[str, ...]:
    try:
        return parse_pointer(text)
    except PointerError as exc:
        raise s.error(where, str(exc)) from None


def load_assertions(
    s: _Section, data: Mapping[str, DataPool], chain_keys: set[str] | None
) -> tuple[Assertion, ...]:
    """The `assert` array: each has a `pointer` and exactly one of equals, exists, min/max."""
    out = []
    for i, raw in enumerate(s.get("assert", list, [])):
        a = _Section(s.file, f"{s.path('assert')}[{i}]", raw)
        pointer = a.require("pointer", str)
        tokens = _pointer(a, a.path("pointer"), pointer)
        present = [k for k in ("equals", "exists", "min", "max") if k in a.table]
        kinds = sorted({ASSERTION_KINDS[k] for k in present})
        if not kinds:
            raise a.error(a.path("equals"), "is required (or exists, or min/max)")
        if len(kinds) > 1:
            raise a.error(a.path(present[-1]), f"cannot be combined with {present[0]}")
        kind = kinds[0]
        if kind == "equals":
            a.seen.add("equals")
            value: Any = a.table["equals"]
            check_refs(a, a.path("equals"), value, data, chain_keys)
            out.append(Assertion(pointer, tokens, "equals", value))
        elif kind == "exists":
            out.append(Assertion(pointer, tokens, "exists", a.get("exists", bool)))
        else:
            low = a.get("min", float, None)
            high = a.get("max", float, None)
            if low is not None and high is not None and low > high:
                raise a.error(a.path("min"), f"must be <= max ({high:g})")
            out.append(Assertion(pointer, tokens, "range", None, low, high))
        a.finish()
    return tuple(out)


def load_chain(c: _Section, data: Mapping[str, DataPool]) -> Chain:
    name = c.require("name", str)
    if not name.strip():
        raise c.error(c.path("name"), "must not be empty")
    weight = c.get("weight", int, 1)
    if weight < 1:
        raise c.error(c.path("weight"), "must be >= 1")
    raw_steps = c.require("steps", list)
    if not raw_steps:
        raise c.error(c.path("steps"), "at least one step is required")
    keys: set[str] = set()
    steps = []
    for j, raw in enumerate(raw_steps):
        s = _Section(c.file, f"{c.path('steps')}[{j}]", raw)
        if "workflow" in s.table:
            flow = load_workflow(s, data, set(keys), type_key="workflow")
            options = flow.options or DEFAULT_WORKFLOW_OPTIONS
            steps.append(ChainStep(workflow=flow))
            keys |= set(options.extract)
        else:
            request = load_request(s, data, set(keys))
            steps.append(ChainStep(request=request))
            if request.name in [st.request.name for st in steps[:-1] if st.request]:
                raise s.error(s.path("name"), "a chain's steps need distinct names")
            keys |= set(request.extract)
    c.finish()
    return Chain(name, tuple(steps), weight)


def load_workflow(
    w: _Section,
    data: Mapping[str, DataPool],
    chain_keys: set[str] | None,
    *,
    type_key: str = "type",
) -> WorkflowLoad:
    """One workflow table of `[[users.workflows.workflows]]` or a chain's workflow step."""
    in_chain = chain_keys is not None
    workflow_type = w.require(type_key, str)
    w.seen.add("args")
    args = w.table.get("args", {})
    if not isinstance(args, dict | list):
        raise w.error(w.path("args"), "expected a table (the one argument) or an array")
    check_refs(w, w.path("args"), args, data, chain_keys)
    weight = 1 if in_chain else w.get("weight", int, 1)
    if weight < 1:
        raise w.error(w.path("weight"), "must be >= 1")
    id_template = w.get("id", str, None)
    if id_template is not None:
        if not id_template.strip():
            raise w.error(w.path("id"), "must not be empty")
        check_refs(w, w.path("id"), id_template, data, chain_keys)
    reuse = _choice(w, "id_reuse_policy", ID_REUSE_POLICIES)
    conflict = _choice(w, "id_conflict_policy", ID_CONFLICT_POLICIES)
    attributes = w.get("search_attributes", dict, {})
    for key, value in attributes.items():
        where = f"{w.path('search_attributes')}.{key}"
        if not _IDENTIFIER.fullmatch(key):
            raise w.error(where, "a search attribute's name must be an identifier")
        if not _search_attribute_ok(value):
            raise w.error(where, "expected a string, number, boolean or array of strings")
        check_refs(w, where, value, data, chain_keys)
    memo = w.get("memo", dict, {})
    check_refs(w, w.path("memo"), memo, data, chain_keys)
    task_queue = w.get("task_queue", str, None)
    wait_result = w.get("wait_result", bool, True)
    calls = tuple(
        _load_call(_Section(w.file, f"{w.path('calls')}[{i}]", raw), data, chain_keys)
        for i, raw in enumerate(w.get("calls", list, []))
    )
    extract = _load_extract(w) if in_chain else {}
    if extract and not wait_result:
        raise w.error(w.path("extract"), "needs wait_result = true (values come from the result)")
    per_s = w.positive("schedule_to_start_per_s", DEFAULT_SCHEDULE_TO_START_PER_S, allow_zero=True)
    w.finish()
    options = WorkflowOptions(
        id_template=id_template,
        id_reuse_policy=reuse,
        id_conflict_policy=conflict,
        search_attributes=dict(attributes),
        memo=dict(memo),
        task_queue=task_queue,
        wait_result=wait_result,
        calls=calls,
        extract=extract,
        schedule_to_start_per_s=per_s,
    )
    return WorkflowLoad(
        workflow_type,
        args,
        weight,
        options=None if options == DEFAULT_WORKFLOW_OPTIONS else options,
    )


def _choice(s: _Section, key: str, allowed: Sequence[str]) -> str | None:
    value = s.get(key, str, None)
    if value is not None and value not in allowed:
        raise s.error(s.path(key), f"expected one of {', '.join(allowed)}, got '{value}'")
    return value


def _search_attribute_ok(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) for v in value)
    return isinstance(value, str | bool | int | float)


def _load_call(
    c: _Section, data: Mapping[str, DataPool], chain_keys: set[str] | None
) -> WorkflowCall:
    present = [k for k in ("signal", "query", "update") if k in c.table]
    if len(present) != 1:
        where = c.path(present[1] if len(present) > 1 else "signal")
        raise c.error(where, "exactly one of signal, query or update (the handler's name)")
    kind = present[0]
    handler = c.require(kind, str)
    c.seen.add("args")
    raw_args = c.table.get("args", [])
    if not isinstance(raw_args, dict | list):
        raise c.error(c.path("args"), "expected a table (the one argument) or an array")
    check_refs(c, c.path("args"), raw_args, data, chain_keys)
    args = tuple(raw_args) if isinstance(raw_args, list) else (raw_args,)
    assertions = load_assertions(c, data, chain_keys)
    if assertions and kind == "signal":
        raise c.error(c.path("assert"), "a signal has no result to check")
    pause_s = c.positive("pause_s", 0.0, allow_zero=True)
    c.finish()
    return WorkflowCall(kind, handler, args, assertions, pause_s)


# --- references ---------------------------------------------------------------------------


def check_refs(
    s: _Section,
    key: str,
    value: Any,
    data: Mapping[str, DataPool],
    chain_keys: set[str] | None,
) -> None:
    """Every `${...}` in `value` names an existing pool and column, a chain value extracted by
    an earlier step (chains only), or `${uuid}`; a malformed `${` is an error too."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_refs(s, f"{key}.{k}", v, data, chain_keys)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            check_refs(s, f"{key}[{i}]", v, data, chain_keys)
        return
    if not isinstance(value, str) or "${" not in value:
        return
    refs = [p for p in split_refs(value) if isinstance(p, Ref)]
    if value.count("${") != len(refs):
        raise s.error(key, f"malformed reference in '{value}' (expected '${{pool.column}}')")
    for ref in refs:
        _check_ref(s, key, ref, data, chain_keys)


def _check_ref(
    s: _Section, key: str, ref: Ref, data: Mapping[str, DataPool], chain_keys: set[str] | None
) -> None:
    if ref.cast and ref.cast not in CASTS:
        raise s.error(key, f"unknown conversion ':{ref.cast}'; expected one of {CASTS}")
    if ref.pool == UUID_REF:
        if ref.column or ref.cast:
            raise s.error(key, f"'{ref.text}': write '${{uuid}}' alone")
        return
    if ref.pool == CHAIN_POOL:
        if chain_keys is None:
            raise s.error(key, f"'{ref.text}': chain values exist only in [[users.http.chains]]")
        if ref.column not in chain_keys:
            known = ", ".join(sorted(chain_keys)) or "none"
            raise s.error(
                key, f"'{ref.text}': no earlier step extracts '{ref.column}' (extracted: {known})"
            )
        return
    pool = data.get(ref.pool)
    if pool is None:
        raise s.error(key, f"data pool '{ref.pool}' is not defined under [data]")
    if ref.column not in pool.rows[0]:
        raise s.error(key, f"column '{ref.column}' not in {pool.path.name}")


def _check_reserved_pools(s: _Section, data: Mapping[str, DataPool]) -> None:
    for name in RESERVED_POOLS:
        if name in data:
            raise ConfigError(f"{s.file}: key 'data.{name}': '{name}' is a reserved name")


# --- checks on the whole scenario ---------------------------------------------------------


def http_requests(scenario: Scenario) -> list[HttpRequest]:
    """Every HTTP request of the scenario's `[users.http]`, chain steps included."""
    spec = scenario.users.get("http")
    if spec is None:
        return []
    steps = [s.request for c in spec.chains for s in c.steps if s.request is not None]
    return list(spec.requests) + steps


def check_request_hosts(scenario: Scenario) -> None:
    """A request's `base_url` must name an allowed host, like every target."""
    allowed = set(scenario.targets.allowed_hosts)
    for request in http_requests(scenario):
        if request.base_url is None:
            continue
        host = urlsplit(request.base_url).hostname or ""
        if host not in allowed:
            raise ConfigError(
                f"{scenario.path}: key '{request.key}.base_url': host '{host}' is not in "
                f"targets.allowed_hosts {sorted(allowed)}; refusing to send load there"
            )


# --- the rules form -------------------------------------------------------------------------


def rules_requests(rule_sets: Sequence[RuleSetLoad]) -> tuple[HttpRequest, ...]:
    """`[users.rules]` as HTTP requests: `POST /evaluate` per rule set, one variant per case,
    each expected outcome field an `equals` assertion on `/outcome/<field>`."""
    return tuple(
        HttpRequest(
            name=f"rules {rs.rule_set}",
            method="POST",
            path="/evaluate",
            target="rules_engine",
            variants=tuple(
                HttpVariant(
                    {"ruleSet": rs.rule_set, "facts": dict(case.facts)},
                    tuple(
                        Assertion(
                            f"/outcome/{k.replace('~', '~0').replace('/', '~1')}",
                            ("outcome", k),
                            "equals",
                            want,
                            label="wrong outcome",
                        )
                        for k, want in (case.expect or {}).items()
                    ),
                )
                for case in rs.cases
            ),
            weight=rs.weight,
            templated=False,
            key=str(rs.file),
        )
        for rs in rule_sets
    )
