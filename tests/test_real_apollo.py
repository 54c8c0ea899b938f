"""The toolkit against a real Apollo Federation gateway (`tests/apollo/`, npm packages).

`@apollo/gateway` 2.14 on `@apollo/server` 5.5 over two `@apollo/subgraph` services, in
development mode (introspection on) and production mode (`NODE_ENV=production`: introspection
refused, the supergraph SDL file is the schema). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from apollo_fixtures import ApolloFederation, write_apollo_scenario
from conftest import REPO_ROOT

pytestmark = [pytest.mark.apollo, pytest.mark.stack]

SHORT = {
    # 6 s of steady state after the warm-up rounded up to a whole 2 s slice
    "duration_s = 60": "duration_s = 8",
    "warmup_s = 5": "warmup_s = 1",
    "wait_s = [0.2, 0.6]": "wait_s = [0.02, 0.05]",
    "spawn_rate = 5": "spawn_rate = 50",
}
SECRET = "s3cr3t-header-value"
URL_PASSWORD = "pa55-in-url"


def capacity(*args: str, env: dict[str, str] | None = None, timeout_s: float = 180) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )


def run_scenario(scenario: Path, reports: Path, env: dict[str, str] | None = None) -> Any:
    proc = capacity("run", str(scenario), "--reports", str(reports), env=env)
    run_dirs = sorted(reports.iterdir()) if reports.is_dir() else []
    return proc, run_dirs


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("capacity: error:")]


def summary_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def folder_text(run_dir: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in run_dir.iterdir() if p.is_file()
    )


def test_development_gateway_runs_load_and_judges_its_slos(
    apollo_dev: ApolloFederation, tmp_path: Path
) -> None:
    """Health (the old Apollo path answers 400; the portable probe is used), introspection,
    load with scenario and environment headers, credentials in the URL, and a verdict."""
    url = apollo_dev.gateway_url.replace("http://", f"http://load:{URL_PASSWORD}@")
    scenario = write_apollo_scenario(
        tmp_path / "s",
        apollo_dev,
        replace={
            **SHORT,
            # 8 s of steady state: CreateInvoice (1 in 10) needs 50 for its error-rate SLO
            "duration_s = 60": "duration_s = 10",
            "embedded_stack = false": (
                "embedded_stack = false\n"
                '[targets.headers.gateway]\n"x-tenant-id" = "acme"\n'
                '[targets.headers_env.gateway]\n"x-api-key" = "CAPACITY_TEST_API_KEY"'
            ),
        },
    )
    scenario.write_text(scenario.read_text().replace(apollo_dev.gateway_url, url))
    proc, run_dirs = run_scenario(
        scenario, tmp_path / "reports", env={"CAPACITY_TEST_API_KEY": SECRET}
    )
    assert len(run_dirs) == 1, proc.stderr
    summary = summary_of(run_dirs[0])
    code = {"pass": 0, "fail": 1, "inconclusive": 3}[summary["verdict"]]
    assert proc.returncode == code, proc.stderr
    assert summary["verdict"] == "pass", (summary["reasons"], summary["slos"])
    judged = [s for s in summary["slos"] if s["passed"] is True]
    assert {s["target"] for s in judged} == set(summary["operations"])
    gateway = apollo_dev.stats("gateway")
    recorded = sum(op["count_all"] for op in summary["operations"].values())
    # Every operation the gateway saw is a recorded request, plus the pre-run probe and the
    # introspection query.
    by_name = {k.removeprefix("graphql "): v["count_all"] for k, v in summary["operations"].items()}
    # Every operation the gateway served is a recorded request, beside the pre-run probe
    # (anonymous) and introspection (the preflight, and the results store's schema hash).
    served = dict(gateway["operations_by_name"])
    assert served.pop("(anonymous)") == 1 and served.pop("IntrospectionQuery") >= 1
    assert served == by_name and sum(by_name.values()) == recorded
    assert gateway["operations_with_errors"] == 0
    headers = gateway["last_headers"]
    assert headers["x-tenant-id"] == "acme" and headers["x-api-key"] == SECRET
    assert headers["apollographql-client-name"] == "vextrus-capacity"
    assert headers["authorization"].startswith("Basic ")
    everything = proc.stdout + proc.stderr + folder_text(run_dirs[0])
    assert SECRET not in everything and URL_PASSWORD not in everything
    assert "http://***@127.0.0.1" in (run_dirs[0] / "run.json").read_text()


def test_production_gateway_refusing_introspection_names_the_schema_key(
    apollo_prod: ApolloFederation, tmp_path: Path
) -> None:
    scenario = write_apollo_scenario(tmp_path / "s", apollo_prod, replace=SHORT)
    proc, run_dirs = run_scenario(scenario, tmp_path / "reports")
    assert proc.returncode == 2 and not run_dirs
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "schema introspection failed: HTTP 400" in lines[0]
    assert "GraphQL introspection is not allowed by Apollo Server" in lines[0]
    assert "targets.graphql.schema" in lines[0]


def test_production_gateway_with_schema_file_persisted_queries_and_get(
    apollo_prod: ApolloFederation, tmp_path: Path
) -> None:
    settings = (
        f'[targets.graphql]\nschema = "{apollo_prod.supergraph_path}"\n'
        'persisted_queries = true\nmethod = "GET"\n'
    )
    scenario = write_apollo_scenario(
        tmp_path / "s",
        apollo_prod,
        replace={**SHORT, "embedded_stack = false": f"embedded_stack = false\n{settings}"},
    )
    proc, run_dirs = run_scenario(scenario, tmp_path / "reports")
    assert len(run_dirs) == 1, proc.stderr
    summary = summary_of(run_dirs[0])
    assert summary["verdict"] in ("pass", "inconclusive"), (summary["reasons"], proc.stderr)
    assert all(op["failures_all"] == 0 for op in summary["operations"].values())
    assert json.loads((run_dirs[0] / "run.json").read_text())["schema_source"] == (
        f"schema file {apollo_prod.supergraph_path.name}"
    )
    gateway = apollo_prod.stats("gateway")
    pq = gateway["persisted_queries"]
    recorded = sum(op["count_all"] for op in summary["operations"].values())
    # Each document was registered after a hash-only miss (twice if two users missed it at
    # once): every other request carried only the hash, and every request is recorded.
    assert pq["not_found"] == pq["registered"] >= 4
    assert pq["hits"] == pq["requests"] - 2 * pq["not_found"] > 0
    assert recorded == pq["requests"]
    # Queries went as GET, the mutation as POST (the pre-run probe is a POST too).
    create = summary["operations"]["graphql CreateInvoice"]["count_all"]
    assert gateway["http_methods"]["GET"] == recorded - create
    assert gateway["http_methods"]["POST"] == create + 1


def test_errors_injected_in_a_subgraph_are_counted_exactly(
    apollo_dev: ApolloFederation, tmp_path: Path
) -> None:
    apollo_dev.set_faults("master-data", 0.1)
    scenario = write_apollo_scenario(tmp_path / "s", apollo_dev, replace=SHORT)
    proc, run_dirs = run_scenario(scenario, tmp_path / "reports")
    apollo_dev.clear_faults()
    assert len(run_dirs) == 1, proc.stderr
    summary = summary_of(run_dirs[0])
    failures = sum(op["failures_all"] for op in summary["operations"].values())
    master = apollo_dev.stats("master-data")
    gateway = apollo_dev.stats("gateway")
    assert failures == master["injected_errors_total"] == gateway["operations_with_errors"] > 0
    partial = sum(op["partial"] for op in summary["operations"].values())
    assert partial > 0  # a failed root field leaves `data` beside `errors`
    messages = [m for op in summary["operations"].values() for m in op["errors"]]
    assert any("INJECTED_FAULT" in m for m in messages), messages
    assert summary["verdict"] == "fail" and proc.returncode == 1  # 10% against a 1% limit


def test_plain_locust_path_fails_its_slo_with_exit_1(
    apollo_dev: ApolloFederation, tmp_path: Path
) -> None:
    apollo_dev.set_faults("master-data", 0.2)
    scenario = write_apollo_scenario(tmp_path / "s", apollo_dev, replace=SHORT)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "graphql_ops.py"),
            "--scenario", str(scenario), "--headless", "-u", "10", "-r", "10", "-t", "6s",
            "--run-dir", str(run_dir), "--only-summary",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    apollo_dev.clear_faults()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "capacity: verdict fail" in proc.stderr
    summary = summary_of(run_dir)
    broken = [s for s in summary["slos"] if s["passed"] is False]
    assert broken and all(s["metric"] == "error_rate" for s in broken)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["slos"] and meta["load"]["users"] == 10 and meta["warmup_s"] == 1.0


def test_health_check_failure_quotes_the_server_and_names_the_key(
    apollo_dev: ApolloFederation, tmp_path: Path
) -> None:
    scenario = write_apollo_scenario(
        tmp_path / "s",
        apollo_dev,
        replace={
            "embedded_stack = false": (
                'embedded_stack = false\n[targets.health]\ngateway = "/status"'
            )
        },
    )
    proc, run_dirs = run_scenario(scenario, tmp_path / "reports")
    assert proc.returncode == 2 and not run_dirs and "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith("capacity: error: target gateway at http://127.0.0.1:")
    assert "/status is unreachable: HTTP 400" in line
    assert "Cross-Site Request Forgery" in line  # Apollo's own words
    assert "targets.health.gateway" in line
