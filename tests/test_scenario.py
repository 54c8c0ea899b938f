"""Scenario loading: every shipped scenario loads; every kind of bad input names file and key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SCENARIOS

from capacity.errors import ConfigError
from capacity.scenario import load_scenario

SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name: str) -> None:
    scenario = load_scenario(SCENARIOS / name)
    assert scenario.users, name
    assert scenario.load.total_duration_s > 0


def test_smoke_is_short_and_gated_by_the_stack_baselines() -> None:
    s = load_scenario(SCENARIOS / "smoke.toml")
    assert s.load.total_duration_s <= 60
    assert {"graphql", "rules", "workflows"} <= set(s.users)
    limits = {slo.pattern: slo.limit for slo in s.slos_of("operation") if slo.metric == "p95_ms"}
    assert limits["graphql *"] == 500
    assert limits["rules *"] == 50
    assert limits["workflow complete *"] == 2000
    limits_by_metric = {slo.metric: slo.limit for slo in s.slos_of("service")}
    assert limits_by_metric == {"cpu_cores_mean": 0.5, "mem_mb_max": 512}


def bad(tmp_path: Path, body: str) -> Path:
    """A scenario built from smoke.toml's data folders with `body` as its text."""
    for sub in ("graphql", "rules", "data"):
        (tmp_path / sub).symlink_to(SCENARIOS / sub)
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    return path


