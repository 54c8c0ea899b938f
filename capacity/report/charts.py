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


MAX_POINTS_PER_LINE = 600


def _downsample(times: pd.Series, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """At most MAX_POINTS_PER_LINE points: means over equal time buckets (a day at 1 Hz is
    86,400 samples per service; a chart cannot show more than its pixels)."""
    if len(times) <= MAX_POINTS_PER_LINE:
        return times, values
    span = float(times.max() - times.min()) or 1.0
    bucket = ((times - times.min()) / span * (MAX_POINTS_PER_LINE - 1)).astype(int)
    frame = pd.DataFrame({"t": times.to_numpy(), "v": values.to_numpy(), "b": bucket.to_numpy()})
    grouped = frame.groupby("b").mean(numeric_only=True)
    return grouped["t"], grouped["v"]


def latency_chart(
    timeline: pd.DataFrame,
    t0_s: float,
    warmup_end_s: float | None,
    outages: list[dict[str, Any]] | None = None,
) -> str | None:
    """P50/P95/P99 over time, one panel per kind of operation (a 10 ms rules call and a 1 s
    workflow never share an axis), with the user count on the first panel and a red window
    where a service was down."""
    if timeline.empty:
        return None
    groups = sorted(timeline["group"].unique())
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(FIGSIZE[0], 2.2 + 1.6 * len(groups)), sharex=True, squeeze=False
    )
    users_frame = timeline.groupby("t_s", sort=True)["users"].max()
    for ax, group in zip(axes[:, 0], groups, strict=True):
        rows = timeline[timeline["group"] == group]
        t = rows["t_s"] - t0_s
        for col, style in (("p50_ms", "-"), ("p95_ms", "-"), ("p99_ms", "--")):
            values = pd.to_numeric(rows[col], errors="coerce")
            if values.notna().any():
                ax.plot(t, values, style, label=col.replace("_ms", ""))
        ax.set_ylabel(f"{group}\nms (log)")
        if pd.to_numeric(rows["p99_ms"], errors="coerce").gt(0).any():
            ax.set_yscale("log")  # one stall would flatten every other point on a linear axis
        if warmup_end_s is not None and warmup_end_s > t0_s:
            ax.axvspan(0, warmup_end_s - t0_s, color="grey", alpha=0.15, label="warm-up")
        for outage in outages or []:
            ax.axvspan(
                float(outage["from_s"]) - t0_s,
                float(outage["to_s"]) - t0_s,
                color="red",
                alpha=0.12,
                label=f"{outage['service']} down",
            )
        ax.legend(loc="upper left", fontsize=7, ncol=4)
    first = axes[0, 0]
    users = first.twinx()
    users.grid(False)
    users.spines["right"].set_visible(True)
    users.step(users_frame.index - t0_s, users_frame.values, where="post", color="black", alpha=0.4)
    users.set_ylabel("users")
    axes[-1, 0].set_xlabel("time since start (s)")
    first.set_title("Latency percentiles over time, by kind of operation (exact; users in grey)")
    return to_data_uri(fig)


def throughput_chart(timeline: pd.DataFrame, t0_s: float) -> str | None:
    if timeline.empty:
        return None
    totals = timeline.groupby("t_s", sort=True)[["rps", "failures_per_s"]].sum()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    t = totals.index - t0_s
    ax.plot(t, totals["rps"], label="requests/s")
    ax.plot(t, totals["failures_per_s"], color="red", label="failures/s")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Throughput and failures")
    return to_data_uri(fig)


def resource_chart(
    resources: pd.DataFrame,
    t0_s: float,
    column: str,
    label: str,
    limits: dict[str, float] | None = None,
) -> str | None:
    """One line per service (processes and containers; host totals left out), with each
    service's SLO limit as a dashed line of the same colour."""
    if resources is None or resources.empty:
        return None
    frame = resources[resources["source"] != "host"]
    if frame.empty:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for target, rows in frame.groupby("target", sort=True):
        values = pd.to_numeric(rows[column], errors="coerce")
        t, v = _downsample(rows["ts_unix_s"] - t0_s, values)
        (line,) = ax.plot(t, v, label=str(target))
        limit = (limits or {}).get(str(target))
        if limit is not None:
            ax.axhline(limit, color=line.get_color(), linestyle="--", linewidth=0.8, alpha=0.8)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.set_title(f"{label} per service (dashed: the service's SLO limit)")
    return to_data_uri(fig)
