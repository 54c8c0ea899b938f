"""From slice records of a simulated closed-loop run to a fit, a capacity and a projection."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hdrh.histogram import HdrHistogram

from capacity.analysis.model import (
    detect_knee,
    fit_usl,
    slo_limited_capacity,
    usl_throughput,
)
from capacity.analysis.planning import (
    estimate_demand,
    first_bottleneck,
    project,
)
from capacity.analysis.steps import (
    find_steady_windows,
    inconsistent_steps,
    slices_frame,
    summarize_steps,
)

SIGMA, KAPPA, LAMBDA_RPS = 0.04, 0.0008, 8.0
THINK_S = 0.05
SLICE_S = 5.0
CPU_S_PER_REQUEST = 0.004
T0 = 1_764_200_000.0


def simulated_run(
    user_steps: list[int], slices_per_step: int = 4
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Slice records and resource samples of a closed loop whose throughput follows the USL.

    Response time comes from Little's law, R = N / X - Z, so every step is consistent.
    """
    rng = np.random.default_rng(11)
    records: list[dict[str, Any]] = []
    samples: list[tuple[Any, ...]] = []
    t = T0
    for users in user_steps:
        rps = float(usl_throughput(users, SIGMA, KAPPA, LAMBDA_RPS))
        response_s = users / rps - THINK_S
        for i in range(slices_per_step):
            warming = i == 0
            count = int(round(rps * SLICE_S * (0.5 if warming else 1.0)))
            hist = HdrHistogram(1, 60_000_000, 3)
            for value in rng.normal(response_s * 1e6, response_s * 1e5, count):
                hist.record_value(max(1, int(value)))
            records.append(
                {
                    "schema": 1,
                    "t_start_s": t,
                    "t_end_s": t + SLICE_S,
                    "worker": "w1",
                    "users": users,
                    "ops": {
                        "graphql GetCustomer": {
                            "count": count,
                            "failures": 0,
                            "partial": 0,
                            "hist": base64.b64encode(hist.encode()).decode("ascii"),
                            "errors": {},
                        }
                    },
                }
            )
            for ts in np.arange(t + 1.0, t + SLICE_S + 0.5, 1.0):
                cores = CPU_S_PER_REQUEST * count / SLICE_S
                samples.append((ts, "process", "gateway", cores, 150.0 + 0.5 * users, None))
            t += SLICE_S
    resources = pd.DataFrame(
        samples,
        columns=["ts_unix_s", "source", "target", "cpu_cores", "mem_mb", "mem_limit_mb"],
    )
    return records, resources


def test_stepped_run_to_fit_capacity_and_projection() -> None:
    user_steps = [2, 5, 10, 15, 20, 30, 40, 50, 60]
    records, resources = simulated_run(user_steps)
    frame = slices_frame(records)
    windows = find_steady_windows(frame)
    assert [w.users for w in windows] == user_steps
    steps = summarize_steps(windows, frame, resources, think_time_s=THINK_S)
    assert inconsistent_steps(steps) == []
    for s in steps:
        expected = float(usl_throughput(s.users, SIGMA, KAPPA, LAMBDA_RPS))
        assert s.throughput_rps == pytest.approx(expected, rel=0.01)
        assert s.cpu_s_per_request["gateway"] == pytest.approx(CPU_S_PER_REQUEST, rel=0.02)
    fit = fit_usl([s.users for s in steps], [s.throughput_rps for s in steps])
    assert fit.ok and fit.reached_curvature
    # Rounding requests to whole counts is the only noise here.
    assert fit.sigma == pytest.approx(SIGMA, rel=0.1)
    assert fit.kappa == pytest.approx(KAPPA, rel=0.1)
    knee = detect_knee([s.users for s in steps], [s.p95_ms for s in steps], curve="latency")
    assert knee.found and knee.users < fit.peak_concurrency
    limit_ms = float(np.median([s.p95_ms for s in steps]))
    cap = slo_limited_capacity(steps, p95_limit_ms=limit_ms)
    assert cap.interpolated and 0 < cap.max_users < user_steps[-1]
    demand = estimate_demand(steps)
    gateway = demand.services["gateway"]
    assert gateway.cpu_s_per_request == pytest.approx(CPU_S_PER_REQUEST, rel=0.05)
    assert gateway.mem_mb_per_user == pytest.approx(0.5, rel=0.05)
    proj = project(2 * fit.max_throughput_rps, demand, headroom=0.3, usl=fit)
    needed = (gateway.cpu_cores_base + gateway.cpu_s_per_request * proj.target_rps) / 0.7
    assert proj.services["gateway"].cpu_cores_needed == pytest.approx(needed)
    assert proj.services["gateway"].replicas == math.ceil(needed)
    assert any("fitted maximum" in w for w in proj.warnings)
    assert first_bottleneck(steps).service == "gateway"


def test_three_step_run_still_summarises_and_says_why_it_cannot_fit() -> None:
    records, resources = simulated_run([5, 10, 20])
    frame = slices_frame(records)
    steps = summarize_steps(find_steady_windows(frame), frame, resources, think_time_s=THINK_S)
    assert len(steps) == 3
    fit = fit_usl([s.users for s in steps], [s.throughput_rps for s in steps])
    assert not fit.ok and fit.reason is not None and "got 3" in fit.reason
    proj = project(100.0, estimate_demand(steps), usl=fit)
    assert any("no scalability fit" in w for w in proj.warnings)