MINIMAL = """
[users.rules]
[[users.rules.rule_sets]]
file = "rules/vat-cases.json"
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[load\nusers = 1", "invalid TOML"),
        (MINIMAL + "[load]\nuser = 3\n", "key 'load.user': unknown key"),
        (MINIMAL + '[load]\nusers = "ten"\n', "key 'load.users': expected integer, got string"),
        (
            MINIMAL + "[load]\nduration_s = true\n",
            "key 'load.duration_s': expected number, got boolean",
        ),
        (MINIMAL + "[bogus]\nx = 1\n", "key 'bogus': unknown key"),
        (
            '[users.rules]\n[[users.rules.rule_sets]]\nfile = "rules/nope.json"\n',
            "key 'users.rules.rule_sets[0].file': file not found",
        ),
        (
            MINIMAL + '[targets]\ngateway = "http://10.1.2.3:4000/graphql"\n',
            "key 'targets.gateway': host '10.1.2.3' is not in targets.allowed_hosts",
        ),
        (MINIMAL + "[users.soap]\nweight = 1\n", "key 'users.soap': unknown user class"),
        (
            '[users.graphql]\n[[users.graphql.operations]]\ndocument = "graphql/customer.graphql"\n'
            'variables = { id = "${nopool.id}" }\n',
            "data pool 'nopool' is not defined",
        ),
        (
            MINIMAL + '[slos.operations."rules *"]\np95 = 50\n',
            "key 'slos.operations.rules *.p95': unknown key",
        ),
        # Numbers: finite, in range (issue 11).
        (MINIMAL + "[load]\nduration_s = nan\n", "key 'load.duration_s': must be a finite number"),
        (MINIMAL + "[load]\nduration_s = inf\n", "key 'load.duration_s': must be a finite number"),
        (MINIMAL + "[load]\nwarmup_s = nan\n", "key 'load.warmup_s': must be a finite number"),
        (MINIMAL + "[load]\nusers = 1000000000\n", "key 'load.users': must be between 1 and"),
        (MINIMAL + "[load]\nmax_users = -5\n", "key 'load.max_users': must be between"),
        (
            MINIMAL + '[slos.operations."rules *"]\np95_ms = nan\n',
            "key 'slos.operations.rules *.p95_ms': must be a finite number",
        ),
        (
            MINIMAL + "[[load.stages]]\nusers = 5\nduration_s = nan\n",
            "key 'load.stages[0].duration_s': must be a finite number",
        ),
        (
            MINIMAL.replace("[users.rules]", "[users.rules]\ntimeout_s = nan"),
            "key 'users.rules.timeout_s': must be a finite number",
        ),
        (
            MINIMAL + "[users.health]\nrate_per_s = inf\n",
            "key 'users.health.rate_per_s': must be a finite number",
        ),
        (
            MINIMAL + "[users.health]\nfixed_count = -3\n",
            "key 'users.health.fixed_count': must be between 0 and",
        ),
        (
            MINIMAL.replace("[users.rules]", "[users.rules]\nweight = 0"),
            "every user class has weight 0",
        ),
        # Addresses: one parser for allow-list, checks and drivers.
        (
            MINIMAL + '[targets]\ntemporal = "127.0.0.1"\n',
            "key 'targets.temporal': expected host:port",
        ),
        (MINIMAL + '[targets]\ntemporal = "127.0.0.1:99999"\n', "port 99999 is outside 1-65535"),
        (MINIMAL + '[targets]\ntemporal = "127.0.0.1:abc"\n', "port 'abc' is not a number"),
        (MINIMAL + '[targets]\ntemporal = "[127.0.0.1]"\n', "key 'targets.temporal'"),
        (
            MINIMAL + '[targets]\nrules_engine = "http://example.com\\\\@127.0.0.1:3012"\n',
            "key 'targets.rules_engine': the URL holds a space, backslash",
        ),
        (
            MINIMAL + '[targets.health]\nrules_engine = "http://10.0.0.1/health"\n',
            "key 'targets.health.rules_engine': host '10.0.0.1' is not in targets.allowed_hosts",
        ),
        (MINIMAL + "[targets.health]\nsearch = false\n", "key 'targets.health.search': unknown"),
        (
            MINIMAL + '[targets.graphql]\nschema = "missing.graphql"\n',
            "key 'targets.graphql.schema': schema file not found",
        ),
        (MINIMAL + '[targets.graphql]\nmethod = "PUT"\n', "expected POST or GET"),
        (
            MINIMAL + '[targets.headers.gateway]\n"Content-Length" = "1"\n',
            "not a header a scenario may set",
        ),
        (
            MINIMAL + '[targets.headers_env.gateway]\n"x-api-key" = "not a var"\n',
            "not an environment variable name",
        ),
        (MINIMAL + '[resources]\nprocesses = { db = "[" }\n', "not a regular expression"),
    ],
)
def test_bad_input_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = bad(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_anonymous_or_unnamed_operations_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "anon.graphql").write_text("{ customers { id } }")
    (tmp_path / "two.graphql").write_text("query A { a } query B { b }")
    for doc, message in (
        ("anon.graphql", "anon.graphql has an anonymous operation; name it"),
        ("two.graphql", "two.graphql has several operations (A, B); say which one"),
    ):
        path = tmp_path / "s.toml"
        path.write_text(f'[users.graphql]\n[[users.graphql.operations]]\ndocument = "{doc}"\n')
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_scenario(path)


def test_unreadable_files_are_one_line_without_their_content(tmp_path: Path) -> None:
    (tmp_path / "latin1.graphql").write_bytes("query Caf\xe9 { a }".encode("latin-1"))
    (tmp_path / "passwd.graphql").write_text("daemon:x:1:1:daemon:/usr/sbin:/bin/sh\n")
    for doc, message in (
        ("latin1.graphql", "latin1.graphql: GraphQL document is not UTF-8 text"),
        ("passwd.graphql", "passwd.graphql: not a valid GraphQL document at line 1"),
    ):
        path = tmp_path / "s.toml"
        path.write_text(f'[users.graphql]\n[[users.graphql.operations]]\ndocument = "{doc}"\n')
        with pytest.raises(ConfigError) as info:
            load_scenario(path)
        assert message in str(info.value) and "daemon" not in str(info.value)
    (tmp_path / "latin1.toml").write_bytes("[scenario]\nname = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="scenario file is not UTF-8 text"):
        load_scenario(tmp_path / "latin1.toml")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 * 1024 * 1024))
    with pytest.raises(ConfigError, match="the limit is"):
        load_scenario(big)


def test_real_gateway_keys_load(tmp_path: Path) -> None:
    (tmp_path / "schema.graphql").write_text("type Query { a: Int }")
    path = bad(
        tmp_path,
        MINIMAL
        + '[targets.health]\ngateway = "graphql"\nrules_engine = { url = "/ready", status = 204 }\n'
        + 'workflow = false\n[targets.graphql]\nschema = "schema.graphql"\nmethod = "GET"\n'
        + "persisted_queries = true\n"
        + '[targets.headers.gateway]\n"x-tenant-id" = "acme"\n'
        + '[targets.headers_env.gateway]\n"x-api-key" = "VEXTRUS_API_KEY"\n',
    )
    targets = load_scenario(path).targets
    checks = targets.health_checks()
    assert checks["gateway"].mode == "graphql"
    assert (checks["rules-engine"].url, checks["rules-engine"].status) == (
        "http://127.0.0.1:3012/ready",
        204,
    )
    assert checks["workflow"].mode == "off" and checks["master-data"].url.endswith("/health")
    assert targets.graphql.schema_file == tmp_path / "schema.graphql"
    assert targets.graphql.method == "GET" and targets.graphql.persisted_queries
    assert targets.headers["gateway"] == {"x-tenant-id": "acme"}
    assert targets.headers_env["gateway"] == {"x-api-key": "VEXTRUS_API_KEY"}


def test_credentials_in_a_url_are_never_public(tmp_path: Path) -> None:
    path = bad(tmp_path, MINIMAL + '[targets]\nrules_engine = "http://u:secret@127.0.0.1:3012"\n')
    targets = load_scenario(path).targets
    assert targets.public_urls()["rules-engine"] == "http://***@127.0.0.1:3012/"
    assert "secret" not in repr(targets.health_urls())
    assert targets.url_of("rules_engine").basic_auth == "Basic dTpzZWNyZXQ="


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing.toml: scenario file not found"):
        load_scenario(tmp_path / "nothing.toml")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "scenario file not found"),
        ("[load\n", "invalid TOML"),
        (MINIMAL + "[load]\nspeed = 1\n", "key 'load.speed': unknown key"),
        (MINIMAL + "[load]\nusers = 1.5\n", "key 'load.users': expected integer, got float"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, body: str | None, fragment: str
) -> None:
    path = tmp_path / "missing.toml" if body is None else bad(tmp_path, body)
    proc = subprocess.run(
        [sys.executable, "-m", "capacity", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("capacity: error: ")
    assert str(path) in lines[0] and fragment in lines[0]
    assert "Traceback" not in proc.stderr
