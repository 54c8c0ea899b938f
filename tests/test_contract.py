"""The run folder is the contract: one folder renders the same anywhere, and each figure has
one definition (the percentile, the SLO rows), with no import cycles in the package."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from test_report_capacity import write_sweep_run

from capacity.analysis.gate import RunMetrics, check_slos
from capacity.analysis.steps import latency_percentiles_ms
from capacity.recorder import SliceRecorder
from capacity.report.build import build_report
from capacity.runfolder.histograms import Counts, percentile_ms
from capacity.slos import SloSpec

PACKAGE = REPO_ROOT / "capacity"
MAX_MODULE_LINES = 600


def test_a_run_folder_renders_the_same_on_any_machine_without_its_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = write_sweep_run(tmp_path, [2, 4, 8, 12, 16])
    scenario = tmp_path / "gone.toml"
    scenario.write_text("# the scenario this run used")
    meta = json.loads((run_dir / "run.json").read_text())
    meta.update(schema=2, host_cores=2, scenario_path=str(scenario))
    meta["load"]["think_time_s"] = 0.1
    (run_dir / "run.json").write_text(json.dumps(meta))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    first = build_report(run_dir)
    scenario.unlink()
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    second = build_report(run_dir)
    assert first == second
    assert "capacity" in first and first["capacity"]["think_time_s"] == pytest.approx(0.1)


def test_one_histogram_gives_one_p95_in_summary_sweep_and_gate() -> None:
    rng = np.random.default_rng(5)
    samples_ms = rng.lognormal(np.log(20.0), 0.8, 3000)
    records: list[dict] = []
    rec = SliceRecorder(records.append, worker="w", clock=lambda: 1000.0)
    for value in samples_ms:
        rec.on_request(name="graphql Q", response_time=float(value))
    (record,) = [r for r in [rec.close_slice()] if r]
    encoded = record["ops"]["graphql Q"]["hist"]
    summary_p95 = percentile_ms(Counts.decode(encoded), 95.0)
    step_p95 = latency_percentiles_ms([encoded]).p95_ms
    run = RunMetrics("r", "s", {"graphql Q": {"p95_ms": summary_p95, "count": 3000}}, {})
    (check,) = check_slos([SloSpec("operation", "graphql *", "p95_ms", 1e6)], [run])
    assert summary_p95 == step_p95 == check.value
    exact = float(np.percentile(samples_ms, 95, method="inverted_cdf"))
    assert summary_p95 == pytest.approx(exact, rel=2e-3)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("capacity")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_and_no_module_over_600_lines() -> None:
    modules = {
        _module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if "locustfiles" not in p.parts and "scenarios" not in p.parts
    }
    long = {
        name: n
        for name, p in modules.items()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
    graph = {
        name: {dep for dep in _imports(path) if dep in modules and dep != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a cycle between modules.
    for name in graph:
        graph[name] = {
            d
            for d in graph[name]
            if not (d.startswith(name + ".") and path_is_package(modules[name]))
        }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = trail[trail.index(dep) :] + [dep] if dep in trail else [node, dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def path_is_package(path: Path) -> bool:
    return path.name == "__init__.py"
