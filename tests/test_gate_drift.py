"""The gate on a real, noisy CI machine (issue 12), in miniature: drift between sequential
blocks is not a regression; the same slowdown interleaved A B A B is detected; each metric's
minimum effect follows its measured spread."""

from __future__ import annotations

import numpy as np

from capacity.analysis.drift import RunContext, min_effect_for, trend
from capacity.analysis.gate import GateConfig, Reference, RunMetrics, Verdict, compare_to_reference

CONFIG = GateConfig()
OP = "graphql GetCustomer"


def run(run_id: str, p95: float, context: RunContext) -> RunMetrics:
    return RunMetrics(run_id, "smoke", {OP: {"p95_ms": p95, "count": 1000.0}}, {}, context)


def reference_of(runs: list[RunMetrics]) -> Reference:
    return Reference(
        "smoke",
        tuple(r.run_id for r in runs),
        {OP: {"p95_ms": tuple(r.operations[OP]["p95_ms"] or 0.0 for r in runs)}},
        {},
        tuple(r.context for r in runs if r.context is not None),
    )


def machine_load_drift(rng: np.random.Generator) -> list[float]:
    """12 identical runs while other work grows on the machine: P95 rises with host load."""
    load = np.linspace(0.75, 0.99, 12)
    return [float(32.0 * (1 + 1.2 * (x - 0.75)) * np.exp(rng.normal(0, 0.03))) for x in load]


def test_sequential_blocks_under_a_load_change_are_inconclusive_not_a_regression() -> None:
    rng = np.random.default_rng(7)
    p95 = machine_load_drift(rng)
    load = np.linspace(0.75, 0.99, 12)
    runs = [
        run(f"r{i}", p95[i], RunContext(f"r{i}", order_s=1000.0 + 60 * i, host_busy=float(load[i])))
        for i in range(12)
    ]
    (check,) = compare_to_reference(reference_of(runs[:6]), runs[6:], CONFIG)
    # The same code, slower only because the machine got busier: never a regression.
    assert check.verdict == Verdict.INCONCLUSIVE
    assert "rose steadily over the runs" in check.evidence


def test_the_machine_load_gap_between_sides_is_named() -> None:
    ref = [run(f"a{i}", 30.0 + i * 0.1, RunContext(f"a{i}", host_busy=0.45)) for i in range(6)]
    cur = [run(f"b{i}", 40.0 + i * 0.1, RunContext(f"b{i}", host_busy=0.97)) for i in range(6)]
    (check,) = compare_to_reference(reference_of(ref), cur, CONFIG)
    assert check.verdict == Verdict.INCONCLUSIVE
    assert "the machine's load differed: 45% of its cores vs 97%" in check.evidence


def test_the_same_slowdown_interleaved_is_detected_pair_by_pair() -> None:
    rng = np.random.default_rng(11)
    drift = np.linspace(1.0, 1.8, 6)  # the machine slows everything down as the job goes on
    ref, cur = [], []
    for i in range(6):
        pair = f"g#{i}"
        base = 30.0 * drift[i] * float(np.exp(rng.normal(0, 0.02)))
        ref.append(run(f"a{i}", base, RunContext(f"a{i}", order_s=100.0 * i, pair=pair)))
        slow = 1.2 * 30.0 * drift[i] * float(np.exp(rng.normal(0, 0.02)))
        cur.append(run(f"b{i}", slow, RunContext(f"b{i}", order_s=100.0 * i + 50, pair=pair)))
    (check,) = compare_to_reference(reference_of(ref), cur, CONFIG)
    # Unpaired, the drift (+80% over the job) would swamp a 20% slowdown; paired, it cancels.
    assert check.paired and check.verdict == Verdict.REGRESSION, check.evidence
    assert "(paired)" in check.evidence


def test_identical_code_interleaved_under_drift_passes() -> None:
    rng = np.random.default_rng(3)
    drift = np.linspace(1.0, 1.8, 6)
    ref, cur = [], []
    for i in range(6):
        pair = f"g#{i}"
        ref.append(run(f"a{i}", 30.0 * drift[i] * float(np.exp(rng.normal(0, 0.02))),
                       RunContext(f"a{i}", order_s=100.0 * i, pair=pair)))  # fmt: skip
        cur.append(run(f"b{i}", 30.0 * drift[i] * float(np.exp(rng.normal(0, 0.02))),
                       RunContext(f"b{i}", order_s=100.0 * i + 50, pair=pair)))  # fmt: skip
    (check,) = compare_to_reference(reference_of(ref), cur, CONFIG)
    assert check.verdict == Verdict.PASS, check.evidence


def test_the_minimum_effect_follows_a_metric_s_spread() -> None:
    quiet, source = min_effect_for([100, 101, 99, 100, 102, 98], 0.10)
    assert quiet == 0.10 and source.startswith("default")
    noisy, source = min_effect_for([100, 130, 80, 110, 95, 125], 0.10)
    assert noisy > 0.3 and "spread" in source
    assert trend([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], 0.05) is not None
    assert trend([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1], 0.05) is None  # order unknown
