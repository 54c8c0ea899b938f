"""`capacity check` and `capacity baseline` end to end on fake run folders, via cli.main."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from capacity.cli import main

OPERATIONS = ("graphql GetCustomer", "rules vat", "workflow complete InvoicePosting")
SERVICES = ("gateway", "rules-engine")
DEVELOPMENT = Path(__file__).resolve().parent.parent / "scenarios/baselines/development.toml"

MakeRuns = Callable[..., list[Path]]


def write_run(
    folder: Path,
    run_id: str,
    p95_ms: dict[str, float],
    cpu_cores: dict[str, float],
    scenario: str = "smoke",
    error_rate: float = 0.0,
) -> Path:
    """A run folder holding only summary.json, shaped like the analysis writes it."""
    run_dir = folder / run_id
    run_dir.mkdir(parents=True)
    operations = {
        name: {
            "count": 800,
            "failures": int(800 * error_rate),
            "partial": 0,
            "error_rate": error_rate,
            "rps": 13.5,
            "p50_ms": p95 / 2.5,
            "p95_ms": p95,
            "p99_ms": p95 * 1.5,
            "p999_ms": p95 * 2,
            "max_ms": p95 * 3,
        }
        for name, p95 in p95_ms.items()
    }
    resources = {
        name: {
            "cpu_cores_mean": cores,
            "cpu_cores_max": cores * 2,
            "mem_mb_mean": 61.0,
            "mem_mb_max": 63.2,
            "samples": 60,
        }
        for name, cores in cpu_cores.items()
    }
    summary = {
        "schema": 1,
        "run_id": run_id,
        "scenario": scenario,
        "started_at": "2026-11-26T22:05:01Z",
        "duration_s": 60.2,
        "verdict": "pass",
        "reasons": [],
        "operations": operations,
        "resources": resources,
        "slos": [],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


@pytest.fixture
def make_runs(tmp_path: Path) -> MakeRuns:
    """Factory: N runs with 5% run-to-run noise, every latency scaled by `slowdown`."""
    rng = np.random.default_rng(42)
    counter = iter(range(1000))

    def make(
        n: int,
        slowdown: float = 1.0,
        operations: tuple[str, ...] = OPERATIONS,
        scenario: str = "smoke",
        error_rate: float = 0.0,
    ) -> list[Path]:
        runs = []
        for _ in range(n):
            noise = float(np.exp(rng.normal(0, 0.05)))
            p95 = {name: 20.0 * (i + 1) * slowdown * noise for i, name in enumerate(operations)}
            cpu = {name: 0.2 * float(np.exp(rng.normal(0, 0.03))) for name in SERVICES}
            run_id = f"20261126-{next(counter):06d}-{scenario}"
            runs.append(write_run(tmp_path / "reports", run_id, p95, cpu, scenario, error_rate))
        return runs

    return make


def save(runs: list[Path], out: Path, *extra: str) -> Path:
    assert main(["baseline", "save", *map(str, runs), "--out", str(out), *extra]) == 0
    return out


def check(runs: list[Path], baseline: Path, *extra: str) -> int:
    return main(["check", *map(str, runs), "--baseline", str(baseline), *extra])


def test_unchanged_runs_pass_and_all_outputs_are_written(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = save(make_runs(6), tmp_path / "b.toml", "--slos", str(DEVELOPMENT))
    capsys.readouterr()
    junit, md, js = tmp_path / "out/gate.xml", tmp_path / "out/gate.md", tmp_path / "out/gate.json"
    code = check(
        make_runs(6), baseline, "--junit", str(junit), "--markdown", str(md), "--json", str(js)
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: pass (exit 0)" in out
    decision = json.loads(js.read_text())
    assert decision["verdict"] == "pass" and decision["exit_code"] == 0
    relative = [c for c in decision["checks"] if c["check"] == "relative"]
    assert len(relative) == len(OPERATIONS) + 2 * len(SERVICES)
    assert all(c["verdict"] == "pass" and not c["weak"] for c in relative)
    assert "### Capacity gate" in md.read_text()
    assert junit.read_text().startswith("<?xml")


def test_regression_exits_1_with_evidence(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = save(make_runs(6), tmp_path / "b.toml")
    js = tmp_path / "gate.json"
    assert check(make_runs(6, slowdown=1.3), baseline, "--json", str(js)) == 1
    out = capsys.readouterr().out
    assert "regression: graphql GetCustomer p95_ms: +" in out
    assert "[CI +" in out and "p=0.00108" in out
    verdicts = {c["name"]: c["verdict"] for c in json.loads(js.read_text())["checks"]}
    assert verdicts["rules vat p95_ms"] == "regression"
    assert verdicts["gateway cpu_cores_mean"] == "pass"


def test_slo_failure_exits_1(make_runs: MakeRuns, tmp_path: Path) -> None:
    assert check(make_runs(1, error_rate=0.05), DEVELOPMENT) == 1
    assert check(make_runs(1), DEVELOPMENT) == 0


def test_inconclusive_exits_3(make_runs: MakeRuns, tmp_path: Path) -> None:
    baseline = save(make_runs(6), tmp_path / "b.toml")
    current = [
        write_run(
            tmp_path / "now",
            f"now-{i}",
            {n: 20.0 * (j + 1) * f for j, n in enumerate(OPERATIONS)},
            dict.fromkeys(SERVICES, 0.2),
        )
        for i, f in enumerate((0.7, 0.75, 1.12, 1.15, 1.2, 1.25))
    ]
    assert check(current, baseline) == 3


def test_single_runs_are_a_weak_comparison(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = save(make_runs(1), tmp_path / "b.toml")
    assert "weak comparison" in capsys.readouterr().err
    assert check(make_runs(1, slowdown=1.1), baseline) == 0
    out = capsys.readouterr().out
    assert "relative (weak)" in out
    assert "weak comparison (1 reference vs 1 current runs)" in out
    # 1 vs 1 cannot reach significance: a 50% shift is suspect, exit 3 (issue 11), or with
    # --fail-weak a regression, exit 1.
    assert check(make_runs(1, slowdown=1.5), baseline) == 3
    assert "suspect" in capsys.readouterr().out
    assert check(make_runs(1, slowdown=1.5), baseline, "--fail-weak") == 1


def test_operation_missing_from_run_exits_2_listing_it(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = save(make_runs(3), tmp_path / "b.toml")
    capsys.readouterr()
    assert check(make_runs(3, operations=OPERATIONS[:1]), baseline) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "lack 2 reference metric(s)" in err
    assert "operation 'rules vat' p95_ms" in err
    assert "operation 'workflow complete InvoicePosting' p95_ms" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "baseline file not found"),
        ("schema = 1\n[slos.operations\n", "not valid TOML"),
        ("schema = 2\n", "schema = 2 is not supported"),
        ("name = 'x'\n", "key 'schema' is missing"),
        ("schema = 1\n", "nothing to gate"),
        ('schema = 1\n[slos.operations."*"]\np95 = 5\n', "unknown metric"),
        ('schema = 1\n[slos.services."*"]\nmem_mb_max = "big"\n', "must be a number"),
        (
            'schema = 1\n[gate]\nalpha = 2.0\n[slos.services."*"]\nmem_mb_max = 512\n',
            "alpha must be in (0, 1)",
        ),
        (
            'schema = 1\n[reference]\nscenario = "smoke"\nrun_ids = ["a", "b"]\n'
            '[reference.operations."graphql X"]\np95_ms = [1.0]\n',
            "must list 2 numbers",
        ),
    ],
)
def test_bad_baseline_exits_2_with_one_line(
    make_runs: MakeRuns,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert check(make_runs(1), path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"capacity: error: {path}")
    assert message in err
    assert err.count("\n") == 1


def test_bad_runs_exit_2(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = save(make_runs(2), tmp_path / "b.toml")
    assert check([tmp_path / "nope"], baseline) == 2
    empty = tmp_path / "empty-run"
    empty.mkdir()
    assert check([empty], baseline) == 2
    assert "summary.json: missing" in capsys.readouterr().err
    corrupt = make_runs(1)[0]
    (corrupt / "summary.json").write_text("{not json", encoding="utf-8")
    assert check([corrupt], baseline) == 2
    assert "invalid JSON" in capsys.readouterr().err
    other = make_runs(1, scenario="steady")
    assert check(other, baseline) == 2
    assert "scenario 'steady'" in capsys.readouterr().err
    same = make_runs(1)
    assert check(same + same, baseline) == 2
    assert "given twice" in capsys.readouterr().err
    reference_runs = sorted((tmp_path / "reports").iterdir())[:1]
    assert check(reference_runs, baseline) == 2
    assert "own reference runs" in capsys.readouterr().err


def test_junit_is_valid_with_one_case_per_gated_metric(make_runs: MakeRuns, tmp_path: Path) -> None:
    baseline = save(make_runs(6), tmp_path / "b.toml", "--slos", str(DEVELOPMENT))
    junit, js = tmp_path / "gate.xml", tmp_path / "gate.json"
    check(make_runs(6, slowdown=1.3), baseline, "--junit", str(junit), "--json", str(js))
    decision = json.loads(js.read_text())
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(decision["checks"]) == int(root.get("tests", "-1"))
    assert {c.get("name") for c in cases} == {c["name"] for c in decision["checks"]}
    total_failures = 0
    for suite in root.findall("testsuite"):
        suite_cases = suite.findall("testcase")
        failures = [c for c in suite_cases if c.find("failure") is not None]
        errors = [c for c in suite_cases if c.find("error") is not None]
        assert suite.get("name")
        assert int(suite.get("tests", "-1")) == len(suite_cases)
        assert int(suite.get("failures", "-1")) == len(failures)
        assert int(suite.get("errors", "-1")) == len(errors)
        assert suite.find("properties") is not None
        total_failures += len(failures)
        for case in suite_cases:
            assert case.get("name") and case.get("classname") and case.get("time") is not None
            assert len(list(case)) == 1
            assert list(case)[0].tag in {"failure", "error", "system-out"}
    assert int(root.get("failures", "-1")) == total_failures
    failed = {c["name"] for c in decision["checks"] if c["verdict"] in ("regression", "fail")}
    assert failed and {c.get("name") for c in cases if c.find("failure") is not None} == failed


def test_markdown_is_appended_to_github_step_summary(
    make_runs: MakeRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    md = tmp_path / "gate.md"
    assert check(make_runs(1), DEVELOPMENT, "--markdown", str(md)) == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert text.endswith(md.read_text())
    assert "| ✅ | slo | graphql GetCustomer | p95_ms |" in text


def test_baseline_save_keeps_slos_of_existing_file_and_show_reads_it(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b.toml"
    save(make_runs(2), out, "--slos", str(DEVELOPMENT))
    save(make_runs(3), out)
    assert "17 SLO ceiling(s) from" in capsys.readouterr().out  # 16 + span db *
    assert main(["baseline", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "reference: scenario 'smoke', 3 run(s)" in shown
    assert "slo operation 'graphql *': p95_ms <= 500 ms" in shown
    assert "operation 'graphql GetCustomer': p95_ms" in shown


def test_cli_overrides_and_help(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = save(make_runs(6), tmp_path / "b.toml")
    slower = make_runs(6, slowdown=1.3)
    assert check(slower, baseline) == 1
    assert check(slower, baseline, "--min-effect", "0.5") == 0
    assert check(slower, baseline, "--alpha", "1.5") == 2
    for argv in (["check", "--help"], ["baseline", "save", "--help"]):
        assert main(argv) == 0
        assert "example" in capsys.readouterr().out


def test_one_reports_folder_of_interleaved_runs_is_split_by_side(
    make_runs: MakeRuns, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`capacity run --repeat N --interleave` writes both sides into one folder; `--side`
    picks each side's runs from all of it, and the pairs are tested as pairs."""
    a, b = make_runs(6, slowdown=1.3), make_runs(6)
    for side, runs in (("A", a), ("B", b)):
        for index, run_dir in enumerate(runs):
            path = run_dir / "summary.json"
            summary = json.loads(path.read_text())
            summary["repeat"] = {"group": "g1", "index": index, "of": 6, "side": side}
            path.write_text(json.dumps(summary))
    everything = sorted(a + b)
    baseline = save(everything, tmp_path / "b.toml", "--side", "B")
    assert "6 run(s)" in capsys.readouterr().out
    js = tmp_path / "gate.json"
    assert check(everything, baseline, "--side", "A", "--json", str(js)) == 1
    decision = json.loads(js.read_text())
    rules = next(c for c in decision["checks"] if c["name"] == "rules vat p95_ms")
    assert rules["verdict"] == "regression"
    assert "pair" in json.dumps(rules).lower() or "wilcoxon" in json.dumps(rules).lower()
    capsys.readouterr()
    assert main(["check", *map(str, make_runs(2)), "--baseline", str(baseline), "--side", "A"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("was recorded as side A of `capacity run --repeat N --interleave`")
    assert len(err.splitlines()) == 1
