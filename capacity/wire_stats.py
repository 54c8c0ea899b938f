"""Pure: the client's share of each operation's latency, beside the wire latency judged.

The HTTP drivers time requests at the socket (`capacity.drivers.wire_timing`): the slices'
`hist` is the wire latency and SLOs, the gate and the model judge it. This module adds what
the load generator itself cost, from `hist_client`, `hist_overhead` and `hist_connect` (see
`capacity.recorder`), so a report can show both figures and say when the client's own time is
large against what it measures. An operation whose requests carry no wire figure (Temporal's
gRPC calls: temporalio's client is Rust, its sockets out of reach) has `latency_basis`
`client`: its latency is client-observed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from hdrh.histogram import HdrHistogram

from capacity.recorder import decode_histogram, merge_histograms, percentile_ms
from capacity.validity import MIN_SAMPLES

OVERHEAD_WARN_SHARE = 0.10
"""Warn when an operation's client overhead P99 exceeds this share of its P95."""
CLIENT_KEYS = ("hist_client", "hist_overhead", "hist_connect")


def _ms(hist: HdrHistogram, pct: float) -> float | None:
    value = percentile_ms(hist, pct)
    return round(value, 3) if value is not None else None


def client_figures(steady_slices: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per operation: wire-timed count, client-observed percentiles, overhead, connects."""
    hists: dict[str, dict[str, list[HdrHistogram]]] = defaultdict(lambda: defaultdict(list))
    for record in steady_slices:
        for name, op in record.get("ops", {}).items():
            for key in CLIENT_KEYS:
                if op.get(key):
                    hists[name][key].append(decode_histogram(op[key]))
    out: dict[str, dict[str, Any]] = {}
    for name, by_key in hists.items():
        client = merge_histograms(by_key["hist_client"])
        overhead = merge_histograms(by_key["hist_overhead"])
        connect = merge_histograms(by_key["hist_connect"])
        out[name] = {
            "count_wire": int(client.get_total_count()),
            "p50_client_ms": _ms(client, 50.0),
            "p95_client_ms": _ms(client, 95.0),
            "p99_client_ms": _ms(client, 99.0),
            "client_overhead_p50_ms": _ms(overhead, 50.0),
            "client_overhead_p99_ms": _ms(overhead, 99.0),
            "connects": int(connect.get_total_count()),
            "connect_p50_ms": _ms(connect, 50.0),
            "connect_max_ms": _ms(connect, 100.0),
        }
    return out


def latency_basis(count: int, count_wire: int) -> str:
    """`wire` when every request was timed at the socket, `client` when none, else `mixed`."""
    if count_wire <= 0:
        return "client"
    return "wire" if count_wire >= count else "mixed"


def add_client_figures(
    operations: MutableMapping[str, dict[str, Any]], steady_slices: Iterable[Mapping[str, Any]]
) -> None:
    """Add `latency_basis` and the client figures to each operation's summary entry."""
    figures = client_figures(steady_slices)
    for name, entry in operations.items():
        extra = figures.get(name, {"count_wire": 0})
        entry["latency_basis"] = latency_basis(int(entry.get("count", 0)), extra["count_wire"])
        entry.update(extra)


def overhead_warnings(
    operations: Mapping[str, Mapping[str, Any]], share: float = OVERHEAD_WARN_SHARE
) -> list[str]:
    """One line per operation whose client overhead P99 exceeds `share` of its P95."""
    out: list[str] = []
    for name, op in operations.items():
        overhead_p99 = op.get("client_overhead_p99_ms")
        p95 = op.get("p95_ms")
        if overhead_p99 is None or not p95 or op.get("count_wire", 0) < MIN_SAMPLES["p95_ms"]:
            continue
        if overhead_p99 > share * p95:
            out.append(
                f"{name}: client overhead P99 {overhead_p99:.3g} ms is "
                f"{overhead_p99 / p95:.0%} of its P95 {p95:.3g} ms (warned above {share:.0%}): "
                f"the load generator's own time, outside the wire figures, slows its users"
            )
    return out
