"""Rows and figures of a summary as the reports show them, shared by HTML and Markdown.

Pure functions over the summary document (summary.json), so both reports say the same thing
in the same words; the template and the Markdown writer only lay them out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def fmt(value: Any) -> str:
    """A figure for a table cell: 3 significant digits below 100, thousands separators above."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "∞" if value > 0 else "–"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def fmt_users(value: Any) -> str:
    """A user count: whole numbers, except below 10 where a fraction still says something."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    if not math.isfinite(value):
        return "∞" if value > 0 else "–"
    return f"{value:.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:.1f}"


def fmt_param(value: Any) -> str:
    """A fitted figure: effectively zero (solver round-off) is shown as 0, not as 6.47e-17."""
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1e-9:
        return "0"
    return fmt(value)


def fmt_pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def headroom(slo: Mapping[str, Any]) -> str:
    """How far a measured value is under its limit, as a share of the limit ("-12%": over)."""
    value, limit = slo.get("value"), slo.get("limit")
    if value is None or not limit or slo.get("metric") == "samples":
        return "-"
    return fmt_pct((float(limit) - float(value)) / float(limit) * 100.0)


def verdict_sentence(summary: Mapping[str, Any]) -> str:
    """The SLO verdict in one sentence."""
    slos = summary.get("slos", [])
    failed = [s for s in slos if s["passed"] is False]
    total_rps = sum((op.get("rps") or 0.0) for op in summary.get("operations", {}).values())
    verdict = summary.get("verdict", "inconclusive")
    if verdict == "pass":
        return (
            f"PASS: all {len(slos)} SLOs held at {total_rps:.0f} req/s "
            f"across {len(summary.get('operations', {}))} operations."
        )
    if verdict == "fail":
        first = failed[0]
        return (
            f"FAIL: {len(failed)} of {len(slos)} SLOs failed; first: {first['target']} "
            f"{first['metric']} {fmt(first['value'])} > {fmt(first['limit'])}."
        )
    reasons = summary.get("reasons") or ["see below"]
    return f"INCONCLUSIVE: {reasons[0]}."


def headline(summary: Mapping[str, Any]) -> str:
    """The answer in one sentence: the capacity finding for a sweep, else the verdict."""
    cap = summary.get("capacity")
    return str(cap["headline"]) if cap else verdict_sentence(summary)


def key_figures(cap: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, note) tiles at the top of a sweep's report."""
    steps = cap.get("steps") or []
    usl = cap.get("usl") or {}
    tiles: list[tuple[str, str, str]] = []
    slo_cap = cap.get("slo_capacity")
    slo = cap.get("slo")
    if slo_cap and slo:
        prefix = "≥ " if slo_cap.get("lower_bound") else "~"
        tiles.append(
            (
                f"SLO capacity (P95 < {fmt(slo['p95_limit_ms'])} ms)",
                f"{prefix}{fmt_users(slo_cap.get('max_users'))} users",
                f"{fmt(slo_cap.get('max_rps'))} req/s",
            )
        )
    measured = [s for s in steps if s.get("throughput_rps") is not None]
    if measured:
        top = max(measured, key=lambda s: s["throughput_rps"])
        tiles.append(
            (
                "Highest throughput measured",
                f"{fmt(top['throughput_rps'])} req/s",
                f"at {fmt_users(top['users'])} users",
            )
        )
    sat = cap.get("saturation") or {}
    if sat.get("rps") is not None:
        if sat.get("basis") == "usl":
            peak = usl.get("peak_concurrency")
            note = f"USL fit, peak at {fmt_users(peak)} users" if peak else "USL fit asymptote"
            if not usl.get("reached_curvature"):
                note += " (extrapolated)"
        else:
            service = sat.get("utilization_service")
            note = f"{service} CPU at its core limit"
            if sat.get("basis") == "utilization law, reached":
                note += " (reached in a step)"
            if sat.get("usl_rps") is not None:
                note += f"; USL fit {fmt(sat['usl_rps'])} req/s"
        tiles.append(("Predicted saturation", f"{fmt(sat['rps'])} req/s", note))
    if not usl.get("ok"):
        tiles.append(("Scalability model", "not fitted", str(usl.get("reason") or "")))
    knee = cap.get("throughput_knee") or {}
    if knee.get("found"):
        tiles.append(
            ("Knee", f"{fmt_users(knee.get('users'))} users", f"{fmt(knee.get('value'))} req/s")
        )
    b = cap.get("bottleneck") or {}
    if b.get("service"):
        resource = "CPU" if b.get("resource") == "cpu" else str(b.get("resource"))
        tiles.append(
            (
                "First bottleneck",
                f"{b['service']} {resource}",
                f"saturates at ~{fmt_users(b.get('users_at_saturation'))} users",
            )
        )
    return tiles


