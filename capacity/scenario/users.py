"""`[users.<kind>]`: user classes, GraphQL operations, rule sets, workflows; `[data.<pool>]`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capacity.errors import ConfigError
from capacity.scenario.model import (
    USER_KINDS,
    VARIABLE_CASTS,
    Chain,
    DataPool,
    GraphQLOperation,
    HttpRequest,
    RuleCase,
    RuleSetLoad,
    UserClass,
    WorkflowLoad,
)
from capacity.scenario.reader import MAX_DATA_FILE_BYTES, Section, read_text_file

MAX_USERS = 100_000
MAX_WEIGHT = 1_000_000


def load_data(sec: Section | None, base: Path) -> dict[str, DataPool]:
    pools: dict[str, DataPool] = {}
    if sec is None:
        return pools
    for name in list(sec.table):
        pool = sec.sub(name)
        assert pool is not None
        path = pool.file_path("csv", base)
        mode = pool.get("mode", str, "cycle")
        if mode not in ("cycle", "random"):
            raise pool.error(pool.path("mode"), f"expected cycle or random, got '{mode}'")
        text = read_text_file(path, "data pool CSV", MAX_DATA_FILE_BYTES)
        try:
            rows = tuple(dict(r) for r in csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise ConfigError(f"{path}: invalid CSV: {exc}") from None
        if not rows:
            raise pool.error(pool.path("csv"), f"{path} has no data rows")
        if any(None in row for row in rows):
            raise ConfigError(f"{path}: a row has more cells than the header")
        pools[name] = DataPool(name=name, path=path, rows=rows, mode=mode)
        pool.finish()
    sec.finish()
    return pools


def check_variables(sec: Section, key: str, value: Any, data: Mapping[str, DataPool]) -> None:
    """Every `${pool.column}` reference must name a pool and a column that exist."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_variables(sec, f"{key}.{k}", v, data)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_variables(sec, f"{key}[{i}]", v, data)
    elif isinstance(value, float) and value != value:  # NaN from TOML `nan`
        raise sec.error(key, "must be a finite number, got nan")
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


def load_users(
    sec: Section | None, base: Path, data: Mapping[str, DataPool]
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
            or not all(w == w and w != float("inf") for w in wait)
            or not 0 <= wait[0] <= wait[1] <= 3600
        ):
            raise u.error(
                u.path("wait_s"), "expected [min, max] seconds with 0 <= min <= max <= 3600"
            )
        requests, chains = _load_http(u, data) if kind == "http" else ((), ())
        cls = UserClass(
            kind=kind,
            weight=u.integer("weight", 1, 0, MAX_WEIGHT),
            wait_s=(float(wait[0]), float(wait[1])),
            operations=_load_operations(u, base, data) if kind == "graphql" else (),
            rule_sets=_load_rule_sets(u, base) if kind == "rules" else (),
            workflows=_load_workflows(u, data) if kind == "workflows" else (),
            trace_sample_rate=u.number("trace_sample_rate", 1.0, 0.0, 1.0),
            timeout_s=u.number("timeout_s", 30.0, 0.0, 3600.0, low_open=True),
            fixed_count=u.integer("fixed_count", 1 if kind == "health" else 0, 0, MAX_USERS),
            rate_per_s=u.number("rate_per_s", 0.5 if kind == "health" else 0.0, 0.0, 100.0),
            requests=requests,
            chains=chains,
        )
        u.finish()
        users[kind] = cls
    sec.finish()
    if users and not any(c.weight > 0 or c.fixed_count > 0 for c in users.values()):
        raise sec.error(sec.path("*.weight"), "every user class has weight 0: nothing would run")
    return users


def _operation_names(doc: Any) -> list[tuple[str | None, str]]:
    from graphql import OperationDefinitionNode

    return [
        (d.name.value if d.name is not None else None, d.operation.value)
        for d in doc.definitions
        if isinstance(d, OperationDefinitionNode)
    ]


def _load_operations(
    u: Section, base: Path, data: Mapping[str, DataPool]
) -> tuple[GraphQLOperation, ...]:
    from graphql import GraphQLError, parse

    ops: list[GraphQLOperation] = []
    raw_ops = u.get("operations", list, [])
    if not raw_ops:
        raise u.error(u.path("operations"), "at least one operation is required")
    for i, raw in enumerate(raw_ops):
        o = Section(u.file, f"{u.path('operations')}[{i}]", raw)
        doc_path = o.file_path("document", base)
        text = read_text_file(doc_path, "GraphQL document")
        try:
            doc = parse(text)
        except GraphQLError as exc:
            where = (
                f" at line {exc.locations[0].line}, column {exc.locations[0].column}"
                if exc.locations
                else ""
            )
            raise ConfigError(f"{doc_path}: not a valid GraphQL document{where}") from None
        found = _operation_names(doc)
        named = [name for name, _ in found if name]
        if not found:
            raise ConfigError(f"{doc_path}: no operation in the document (only fragments?)")
        if len(found) > len(named):
            raise o.error(
                o.path("document"),
                f"{doc_path.name} has an anonymous operation; name it (e.g. `query GetX {{...}}`) "
                "so it is reported as 'graphql GetX'",
            )
        op_name = o.get("operation", str, named[0] if len(named) == 1 else "")
        if not op_name:
            raise o.error(
                o.path("operation"),
                f"{doc_path.name} has several operations ({', '.join(named)}); say which one",
            )
        if op_name not in named:
            raise o.error(
                o.path("operation"),
                f"no operation '{op_name}' in {doc_path.name} (it has: {', '.join(named)})",
            )
        variables = o.get("variables", dict, {})
        check_variables(o, o.path("variables"), variables, data)
        kind = dict((name, op) for name, op in found)[op_name]
        ops.append(
            GraphQLOperation(
                doc_path,
                text,
                op_name,
                variables,
                o.integer("weight", 1, 1, MAX_WEIGHT),
                is_query=kind == "query",
            )
        )
        o.finish()
    return tuple(ops)


def _load_rule_sets(u: Section, base: Path) -> tuple[RuleSetLoad, ...]:
    sets: list[RuleSetLoad] = []
    raw_sets = u.get("rule_sets", list, [])
    if not raw_sets:
        raise u.error(u.path("rule_sets"), "at least one rule set is required")
    for i, raw in enumerate(raw_sets):
        r = Section(u.file, f"{u.path('rule_sets')}[{i}]", raw)
        path = r.file_path("file", base)
        try:
            doc = json.loads(read_text_file(path, "rules file"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}"
            ) from None
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
        sets.append(
            RuleSetLoad(path, doc["ruleSet"], tuple(cases), r.integer("weight", 1, 1, MAX_WEIGHT))
        )
        r.finish()
    return tuple(sets)


def _load_workflows(u: Section, data: Mapping[str, DataPool]) -> tuple[WorkflowLoad, ...]:
    """`[[users.workflows.workflows]]` (the keys are read in `capacity.scenario.calls`)."""
    from capacity.scenario.calls import load_workflow

    raw_flows = u.get("workflows", list, [])
    if not raw_flows:
        raise u.error(u.path("workflows"), "at least one workflow is required")
    return tuple(
        load_workflow(Section(u.file, f"{u.path('workflows')}[{i}]", raw), data, None)
        for i, raw in enumerate(raw_flows)
    )


def _load_http(
    u: Section, data: Mapping[str, DataPool]
) -> tuple[tuple[HttpRequest, ...], tuple[Chain, ...]]:
    """`[users.http]`: requests and chains (`capacity.scenario.calls`)."""
    from capacity.scenario.calls import load_http_user

    return load_http_user(u, data)
