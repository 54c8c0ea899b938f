"""Charts as PNG bytes (matplotlib, Agg backend), embedded in the HTML report as data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

FIGSIZE = (9.0, 3.8)
plt.rcParams.update(
    {
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "font.size": 9,
        "legend.frameon": False,
    }
)


def to_data_uri(fig: Any) -> str:
    """The figure as a PNG data URI (closed afterwards): the report stays one offline file."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def latency_chart(timeline: pd.DataFrame, t0_s: float, warmup_end_s: float | None) -> str | None:
    """P50/P95/P99 over time, with the user count on a second axis."""
    if timeline.empty:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    t = timeline["t_s"] - t0_s
    for col, style in (("p50_ms", "-"), ("p95_ms", "-"), ("p99_ms", "--")):
        ax.plot(t, timeline[col], style, label=col.replace("_ms", ""))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_yscale("log")  # one stall would flatten every other point on a linear axis
    ax.grid(alpha=0.3)
    if warmup_end_s is not None and warmup_end_s > t0_s:
        ax.axvspan(0, warmup_end_s - t0_s, color="grey", alpha=0.15, label="warm-up")
    users = ax.twinx()
    users.grid(False)
    users.spines["right"].set_visible(True)
    users.step(t, timeline["users"], where="post", color="black", alpha=0.4, label="users")
    users.set_ylabel("users")
    lines, labels = ax.get_legend_handles_labels()
    l2, lab2 = users.get_legend_handles_labels()
    ax.legend(lines + l2, labels + lab2, loc="upper left", fontsize=8)
    ax.set_title("Latency percentiles (exact, all operations) and users")
    return to_data_uri(fig)


def throughput_chart(timeline: pd.DataFrame, t0_s: float) -> str | None:
    if timeline.empty:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    t = timeline["t_s"] - t0_s
    ax.plot(t, timeline["rps"], label="requests/s")
    ax.plot(t, timeline["failures_per_s"], color="red", label="failures/s")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Throughput and failures")
    return to_data_uri(fig)


def resource_chart(resources: pd.DataFrame, t0_s: float, column: str, label: str) -> str | None:
    """One line per service (processes and containers; host totals left out)."""
    if resources is None or resources.empty:
        return None
    frame = resources[resources["source"] != "host"]
    if frame.empty:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for target, rows in frame.groupby("target", sort=True):
        values = pd.to_numeric(rows[column], errors="coerce")
        ax.plot(rows["ts_unix_s"] - t0_s, values, label=str(target))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.set_title(f"{label} per service")
    return to_data_uri(fig)