def usl_rows(usl: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(parameter, value, 95% interval, meaning) of a fitted USL."""

    def ci(key: str) -> str:
        low, high = usl.get(key) or (None, None)
        return f"{fmt_param(low)} – {fmt_param(high)}"

    return [
        (
            "σ (contention)",
            fmt_param(usl.get("sigma")),
            ci("sigma_ci"),
            "share of work that serialises",
        ),
        (
            "κ (coherency)",
            fmt(usl.get("kappa")),
            ci("kappa_ci"),
            "cross-talk cost; > 0 means throughput falls past the peak",
        ),
        (
            "λ (req/s per user)",
            fmt(usl.get("lambda_rps")),
            ci("lambda_ci"),
            "throughput of one user alone",
        ),
        (
            "peak concurrency",
            fmt_users(usl.get("peak_concurrency")),
            "",
            "users at maximum throughput",
        ),
        ("max throughput", fmt(usl.get("max_throughput_rps")), "", "req/s at the peak"),
        ("R²", fmt(usl.get("r2")), "", f"{usl.get('n_points')} steps"),
    ]


def step_rows(cap: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per step: load, latency, errors and the Little's law check."""
    rows = []
    for s in sorted(cap.get("steps") or [], key=lambda s: s["users"]):
        ok = s.get("littles_law_ok")
        rows.append(
            {
                "users": fmt_users(s["users"]),
                "duration_s": fmt_users(s.get("duration_s")),
                "requests": s.get("requests"),
                "rps": fmt(s.get("throughput_rps")),
                "p50_ms": fmt(s.get("p50_ms")),
                "p95_ms": fmt(s.get("p95_ms")),
                "p99_ms": fmt(s.get("p99_ms")),
                "error_pct": fmt_pct(
                    None if s.get("error_rate") is None else 100.0 * s["error_rate"]
                ),
                "littles_ratio": fmt(s.get("littles_law_ratio")),
                "littles": {True: "ok", False: "INCONSISTENT"}.get(ok, "–"),
                "littles_class": {True: "ok", False: "bad"}.get(ok, "unk"),
            }
        )
    return rows


def service_rows(cap: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per service: fitted demand lines and what the top step used."""
    steps = sorted(cap.get("steps") or [], key=lambda s: s["users"])
    top = steps[-1] if steps else {}
    bottleneck = (cap.get("bottleneck") or {}).get("service")
    rows = []
    demand = (cap.get("demand") or {}).get("services") or {}
    for name, d in sorted(demand.items()):
        per_request = d.get("cpu_s_per_request")
        rows.append(
            {
                "service": name,
                "bottleneck": name == bottleneck,
                "cpu_ms_per_request": fmt_param(
                    None if per_request is None else per_request * 1000
                ),
                "cpu_cores_base": fmt_param(d.get("cpu_cores_base")),
                "cpu_cores_top": fmt((top.get("cpu_cores_mean") or {}).get(name)),
                "mem_mb_base": fmt_param(d.get("mem_mb_base")),
                "mem_mb_per_user": fmt_param(d.get("mem_mb_per_user")),
                "mem_mb_top": fmt((top.get("mem_mb_mean") or {}).get(name)),
            }
        )
    return rows


def projection_rows(cap: Mapping[str, Any]) -> list[dict[str, Any]]:
    proj = cap.get("projection") or {}
    rows = []
    for name, p in sorted((proj.get("services") or {}).items()):
        rows.append(
            {
                "service": name,
                "replicas": p.get("replicas"),
                "limited_by": p.get("limited_by"),
                "cpu_cores_demand": fmt(p.get("cpu_cores_demand")),
                "cpu_cores_needed": fmt(p.get("cpu_cores_needed")),
                "mem_mb_demand": fmt(p.get("mem_mb_demand")),
                "mem_mb_needed": fmt(p.get("mem_mb_needed")),
            }
        )
    return rows


def model_warnings(cap: Mapping[str, Any]) -> list[str]:
    """Every caveat about the models, without repeats, in the order they matter."""
    out: list[str] = []
    usl = cap.get("usl") or {}
    if not usl.get("ok") and usl.get("reason"):
        out.append(f"No scalability fit: {usl['reason']}.")
    out += list(usl.get("warnings") or [])
    out += list(cap.get("warnings") or [])
    projection = list((cap.get("projection") or {}).get("warnings") or [])
    if any(w.startswith("kappa's interval") for w in out):
        projection = [w for w in projection if not w.startswith("kappa's 95% interval")]
    out += projection
    return list(dict.fromkeys(out))


def comparison_rows(
    comparison: Mapping[str, Any], section: str, metrics: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of one comparison table: per name, per metric this / other / change."""
    rows = []
    for name, entry in (comparison.get(section) or {}).items():
        cells = []
        for m in metrics:
            c = entry.get(m) or {}
            cells.append(
                (
                    fmt(c.get("this")),
                    fmt(c.get("other")),
                    fmt_pct(c.get("change_pct"), signed=True),
                    "",
                )
            )
        rows.append({"name": name, "only_in": entry.get("only_in"), "cells": cells})
    return rows


LATENCY_NOTE = (
    "Latency is the wire's: from a request's first byte written to the kernel's receive time "
    "of its response's last byte, without the load generator's own time; SLOs are judged on "
    "it. Client-observed is what the Locust user waited (Locust's own statistics and web UI "
    "show that figure); client overhead is the difference, connection set-up excluded. An "
    "overhead P99 over a tenth of an operation's P95 is warned about: the load generator is "
    "busy enough to pace its users slower than the scenario says."
)


CLIENT_OBSERVED_WHY = {
    "workflow": "workflows go through temporalio's gRPC client, whose sockets are out of reach",
    "health": "health checks go through Locust's own client",
}


def client_rows(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    """Per operation: the latency's basis, client-observed figures, overhead, connections."""
    rows = []
    for name, op in summary.get("operations", {}).items():
        if "latency_basis" not in op:  # a summary from before the wire figures
            continue
        connects = op.get("connects") or 0
        rows.append(
            {
                "name": name,
                "basis": str(op["latency_basis"]),
                "p50_client_ms": fmt(op.get("p50_client_ms")),
                "p95_client_ms": fmt(op.get("p95_client_ms")),
                "p99_client_ms": fmt(op.get("p99_client_ms")),
                "overhead_p50_ms": fmt(op.get("client_overhead_p50_ms")),
                "overhead_p99_ms": fmt(op.get("client_overhead_p99_ms")),
                "connects": str(connects),
                "connect_ms": (
                    f"{fmt(op.get('connect_p50_ms'))} / {fmt(op.get('connect_max_ms'))}"
                    if connects
                    else "–"
                ),
            }
        )
    return rows


def latency_notes(summary: Mapping[str, Any]) -> list[str]:
    """What the latency figures are, and which operations are client-observed and why."""
    ops = summary.get("operations", {})
    if not any("latency_basis" in op for op in ops.values()):
        return []
    notes = [LATENCY_NOTE]
    client = [n for n, op in ops.items() if op.get("latency_basis") == "client"]
    mixed = [n for n, op in ops.items() if op.get("latency_basis") == "mixed"]
    if client:
        kinds = sorted({name.split(" ", 1)[0] for name in client})
        why = "; ".join(CLIENT_OBSERVED_WHY.get(k, f"{k}: not timed at the socket") for k in kinds)
        notes.append(
            f"Client-observed latency, the load generator's own time included: "
            f"{', '.join(client)} ({why})."
        )
    if mixed:
        notes.append(
            f"Partly client-observed: {', '.join(mixed)} (requests without a response on the "
            "wire, such as connection errors, are timed by the client)."
        )
    return notes
