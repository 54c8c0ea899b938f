"""Scenario keys that drive the services' own APIs: HTTP requests, request chains, Temporal.

`[users.http]` holds `[[requests]]` (method, target or base URL, path, headers, JSON body,
expected status, assertions by JSON pointer) and `[[chains]]` (steps that pass values taken
from one answer to the next request or workflow start). `[[users.workflows.workflows]]`
gains several arguments, id templates with reuse/conflict policies, search attributes, memo,
fire-and-forget, and signals, queries and updates. Validation follows `capacity.scenario`:
every problem is a ConfigError naming the file and the key. `[users.rules]` is translated
into HTTP requests here (`rules_requests`), so one driver serves both forms.

The references syntax is `capacity.refs`, JSON pointers `capacity.jsonpointer`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from capacity.addresses import AddressError, parse_http_url
from capacity.errors import ConfigError
from capacity.jsonpointer import PointerError, parse_pointer
from capacity.refs import CASTS, CHAIN_POOL, RESERVED_POOLS, UUID_REF, Ref, split_refs
from capacity.scenario.model import (
    DEFAULT_SCHEDULE_TO_START_PER_S,
    Assertion,
    Chain,
    ChainStep,
    DataPool,
    HttpRequest,
    HttpVariant,
    RuleSetLoad,
    Scenario,
    WorkflowCall,
    WorkflowLoad,
    WorkflowOptions,
)
from capacity.scenario.reader import Section

MAX_WEIGHT = 1_000_000
MAX_SECONDS = 3600.0
MAX_SAMPLES_PER_S = 1000.0

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
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def workflow_args(load: WorkflowLoad) -> list[Any]:
    """The workflow's positional arguments: a table is the single argument, an array the list."""
    return list(load.args) if isinstance(load.args, list | tuple) else [load.args]


# --- loading ----------------------------------------------------------------------------


def load_http_user(
    u: Section, data: Mapping[str, DataPool]
) -> tuple[tuple[HttpRequest, ...], tuple[Chain, ...]]:
    """`[users.http]`: its requests and chains (at least one of either)."""
    _check_reserved_pools(u, data)
    raw_requests = u.get("requests", list, [])
    raw_chains = u.get("chains", list, [])
    if not raw_requests and not raw_chains:
        raise u.error(u.path("requests"), "at least one request or chain is required")
    requests = tuple(
        load_request(Section(u.file, f"{u.path('requests')}[{i}]", raw), data, None)
        for i, raw in enumerate(raw_requests)
    )
    chains = tuple(
        load_chain(Section(u.file, f"{u.path('chains')}[{i}]", raw), data)
        for i, raw in enumerate(raw_chains)
    )
    _unique(u, "requests", [r.name for r in requests])
    _unique(u, "chains", [c.name for c in chains])
    return requests, chains


def _unique(s: Section, key: str, names: Sequence[str]) -> None:
    """Two requests (or chains) of one name would share one operation's figures: refused."""
    for i, name in enumerate(names):
        if name in names[:i]:
            raise s.error(f"{s.path(key)}[{i}].name", f"duplicate name '{name.split(' ', 1)[-1]}'")


