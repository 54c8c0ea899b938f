"""Baseline files: TOML round trip, validation, the development baseline, run summaries."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from capacity.analysis.gate import GateConfig, Reference, RunMetrics, SloSpec
from capacity.baseline import (
    Baseline,
    dumps_toml,
    load_baseline,
    new_baseline,
    parse_baseline,
    read_run_metrics,
    reference_from_runs,
    save_baseline,
)
from capacity.errors import ConfigError

DEVELOPMENT = Path(__file__).resolve().parent.parent / "scenarios/baselines/development.toml"


def run(run_id: str, p95_ms: float | None, mem_mb_mean: float | None = 60.0) -> RunMetrics:
    return RunMetrics(
        run_id=run_id,
        scenario="smoke",
        operations={"graphql GetCustomer": {"p95_ms": p95_ms, "p99_ms": 9.0}},
        services={"gateway": {"cpu_cores_mean": 0.1, "mem_mb_mean": mem_mb_mean}},
    )


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    baseline = Baseline(
        name='odd "names" \\ and ünïcode',
        description="line one\nline two\ttab \x7f",
        config=GateConfig(alpha=0.01, min_effect=0.15, weak_min_effect=0.3, seed=7),
        slos=(
            SloSpec("operation", "graphql *", "p95_ms", 500.0),
            SloSpec("operation", "rules [a-z]*", "error_rate", 0.001),
            SloSpec("service", "*", "mem_mb_max", 512.0),
        ),
        reference=Reference(
            scenario="smoke",
            run_ids=("r1", "r2"),
            operations={'graphql "Quoted" Op': {"p95_ms": (1e-05, 123456789.125)}},
            services={"rules-engine": {"cpu_cores_mean": (0.1, 0.2)}},
        ),
        saved_at="2026-11-26T22:05:01Z",
    )
    path = tmp_path / "sub" / "b.toml"
    save_baseline(baseline, path)
    assert load_baseline(path) == baseline
    assert not (tmp_path / "sub" / "b.toml.tmp").exists()


def test_writer_output_is_toml_that_tomllib_reads_back() -> None:
    doc = {
        "schema": 1,
        "a": {"b c": {"x": [1.5, 2.0], "y": "s"}, "empty": {}},
        "z": True,
    }
    assert tomllib.loads(dumps_toml(doc)) == doc


def test_writer_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError):
        dumps_toml({"x": float("nan")})


def test_development_baseline_carries_the_stack_description_figures() -> None:
    baseline = load_baseline(DEVELOPMENT)
    assert baseline.reference is None
    ceilings = {(c.kind, c.pattern, c.metric): c.limit for c in baseline.slos}
    assert ceilings[("operation", "graphql *", "p95_ms")] == 500.0
    assert ceilings[("operation", "workflow complete *", "p95_ms")] == 2000.0
    assert ceilings[("operation", "rules *", "p95_ms")] == 50.0
    for service in ("gateway", "master-data", "workflow", "rules-engine"):
        assert ceilings[("service", service, "cpu_cores_mean")] == 0.5
        assert ceilings[("service", service, "mem_mb_max")] == 512.0
    assert baseline.config == GateConfig()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schema": "1"}, "schema = '1' is not supported"),
        ({"schema": 1, "extra": 1}, "unknown key 'extra'"),
        ({"schema": 1, "slos": {"queues": {}}}, "unknown key 'slos.queues'"),
        ({"schema": 1, "slos": {"services": {"*": {"cpu_cores": 0.5}}}}, "unknown metric"),
        ({"schema": 1, "slos": {"services": {"*": {"mem_mb_max": -1}}}}, "must be a number >= 0"),
        ({"schema": 1, "slos": {"services": {"*": {}}}}, "must be a table of metric ceilings"),
        ({"schema": 1, "gate": {"beta": 1}, "slos": {}}, "unknown key 'gate.beta'"),
        ({"schema": 1, "reference": {"scenario": "s"}}, "'reference.run_ids' must be"),
        (
            {"schema": 1, "reference": {"scenario": "s", "run_ids": ["a"]}},
            "records no operations or services",
        ),
        (
            {
                "schema": 1,
                "reference": {
                    "scenario": "s",
                    "run_ids": ["a"],
                    "operations": {"x": {"p95_ms": [True]}},
                },
            },
            "must list 1 numbers >= 0",
        ),
    ],
)
def test_validation_names_file_and_key(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_baseline(doc, "b.toml")
    assert str(exc.value).startswith("b.toml: ")
    assert message in str(exc.value)


def test_reference_records_per_run_values_and_skips_metrics_no_run_has() -> None:
    reference = reference_from_runs([run("r1", 7.9, None), run("r2", 8.1, None)])
    assert reference.run_ids == ("r1", "r2")
    assert reference.operations == {"graphql GetCustomer": {"p95_ms": (7.9, 8.1)}}
    assert reference.services == {"gateway": {"cpu_cores_mean": (0.1, 0.1)}}


def test_reference_refuses_metrics_only_some_runs_have() -> None:
    with pytest.raises(ConfigError, match=r"'graphql GetCustomer' p95_ms \(missing in r2\)"):
        reference_from_runs([run("r1", 7.9), run("r2", None)])


def test_new_baseline_keeps_template_slos() -> None:
    template = load_baseline(DEVELOPMENT)
    baseline = new_baseline([run("r1", 7.9)], "smoke", template)
    assert baseline.slos == template.slos
    assert baseline.reference is not None and baseline.reference.run_ids == ("r1",)
    assert baseline.saved_at.endswith("Z")


def write_summary(tmp_path: Path, summary: object) -> Path:
    (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return tmp_path


def test_read_run_metrics_accepts_nulls_and_ignores_extra_fields(tmp_path: Path) -> None:
    summary = {
        "schema": 1,
        "run_id": "r1",
        "scenario": "smoke",
        "operations": {"rules vat": {"count": 0, "p95_ms": None, "rps": 0.0}},
        "resources": {
            "temporal": {"cpu_cores_mean": None, "mem_mb_mean": 80.5, "samples": 3},
            "host": {"source": "host", "cpu_cores_mean": 1.5, "mem_mb_max": 9000.0},
        },
    }
    metrics = read_run_metrics(write_summary(tmp_path, summary))
    assert metrics.operations["rules vat"]["p95_ms"] is None
    assert metrics.operations["rules vat"]["count"] == 0.0
    assert metrics.services["temporal"]["mem_mb_mean"] == 80.5
    assert "rps" not in metrics.operations["rules vat"]
    assert set(metrics.services) == {"temporal"}


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ([], "expected a JSON object"),
        ({"schema": 2, "run_id": "r", "scenario": "s"}, "schema = 2 is not supported"),
        ({"schema": 1, "scenario": "s"}, "key 'run_id' is missing"),
        (
            {"schema": 1, "run_id": "r", "scenario": "s", "operations": {"x": {"p95_ms": "7"}}},
            "key 'operations.x.p95_ms': expected a finite number",
        ),
        ({"schema": 1, "run_id": "r", "scenario": "s", "resources": []}, "'resources' must be"),
    ],
)
def test_read_run_metrics_rejects_bad_summaries(
    tmp_path: Path, summary: object, message: str
) -> None:
    with pytest.raises(ConfigError, match="summary.json") as exc:
        read_run_metrics(write_summary(tmp_path, summary))
    assert message in str(exc.value)
