"""Scenario loading: every shipped scenario loads; every kind of bad input names file and key."""

from __future__ import annotations

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
    ],
)
def test_bad_input_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = bad(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


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
