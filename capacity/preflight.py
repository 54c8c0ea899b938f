"""Checks made before any load: every target answers, every GraphQL document is valid.

Failing here costs one clear line and exit 2; failing under load costs thousands of
identical connection errors and a meaningless report.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from capacity.errors import ConfigError, TargetUnreachable
from capacity.scenario import Scenario

INTROSPECTION_TIMEOUT_S = 10.0
INTROSPECTION_ATTEMPTS = 3
# Targets are addressed directly: a proxy from the environment must never relay load traffic.
DIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def required_targets(scenario: Scenario) -> dict[str, str]:
    """Service name -> health URL (or host:port for Temporal) for the user classes in use."""
    health = scenario.targets.health_urls()
    needed: dict[str, str] = {}
    kinds = {k for k, u in scenario.users.items() if u.weight > 0 or k == "health"}
    if "graphql" in kinds:
        needed["gateway"] = health["gateway"]
    if "rules" in kinds:
        needed["rules-engine"] = health["rules-engine"]
    if "workflows" in kinds:
        needed["temporal"] = scenario.targets.temporal_address
    if "health" in kinds:
        needed.update(health)
    return needed


def probe_http(url: str, timeout_s: float = 3.0) -> str | None:
    """None when `url` answers 2xx, else what went wrong, in a few words."""
    try:
        with DIRECT_OPENER.open(url, timeout=timeout_s) as resp:
            if 200 <= resp.status < 300:
                return None
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason) or type(exc).__name__


def probe_tcp(address: str, timeout_s: float = 3.0) -> str | None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def check_targets(scenario: Scenario, timeout_s: float = 3.0) -> None:
    """Raise TargetUnreachable naming the first service that does not answer."""
    for service, where in required_targets(scenario).items():
        problem = probe_http(where, timeout_s) if "://" in where else probe_tcp(where, timeout_s)
        if problem is not None:
            raise TargetUnreachable(f"target {service} at {where} is unreachable: {problem}")
    if scenario.targets.auth_env and scenario.targets.auth_env not in os.environ:
        raise ConfigError(
            f"{scenario.path}: key 'targets.auth_env': environment variable "
            f"{scenario.targets.auth_env} is not set"
        )


def fetch_schema(gateway_url: str, headers: Mapping[str, str] | None = None) -> Any:
    from graphql import build_client_schema, get_introspection_query

    body = json.dumps({"query": get_introspection_query()}).encode()
    req = urllib.request.Request(
        gateway_url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    for attempt in range(1, INTROSPECTION_ATTEMPTS + 1):
        try:
            with DIRECT_OPENER.open(req, timeout=INTROSPECTION_TIMEOUT_S) as resp:
                doc = json.loads(resp.read())
            break
        except urllib.error.HTTPError as exc:
            # A 5xx can be one unlucky request to a busy or fault-injecting gateway; a 4xx
            # (auth, wrong path) will not change on retry.
            if exc.code < 500 or attempt == INTROSPECTION_ATTEMPTS:
                raise TargetUnreachable(
                    f"target gateway at {gateway_url}: schema introspection failed: {exc}"
                ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TargetUnreachable(
                f"target gateway at {gateway_url}: schema introspection failed: {exc}"
            ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise TargetUnreachable(f"target gateway at {gateway_url}: introspection returned no data")
    return build_client_schema(doc["data"])


def validate_documents(scenario: Scenario, schema: Any) -> None:
    """Raise ConfigError naming the document and field of the first invalid operation."""
    from graphql import OperationDefinitionNode, parse, validate
    from graphql.execution.values import get_variable_values

    from capacity.drivers.variables import PoolCursor, compile_variables

    graphql_users = scenario.users.get("graphql")
    if graphql_users is None:
        return
    cursors = {name: PoolCursor(pool) for name, pool in scenario.data.items()}
    for op in graphql_users.operations:
        doc = parse(op.document)
        errors = validate(schema, doc)
        if errors:
            raise ConfigError(f"{op.document_path}: {errors[0].message}")
        definition = next(
            d
            for d in doc.definitions
            if isinstance(d, OperationDefinitionNode)
            and d.name is not None
            and d.name.value == op.operation_name
        )
        sample = compile_variables(op.variables, cursors)()
        coerced = get_variable_values(schema, definition.variable_definitions or (), sample)
        if isinstance(coerced, list) and coerced:
            raise ConfigError(
                f"{op.document_path}: operation {op.operation_name}: {coerced[0].message}"
            )


def auth_headers(scenario: Scenario) -> dict[str, str]:
    """The Authorization header from the scenario's named environment variable (never logged)."""
    env = scenario.targets.auth_env
    value = os.environ.get(env) if env else None
    return {"Authorization": value} if value else {}


def run_preflight(scenario: Scenario) -> None:
    check_targets(scenario)
    if "graphql" in scenario.users:
        schema = fetch_schema(scenario.targets.gateway_url, auth_headers(scenario))
        validate_documents(scenario, schema)
