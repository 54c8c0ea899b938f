"""Charts of a sweep's steps and models (PNG data URIs), and the overlay of two runs."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from capacity.analysis.steps import StepStats, per_service, steps_by_users
from capacity.analysis.sweep import SweepResult
from capacity.report.charts import FIGSIZE, plt, to_data_uri
from capacity.report.views import fmt_users

MEASURED = "#1f4e79"
MODEL = "#d9822b"
SLO = "#c0392b"
KNEE = "#7d3c98"


def _curve_range(result: SweepResult) -> np.ndarray:
    """Concurrency values for the fitted curve: past the data, to the peak when it is near."""
    top = max(s.users for s in result.steps)
    end = 1.5 * top
    peak = result.usl.peak_concurrency
    if result.usl.ok and math.isfinite(peak) and peak < 3 * top:
        end = max(end, 1.2 * peak)
    return np.linspace(1.0, end, 200)


def throughput_curve(result: SweepResult) -> str | None:
    """Measured throughput per step, the USL fit with its 95% band, knee and SLO capacity."""
    steps = steps_by_users(result.steps)
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    users = [s.users for s in steps]
    rps = [s.throughput_rps for s in steps]
    usl = result.usl
    if usl.ok:
        n = _curve_range(result)
        low, high = usl.predict_band(n)
        if np.all(np.isfinite(low)):
            ax.fill_between(n, low, high, color=MODEL, alpha=0.18, label="95% band")
        ax.plot(n, usl.predict(n), color=MODEL, lw=2, label="USL fit")
        ax.axhline(usl.max_throughput_rps, color=MODEL, ls=":", lw=1.2)
        ax.annotate(
            f"USL max {usl.max_throughput_rps:.0f} req/s",
            (n[0], usl.max_throughput_rps),
            textcoords="offset points",
            xytext=(4, 4),
            color=MODEL,
            fontsize=8,
        )
    bound = result.saturation.utilization_bound_rps
    if math.isfinite(bound) and bound < 3 * max(rps):
        ax.axhline(
            bound,
            color="grey",
            ls="-.",
            lw=1,
            label=f"CPU bound {bound:.0f} req/s ({result.saturation.utilization_service})",
        )
    ax.plot(users, rps, "o", color=MEASURED, ms=7, label="measured steps", zorder=5)
    knee = result.throughput_knee
    if knee.found:
        ax.plot(
            [knee.users],
            [knee.value],
            "D",
            color=KNEE,
            ms=9,
            mfc="none",
            mew=2,
            label=f"knee ({knee.users:g} users)",
            zorder=6,
        )
    cap = result.slo_capacity
    if cap is not None and math.isfinite(cap.max_users) and cap.max_users > 0:
        ax.axvline(
            cap.max_users,
            color=SLO,
            ls="--",
            lw=1.2,
            label=f"SLO limit (~{fmt_users(cap.max_users)} users)",
        )
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("throughput (req/s)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Throughput against concurrency, with the fitted scalability curve")
    return to_data_uri(fig)


def latency_by_step(result: SweepResult, p95_limit_ms: float | None) -> str | None:
    """P50/P95/P99 per step against users, and the objective's P95 when it differs."""
    steps = steps_by_users(result.steps)
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    users = [s.users for s in steps]
    for key, style, label in (
        ("p50_ms", "-o", "P50"),
        ("p95_ms", "-o", "P95"),
        ("p99_ms", "--o", "P99"),
    ):
        ax.plot(users, [getattr(s, key) for s in steps], style, ms=4, label=f"{label} (all)")
    slo = result.slo
    covered = steps_by_users(result.slo_steps)
    same = len(covered) == len(steps) and all(
        a.p95_ms == b.p95_ms for a, b in zip(covered, steps, strict=True)
    )
    if slo is not None and covered and not same:
        ax.plot(
            [s.users for s in covered],
            [s.p95_ms for s in covered],
            "-s",
            color=SLO,
            ms=4,
            label=f"P95 ({slo.pattern})",
        )
    if p95_limit_ms is not None:
        ax.axhline(p95_limit_ms, color=SLO, ls="--", lw=1.2, label=f"P95 limit {p95_limit_ms:g} ms")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("latency (ms)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Latency percentiles per step")
    return to_data_uri(fig)


