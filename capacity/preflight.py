"""Checks made before any load: every target answers, every GraphQL document is valid.

Failing here costs one clear line and exit 2; failing under load costs thousands of
identical connection errors and a meaningless report. Every failure quotes what the server
said (status and its own message) and names the scenario key that changes the check.

Health checks fit real gateways: Apollo Server 3 answers `/.well-known/apollo/server-health`,
Apollo Server 4 and 5 answer that GET with 400 (CSRF prevention), Apollo Router serves health
on a listener of its own. The gateway's default check (`auto`) therefore tries the stack
description's path and, when that does not answer 2xx, a `{ __typename }` query sent as a
JSON POST, which every GraphQL server accepts. Documents are validated against the schema
from introspection, from an SDL file (a federation supergraph included), or not at all.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from capacity.addresses import parse_host_port, parse_http_url
from capacity.errors import ConfigError, TargetUnreachable
from capacity.scenario import HealthCheck, Scenario
from capacity.scenario.model import SCHEMA_INTROSPECTION
from capacity.scenario.reader import read_text_file

INTROSPECTION_TIMEOUT_S = 10.0
INTROSPECTION_ATTEMPTS = 3
HEALTH_TIMEOUT_S = 3.0
TYPENAME_QUERY = b'{"query":"{ __typename }"}'
# Targets are addressed directly: a proxy from the environment must never relay load traffic.
DIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SERVICE_KEYS = {
    "gateway": "gateway",
    "master-data": "master_data",
    "workflow": "workflow",
    "rules-engine": "rules_engine",
}


def required_targets(scenario: Scenario) -> dict[str, HealthCheck]:
    """Service -> its health check, for the user classes in use (temporal: a TCP check)."""
    checks = scenario.targets.health_checks()
    needed: dict[str, HealthCheck] = {}
    kinds = {k for k, u in scenario.users.items() if u.weight > 0 or u.fixed_count > 0}
    if "graphql" in kinds:
        needed["gateway"] = checks["gateway"]
    if "rules" in kinds:
        needed["rules-engine"] = checks["rules-engine"]
    if "workflows" in kinds:
        needed["temporal"] = HealthCheck("tcp", scenario.targets.temporal_address)
    if "health" in kinds:
        needed.update(checks)
    return {s: c for s, c in needed.items() if c.mode != "off"}


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def server_message(body: bytes) -> str:
    """What the server said: a GraphQL error's message, else the start of the body."""
    try:
        doc = json.loads(body)
    except ValueError:
        return _one_line(body.decode("utf-8", errors="replace"))
    if isinstance(doc, dict):
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return _one_line(str(errors[0].get("message", "")))
        for key in ("message", "error", "status"):
            if isinstance(doc.get(key), str):
                return _one_line(doc[key])
    return _one_line(body.decode("utf-8", errors="replace"))


def _request(
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = HEALTH_TIMEOUT_S,
) -> tuple[int, bytes]:
    """(status, body) of one request; a connection failure raises OSError with the reason."""
    parsed = parse_http_url(url)
    all_headers = dict(headers or {})
    if parsed.basic_auth and "Authorization" not in all_headers:
        all_headers["Authorization"] = parsed.basic_auth
    if data is not None:
        all_headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(
        parsed.plain, data=data, headers=all_headers, method="POST" if data else "GET"
    )
    try:
        with DIRECT_OPENER.open(req, timeout=timeout_s) as resp:
            return int(resp.status), resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(1 << 16)
    except urllib.error.URLError as exc:
        raise OSError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None


