"""`[targets]`: addresses, the allow-list, health checks, schema source, headers."""

from __future__ import annotations

import re
from pathlib import Path

from capacity import __version__
from capacity.addresses import AddressError, parse_host_port, parse_http_url
from capacity.errors import ConfigError
from capacity.scenario.model import (
    SCHEMA_INTROSPECTION,
    SCHEMA_OFF,
    TARGET_SERVICES,
    GraphQLSettings,
    HealthCheck,
    Targets,
)
from capacity.scenario.reader import Section

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Headers the drivers set themselves; a scenario setting them would break the request.
_RESERVED_HEADERS = {"content-length", "host", "transfer-encoding", "connection"}
HEALTH_MODES = ("auto", "graphql", "tcp")


def load_targets(sec: Section | None, base: Path) -> Targets:
    if sec is None:
        return Targets()
    defaults = Targets()
    hosts = sec.get("allowed_hosts", list, list(defaults.allowed_hosts))
    if not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise sec.error(sec.path("allowed_hosts"), "expected a non-empty array of host names")
    urls = {}
    for key, attr in (
        ("gateway", "gateway_url"),
        ("master_data", "master_data_url"),
        ("workflow", "workflow_url"),
        ("rules_engine", "rules_url"),
    ):
        url = sec.get(key, str, getattr(defaults, attr))
        try:
            parse_http_url(url)
        except AddressError as exc:
            raise sec.error(sec.path(key), str(exc)) from None
        urls[attr] = url
    temporal = sec.get("temporal", str, defaults.temporal_address)
    try:
        parse_host_port(temporal)
    except AddressError as exc:
        raise sec.error(sec.path("temporal"), f"{exc}, got '{temporal}'") from None
    auth_env = sec.get("auth_env", str, None)
    if auth_env is not None and not _ENV_NAME.match(auth_env):
        raise sec.error(sec.path("auth_env"), f"not an environment variable name: '{auth_env}'")
    targets = Targets(
        **urls,
        temporal_address=temporal,
        namespace=_name(sec, "namespace", defaults.namespace),
        task_queue=_name(sec, "task_queue", defaults.task_queue),
        allowed_hosts=tuple(h.lower() for h in hosts),
        embedded_stack=sec.get("embedded_stack", bool, defaults.embedded_stack),
        auth_env=auth_env,
        health=_load_health(sec.sub("health")),
        graphql=_load_graphql(sec.sub("graphql"), base),
        headers=_load_headers(sec.sub("headers"), env=False),
        headers_env=_load_headers(sec.sub("headers_env"), env=True),
        worker_service=_name(sec, "worker_service", defaults.worker_service),
    )
    sec.finish()
    return targets


def _name(sec: Section, key: str, default: str) -> str:
    value = sec.get(key, str, default)
    if not value.strip():
        raise sec.error(sec.path(key), "must not be empty")
    return value


def _load_health(sec: Section | None) -> dict[str, HealthCheck]:
    """`[targets.health]`: per target, a path or URL, a table, a mode word, or false."""
    checks: dict[str, HealthCheck] = {}
    if sec is None:
        return checks
    for key in list(sec.table):
        if key not in TARGET_SERVICES:
            raise sec.error(
                sec.path(key), f"unknown target; expected one of {list(TARGET_SERVICES)}"
            )
        raw = sec.table[key]
        sec.seen.add(key)
        where = sec.path(key)
        if raw is False:
            checks[key] = HealthCheck("off")
        elif isinstance(raw, str):
            checks[key] = _health_from_text(sec, where, raw)
        elif isinstance(raw, dict):
            table = Section(sec.file, where, raw)
            text = table.require("url", str)
            check = _health_from_text(table, table.path("url"), text)
            status = table.integer("status", 0, 100, 599) if "status" in raw else None
            checks[key] = HealthCheck(check.mode, check.url, status)
            table.finish()
        else:
            raise sec.error(where, "expected a path or URL, a table with url and status, or false")
    sec.finish()
    return checks


def _health_from_text(sec: Section, where: str, text: str) -> HealthCheck:
    if text in HEALTH_MODES:
        return HealthCheck(text)
    if text.startswith("/"):
        return HealthCheck("http", text)  # a path: joined to the target's origin later
    try:
        url = parse_http_url(text)
    except AddressError as exc:
        raise sec.error(
            where, f"expected a path, a URL, {', '.join(HEALTH_MODES)} or false: {exc}"
        ) from None
    return HealthCheck("http", url.plain)


def _load_graphql(sec: Section | None, base: Path) -> GraphQLSettings:
    defaults = GraphQLSettings(client_version=__version__)
    if sec is None:
        return defaults
    schema = sec.get("schema", str, SCHEMA_INTROSPECTION)
    if schema not in (SCHEMA_INTROSPECTION, SCHEMA_OFF):
        path = (base / schema).resolve()
        if not path.is_file():
            raise sec.error(
                sec.path("schema"),
                f'schema file not found: {path} (use "introspection", "off" or an SDL file)',
            )
        schema = str(path)
    method = sec.get("method", str, "POST").upper()
    if method not in ("POST", "GET"):
        raise sec.error(sec.path("method"), f"expected POST or GET, got '{method}'")
    settings = GraphQLSettings(
        schema=schema,
        method=method,
        persisted_queries=sec.get("persisted_queries", bool, False),
        client_name=sec.get("client_name", str, defaults.client_name),
        client_version=sec.get("client_version", str, defaults.client_version),
    )
    sec.finish()
    return settings


def _load_headers(sec: Section | None, *, env: bool) -> dict[str, dict[str, str]]:
    """`[targets.headers.<target>]` (static values) or `[targets.headers_env.<target>]`
    (header -> environment variable name; the value is read at run time, never written)."""
    out: dict[str, dict[str, str]] = {}
    if sec is None:
        return out
    for key in list(sec.table):
        if key not in TARGET_SERVICES:
            raise sec.error(
                sec.path(key), f"unknown target; expected one of {list(TARGET_SERVICES)}"
            )
        table = sec.sub(key)
        assert table is not None
        headers: dict[str, str] = {}
        for name in list(table.table):
            value = table.get(name, str)
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
                raise table.error(table.path(name), "not a header a scenario may set")
            if env and not _ENV_NAME.match(value):
                raise table.error(table.path(name), f"not an environment variable name: '{value}'")
            if not env and ("\n" in value or "\r" in value):
                raise table.error(table.path(name), "a header value cannot hold a line break")
            headers[name] = value
        table.finish()
        out[key] = headers
    sec.finish()
    return out


def target_hosts(targets: Targets) -> dict[str, str]:
    """The host each target points at, keyed by the scenario key that names it."""
    hosts = {f"targets.{key}": targets.url_of(key).host for key in TARGET_SERVICES}
    hosts["targets.temporal"] = parse_host_port(targets.temporal_address)[0]
    for key, check in targets.health.items():
        if check.url.startswith("http"):
            hosts[f"targets.health.{key}"] = parse_http_url(check.url).host
    return hosts


def check_allowed_hosts(targets: Targets, file: Path) -> None:
    """Refuse a target host outside the allow-list, so a typo never loads the wrong system."""
    allowed = set(targets.allowed_hosts)
    for key, host in target_hosts(targets).items():
        if host not in allowed:
            raise ConfigError(
                f"{file}: key '{key}': host '{host}' is not in targets.allowed_hosts "
                f"{sorted(allowed)}; refusing to send load there"
            )