def resource_by_step(result: SweepResult, resource: Literal["cpu", "mem"]) -> str | None:
    """Each service's mean CPU cores or memory per step against the step's users."""
    steps = steps_by_users(result.steps)
    key = "cpu_cores_mean" if resource == "cpu" else "mem_mb_mean"
    series = per_service(steps, key)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    users = [s.users for s in steps]
    bottleneck = result.bottleneck
    for service, values in series.items():
        hot = service == bottleneck.service and (bottleneck.resource or "")[:3] == resource
        ax.plot(users, values, "-o", ms=4, lw=2.6 if hot else 1.4, label=service)
    if resource == "cpu":
        ax.axhline(1.0, color="grey", ls=":", lw=1, label="1 core")
        ax.set_ylabel("CPU (cores, mean per step)")
    else:
        ax.set_ylabel("memory (MB, mean per step)")
    ax.set_xlabel("concurrent users")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8, ncol=3)
    ax.set_title(("CPU" if resource == "cpu" else "Memory") + " per service against load")
    return to_data_uri(fig)


RunSeries = tuple[str, pd.DataFrame, float, SweepResult | None]


def _steps_xy(steps: tuple[StepStats, ...]) -> tuple[list[float], list[float]]:
    ordered = steps_by_users(steps)
    return [s.users for s in ordered], [s.throughput_rps for s in ordered]


def compare_overlay(this: RunSeries, other: RunSeries) -> str | None:
    """Both runs on one chart: throughput per step when both swept, else P95 and req/s in time."""
    (name_a, tl_a, t0_a, sweep_a), (name_b, tl_b, t0_b, sweep_b) = this, other
    if sweep_a is not None and sweep_b is not None:
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for name, sweep, color in ((name_b, sweep_b, "#8c8c8c"), (name_a, sweep_a, MEASURED)):
            x, y = _steps_xy(sweep.steps)
            ax.plot(x, y, "-o", color=color, label=name)
            if sweep.usl.ok:
                n = np.linspace(1.0, 1.3 * max(x), 120)
                ax.plot(n, sweep.usl.predict(n), ":", color=color, lw=1.2)
        ax.set_xlabel("concurrent users")
        ax.set_ylabel("throughput (req/s)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("Throughput against concurrency: both runs (dotted: USL fits)")
        return to_data_uri(fig)
    if tl_a.empty and tl_b.empty:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    rate = ax.twinx()
    rate.grid(False)
    rate.spines["right"].set_visible(True)
    for name, tl, t0, color in ((name_b, tl_b, t0_b, "#8c8c8c"), (name_a, tl_a, t0_a, MEASURED)):
        if tl.empty:
            continue
        # Percentiles of different operation kinds cannot be pooled: show the busiest kind's.
        group = tl.groupby("group")["rps"].sum().idxmax()
        rows = tl[tl["group"] == group]
        totals = tl.groupby("t_s", sort=True)["rps"].sum()
        ax.plot(rows["t_s"] - t0, rows["p95_ms"], color=color, label=f"{name} P95 ({group})")
        rate.plot(totals.index - t0, totals.values, color=color, ls=":", label=f"{name} req/s")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("P95 (ms)")
    rate.set_ylabel("req/s (dotted)")
    lines, labels = ax.get_legend_handles_labels()
    l2, lab2 = rate.get_legend_handles_labels()
    ax.legend(lines + l2, labels + lab2, loc="upper left", fontsize=8)
    ax.set_title("P95 and throughput over time: both runs")
    return to_data_uri(fig)