def load_request(
    r: Section, data: Mapping[str, DataPool], chain_keys: set[str] | None
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
        if "${" in base_url:
            raise r.error(r.path("base_url"), "cannot hold references (put them in path)")
        try:
            parse_http_url(base_url)
        except AddressError as exc:
            raise r.error(r.path("base_url"), str(exc)) from None
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
    weight = 1 if in_chain else r.integer("weight", 1, 1, MAX_WEIGHT)
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


def _load_status(r: Section) -> tuple[int, ...]:
    raw = r.get("status", (int, list), None)
    if raw is None:
        return ()
    codes = raw if isinstance(raw, list) else [raw]
    if not codes or not all(
        isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
    ):
        raise r.error(r.path("status"), "expected an HTTP status (100-599) or an array of them")
    return tuple(codes)


def _load_extract(s: Section) -> dict[str, tuple[str, ...]]:
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


def _pointer(s: Section, where: str, text: str) -> tuple[str, ...]:
    try:
        return parse_pointer(text)
    except PointerError as exc:
        raise s.error(where, str(exc)) from None


def load_assertions(
    s: Section, data: Mapping[str, DataPool], chain_keys: set[str] | None
) -> tuple[Assertion, ...]:
    """The `assert` array: each has a `pointer` and exactly one of equals, exists, min/max."""
    out = []
    for i, raw in enumerate(s.get("assert", list, [])):
        a = Section(s.file, f"{s.path('assert')}[{i}]", raw)
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
            low = a.get("min", float, None)  # finite numbers, any range: the answer's
            high = a.get("max", float, None)
            if low is not None and high is not None and low > high:
                raise a.error(a.path("min"), f"must be <= max ({high:g})")
            out.append(Assertion(pointer, tokens, "range", None, low, high))
        a.finish()
    return tuple(out)


def load_chain(c: Section, data: Mapping[str, DataPool]) -> Chain:
    name = c.require("name", str)
    if not name.strip():
        raise c.error(c.path("name"), "must not be empty")
    weight = c.integer("weight", 1, 1, MAX_WEIGHT)
    raw_steps = c.require("steps", list)
    if not raw_steps:
        raise c.error(c.path("steps"), "at least one step is required")
    keys: set[str] = set()
    steps = []
    for j, raw in enumerate(raw_steps):
        s = Section(c.file, f"{c.path('steps')}[{j}]", raw)
        if "workflow" in s.table:
            flow = load_workflow(s, data, set(keys), type_key="workflow")
            options = flow.options or WorkflowOptions()
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
    w: Section,
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
    weight = 1 if in_chain else w.integer("weight", 1, 1, MAX_WEIGHT)
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
        _load_call(Section(w.file, f"{w.path('calls')}[{i}]", raw), data, chain_keys)
        for i, raw in enumerate(w.get("calls", list, []))
    )
    extract = _load_extract(w) if in_chain else {}
    if extract and not wait_result:
        raise w.error(w.path("extract"), "needs wait_result = true (values come from the result)")
    per_s = w.number(
        "schedule_to_start_per_s", DEFAULT_SCHEDULE_TO_START_PER_S, 0.0, MAX_SAMPLES_PER_S
    )
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
        options=None if options == WorkflowOptions() else options,
    )


def _choice(s: Section, key: str, allowed: Sequence[str]) -> str | None:
    value = s.get(key, str, None)
    if value is not None and value not in allowed:
        raise s.error(s.path(key), f"expected one of {', '.join(allowed)}, got '{value}'")
    return value


def _search_attribute_ok(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) for v in value)
    return isinstance(value, str | bool | int | float)


def _load_call(
    c: Section, data: Mapping[str, DataPool], chain_keys: set[str] | None
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
    pause_s = c.number("pause_s", 0.0, 0.0, MAX_SECONDS)
    c.finish()
    return WorkflowCall(kind, handler, args, assertions, pause_s)


# --- references ---------------------------------------------------------------------------


def check_refs(
    s: Section,
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
    if isinstance(value, float) and not math.isfinite(value):  # TOML `nan`, `inf`
        raise s.error(key, f"must be a finite number, got {value}")
    if not isinstance(value, str) or "${" not in value:
        return
    refs = [p for p in split_refs(value) if isinstance(p, Ref)]
    if value.count("${") != len(refs):
        raise s.error(key, f"malformed reference in '{value}' (expected '${{pool.column}}')")
    for ref in refs:
        _check_ref(s, key, ref, data, chain_keys)


def _check_ref(
    s: Section, key: str, ref: Ref, data: Mapping[str, DataPool], chain_keys: set[str] | None
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


def _check_reserved_pools(s: Section, data: Mapping[str, DataPool]) -> None:
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


def check_request_hosts(scenario: Scenario) -> None:  # after check_allowed_hosts
    """A request's `base_url` must name an allowed host, like every target."""
    allowed = set(scenario.targets.allowed_hosts)
    for request in http_requests(scenario):
        if request.base_url is None:
            continue
        host = parse_http_url(request.base_url).host
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
