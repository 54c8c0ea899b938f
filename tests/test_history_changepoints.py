"""Run history: change points at the right runs, few false alarms, series that break where the
environment fingerprint changes (and say why). Synthetic histories go through the real
SQLite store, so the series are read back the way `capacity history` reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from capacity.history.changepoints import ChangePointConfig, best_split, e_divisive
from capacity.history.render import render_html, render_markdown
from capacity.history.series import scenario_history
from capacity.history.store import open_store

RUNS = 60
SHIFT_AT = 30
SERIES = 20


def fingerprint(cpu_limit: float = 1.0) -> dict[str, Any]:
    return {
        "toolkit_version": "0.1.0",
        "scenario_sha256": "a" * 64,
        "host_cores": 2.0,
        "service_limits": {"rules-engine": {"cpu_cores": cpu_limit, "mem_mb": None}},
    }


def summary(run: int, operations: dict[str, float], cpu_cores: float = 0.3) -> dict[str, Any]:
    return {
        "schema": 1,
        "run_id": f"run-{run:03d}",
        "scenario": "synthetic",
        "started_at": f"2026-12-01T{run // 60:02d}:{run % 60:02d}:00Z",
        "status": "complete",
        "verdict": "pass",
        "operations": {
            name: {"count": 1000, "failures": 0, "error_rate": 0.0, "p95_ms": p95, "p99_ms": p95}
            for name, p95 in operations.items()
        },
        "resources": {
            "rules-engine": {
                "source": "process",
                "cpu_cores_mean": cpu_cores,
                "mem_mb_mean": 80.0,
                "samples": 30,
            },
            "locust": {"source": "process", "cpu_cores_mean": 0.2, "samples": 30},
            "host": {"source": "host", "cpu_cores_mean": 1.0, "samples": 30},
        },
        "slos": [],
    }


def test_shifts_found_at_the_right_run_and_no_more_than_one_false_alarm(tmp_path: Path) -> None:
    """+15% P95 at run 30 of 60 with 5% noise: found within 1 run in each of 20 series; at
    most 1 change point in all of 20 series without a shift."""
    rng = np.random.default_rng(2026)
    shifted = 100.0 * (1 + 0.05 * rng.standard_normal((SERIES, RUNS)))
    shifted[:, SHIFT_AT:] *= 1.15
    flat = 100.0 * (1 + 0.05 * rng.standard_normal((SERIES, RUNS)))
    with open_store(tmp_path / "h.sqlite") as store:
        for run in range(RUNS):
            ops = {f"graphql Shifted{i:02d}": shifted[i, run] for i in range(SERIES)}
            ops.update({f"graphql Flat{i:02d}": flat[i, run] for i in range(SERIES)})
            store.record(summary(run, ops), fingerprint())
        runs = store.runs("synthetic")
    assert len(runs) == RUNS
    history = scenario_history(runs, targets=["graphql *"])
    p95 = {s.target: s for s in history.series if s.metric == "p95_ms"}
    assert len(p95) == 2 * SERIES
    false_alarms = 0
    for i in range(SERIES):
        points = p95[f"graphql Shifted{i:02d}"].change_points
        near = [c for c in points if abs(c.index - SHIFT_AT) <= 1]
        assert len(near) == 1, (i, points)
        assert near[0].relative_change == pytest.approx(0.15, abs=0.05)
        assert near[0].p_value <= 0.01
        assert near[0].run_id == f"run-{near[0].index:03d}"
        false_alarms += len(points) - 1
    flat_alarms = sum(len(p95[f"graphql Flat{i:02d}"].change_points) for i in range(SERIES))
    print(f"flat series: {flat_alarms} change point(s); extra in shifted: {false_alarms}")
    assert flat_alarms <= 1
    assert false_alarms <= 1
    assert not history.breaks


def test_a_cpu_limit_change_breaks_the_series_and_is_named(tmp_path: Path) -> None:
    """A different CPU limit for the rules engine from run 10 on: the series break there, the
    reason names the field, and the jump in CPU is not reported as a change point."""
    rng = np.random.default_rng(7)
    with open_store(tmp_path / "h.sqlite") as store:
        for run in range(20):
            limit = 1.0 if run < 10 else 2.0
            cpu = (0.5 if run < 10 else 0.9) * (1 + 0.03 * rng.standard_normal())
            latency = 40.0 * (1 + 0.05 * rng.standard_normal())
            store.record(summary(run, {"rules vat": latency}, cpu), fingerprint(limit))
        history = scenario_history(store.runs("synthetic"))
    assert len(history.breaks) == 1
    brk = history.breaks[0]
    assert (brk.index, brk.run_id, brk.previous_run_id) == (10, "run-010", "run-009")
    assert brk.reasons == ("service_limits.rules-engine.cpu_cores: 1 -> 2",)
    cpu_series = next(s for s in history.series if s.name == "rules-engine cpu_cores_mean")
    assert cpu_series.breaks == history.breaks and cpu_series.change_points == ()
    assert {s.target for s in history.series} == {"rules vat", "rules-engine"}  # no locust/host
    markdown = render_markdown([history])
    assert "- before run-010: service_limits.rules-engine.cpu_cores: 1 -> 2" in markdown
    html = render_html([history])
    assert "service_limits.rules-engine.cpu_cores: 1 -&gt; 2" in html
    assert html.count("data:image/png;base64,") == len(history.series)


def test_the_same_shift_across_a_break_is_not_a_change_point() -> None:
    """A series with no change within either stretch reports none, even with a jump between."""

    class Run:
        def __init__(self, i: int) -> None:
            self.run_id, self.scenario, self.verdict = f"r{i:02d}", "s", "pass"
            self.started_at = f"{i:02d}"
            self.fingerprint = {"sut_revision": "a" if i < 12 else "b"}
            self.fingerprint_sha256 = self.fingerprint["sut_revision"]
            p95 = (50.0 if i < 12 else 80.0) + (i % 3)
            self.operations = {"graphql Q": {"p95_ms": p95}}
            self.resources: dict[str, dict[str, Any]] = {}

    history = scenario_history([Run(i) for i in range(24)], operation_metrics=("p95_ms",))
    (series,) = history.series
    assert series.change_points == ()
    assert history.breaks[0].reasons == ("sut_revision: a -> b",)


def test_best_split_matches_a_direct_computation() -> None:
    """The prefix-sum statistic equals the energy distance written out pair by pair."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal(14)
    values[8:] += 2.0

    def q(tau: int, kappa: int) -> float:
        x, y = values[:tau], values[tau:kappa]
        n, m = len(x), len(y)
        between = np.abs(x[:, None] - y[None, :]).sum()
        within_x = np.abs(x[:, None] - x[None, :]).sum() / 2
        within_y = np.abs(y[:, None] - y[None, :]).sum() / 2
        energy = 2 * between / (n * m) - within_x / (n * (n - 1) / 2) - within_y / (m * (m - 1) / 2)
        return n * m / (n + m) * energy

    expected = max(
        ((tau, q(tau, kappa)) for tau in range(3, 12) for kappa in range(tau + 3, 15)),
        key=lambda item: item[1],
    )
    tau, value = best_split(values, 3)  # type: ignore[misc]
    assert tau == expected[0] == 8
    assert value == pytest.approx(expected[1])


def test_a_constant_series_and_a_short_one_have_no_change_point() -> None:
    assert e_divisive([5.0] * 30) == ()
    assert e_divisive([1.0, 2.0, 30.0, 31.0]) == ()
    with pytest.raises(ValueError):
        e_divisive([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError):
        ChangePointConfig(sig_level=0.0)