def probe_http(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> str | None:
    """None when `url` answers 2xx, else what went wrong, in a few words."""
    try:
        status, body = _request(url, timeout_s=timeout_s)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    if 200 <= status < 300:
        return None
    message = server_message(body)
    return f"HTTP {status}" + (f' "{message}"' if message else "")


def probe_tcp(address: str, timeout_s: float = HEALTH_TIMEOUT_S) -> str | None:
    try:
        host, port = parse_host_port(address)
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def probe_graphql(
    url: str, headers: Mapping[str, str], timeout_s: float = HEALTH_TIMEOUT_S
) -> str | None:
    """None when the server answers `{ __typename }` (a JSON POST, which Apollo's CSRF
    prevention accepts), else the status and the server's own message."""
    try:
        status, body = _request(url, data=TYPENAME_QUERY, headers=headers, timeout_s=timeout_s)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    if status == 200:
        try:
            doc = json.loads(body)
        except ValueError:
            return "HTTP 200 but not a GraphQL answer (not JSON)"
        if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
            return None
        return f'HTTP 200 without data: "{server_message(body)}"'
    return f'HTTP {status} "{server_message(body)}"'


def gateway_headers(scenario: Scenario) -> dict[str, str]:
    """Headers every gateway request carries: scenario headers, client awareness, auth."""
    from capacity.drivers.headers import target_headers

    return target_headers(scenario.targets, "gateway")


def check_one(scenario: Scenario, service: str, check: HealthCheck) -> None:
    key = SERVICE_KEYS.get(service, service)
    hint = (
        f'set targets.health.{key} (a path, a URL, "graphql", "tcp" or false) to change the check'
        if service in SERVICE_KEYS
        else "check targets.temporal"
    )
    if check.mode == "tcp":
        problem = probe_tcp(check.url)
    elif check.mode in ("auto", "graphql"):
        headers = gateway_headers(scenario) if service == "gateway" else {}
        endpoint = scenario.targets.url_of(key).plain
        first = probe_http(check.url) if check.mode == "auto" else "not tried"
        problem = None if first is None else probe_graphql(endpoint, headers)
        if problem is not None and check.mode == "auto":
            problem = f"{check.url}: {first}; {endpoint} {{ __typename }}: {problem}"
    else:
        problem = _probe_status(check)
    if problem is not None:
        where = check.url if check.mode != "auto" else scenario.targets.url_of(key).public
        raise TargetUnreachable(
            f"target {service} at {parse_public(where)} is unreachable: {problem}; {hint}"
        )


def parse_public(url: str) -> str:
    try:
        return parse_http_url(url).public
    except ValueError:
        return url


def _probe_status(check: HealthCheck) -> str | None:
    if check.status is None:
        return probe_http(check.url)
    try:
        status, body = _request(check.url)
    except OSError as exc:
        return str(exc) or type(exc).__name__
    if status == check.status:
        return None
    return f'HTTP {status} (expected {check.status}) "{server_message(body)}"'


def check_targets(scenario: Scenario) -> None:
    """Raise TargetUnreachable naming the first service that does not answer."""
    for service, check in required_targets(scenario).items():
        check_one(scenario, service, check)
    env = scenario.targets.auth_env
    if env and env not in os.environ:
        raise ConfigError(
            f"{scenario.path}: key 'targets.auth_env': environment variable {env} is not set"
        )
    for target, headers in scenario.targets.headers_env.items():
        for header, var in headers.items():
            if var not in os.environ:
                raise ConfigError(
                    f"{scenario.path}: key 'targets.headers_env.{target}.{header}': "
                    f"environment variable {var} is not set"
                )


def fetch_schema(scenario: Scenario) -> Any:
    """The gateway's schema by introspection; a refusal says so and names the key to use."""
    from graphql import build_client_schema, get_introspection_query

    url = scenario.targets.url_of("gateway")
    body = json.dumps({"query": get_introspection_query()}).encode()
    headers = gateway_headers(scenario)
    where = f"target gateway at {url.public}"
    advice = (
        "if the gateway refuses introspection (production mode), set targets.graphql.schema "
        'to its schema file (the supergraph SDL), or to "off"'
    )
    for attempt in range(1, INTROSPECTION_ATTEMPTS + 1):
        try:
            status, raw = _request(
                url.plain, data=body, headers=headers, timeout_s=INTROSPECTION_TIMEOUT_S
            )
        except OSError as exc:
            raise TargetUnreachable(f"{where}: schema introspection failed: {exc}") from None
        # A 5xx can be one unlucky request to a busy or fault-injecting gateway; a 4xx
        # (auth, introspection refused) will not change on retry.
        if status >= 500 and attempt < INTROSPECTION_ATTEMPTS:
            continue
        break
    message = server_message(raw)
    if status != 200:
        raise TargetUnreachable(
            f'{where}: schema introspection failed: HTTP {status} "{message}"; {advice}'
        )
    try:
        doc = json.loads(raw)
    except ValueError:
        raise TargetUnreachable(f"{where}: introspection answer is not JSON; {advice}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise TargetUnreachable(f'{where}: schema introspection refused: "{message}"; {advice}')
    try:
        return build_client_schema(doc["data"])
    except (TypeError, ValueError, KeyError) as exc:
        raise TargetUnreachable(f"{where}: introspection answer unusable: {exc}") from None


def schema_from_file(scenario: Scenario) -> Any:
    """The schema from an SDL file: a plain schema or a federation supergraph (its
    `@join__*`/`@link` directives are kept; unknown directives are not an error)."""
    from graphql import GraphQLError, build_ast_schema, parse

    path = scenario.targets.graphql.schema_file
    assert path is not None
    text = read_text_file(path, "schema file", limit=64 * 1024 * 1024)
    try:
        return build_ast_schema(parse(text), assume_valid_sdl=True)
    except (GraphQLError, TypeError) as exc:
        line = getattr(exc, "locations", None)
        where = f" at line {line[0].line}" if line else ""
        raise ConfigError(
            f"{path}: key 'targets.graphql.schema': not a GraphQL schema (SDL){where}"
        ) from None


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


def check_docker(scenario: Scenario) -> None:
    """A scenario that samples containers needs the Docker engine before any load."""
    if not scenario.resources.any_docker:
        return
    from capacity.collect.docker_source import connect_docker

    try:
        connect_docker(base_url=scenario.resources.docker_host)
    except TargetUnreachable as exc:
        raise TargetUnreachable(
            f"{exc}; [resources] samples containers (resources.docker_host or DOCKER_HOST)"
        ) from None


def run_preflight(scenario: Scenario) -> str | None:
    """Check targets and validate documents; returns the SHA-256 of the schema they were
    validated against (printed canonically), for run.json, or None when none was used."""
    check_targets(scenario)
    check_docker(scenario)
    schema = None
    if "graphql" in scenario.users:
        source = scenario.targets.graphql.schema
        if source == SCHEMA_INTROSPECTION:
            schema = fetch_schema(scenario)
        elif scenario.targets.graphql.schema_file is not None:
            schema = schema_from_file(scenario)
        if schema is not None:
            validate_documents(scenario, schema)
    return schema_sha256(schema) if schema is not None else None


def schema_sha256(schema: Any) -> str:
    import hashlib

    from graphql import print_schema

    return hashlib.sha256(print_schema(schema).encode()).hexdigest()
