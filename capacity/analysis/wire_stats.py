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

from collections.abc import Mapping, MutableMapping
from typing import Any

from capacity.runfolder.histograms import Counts, decode_many, percentile_ms
from capacity.slos import MIN_SAMPLES

OVERHEAD_WARN_SHARE = 0.10
"""Warn when an operation's client overhead P99 exceeds this share of its P95."""
CLIENT_KEYS = ("hist_client", "hist_overhead", "hist_connect")


def _ms(hist: Counts, pct: float) -> float | None:
    value = percentile_ms(hist, pct)
    return round(value, 3) if value is not None else None


class ClientFigures:
    """The client histograms of the steady-state slices, merged per operation as they come."""

    def __init__(self) -> None:
        self._ops: dict[str, dict[str, Counts]] = {}

    def add_record(self, record: Mapping[str, Any]) -> None:
        """One steady-state slice record: its client histograms, decoded in one pass."""
        items = [
            (name, key, op[key])
            for name, op in record["ops"].items()
            for key in CLIENT_KEYS
            if op.get(key)
        ]
        if not items:
            return
        for (name, key, text), sparse in zip(
            items, decode_many([text for _n, _k, text in items]), strict=True
        ):
            hists = self._ops.setdefault(name, {})
            if key not in hists:
                hists[key] = Counts()
            if sparse is not None:
                hists[key].add_sparse(sparse)
            else:
                hists[key].add_encoded(text)  # another tool's layout: the slow way

    def figures(self, name: str) -> dict[str, Any]:
        """Wire-timed count, client-observed percentiles, overhead and connects of `name`."""
        hists = self._ops.get(name)
        if not hists:
            return {"count_wire": 0}
        client = hists.get("hist_client", Counts())
        overhead = hists.get("hist_overhead", Counts())
        connect = hists.get("hist_connect", Counts())
        return {
            "count_wire": client.total,
            "p50_client_ms": _ms(client, 50.0),
            "p95_client_ms": _ms(client, 95.0),
            "p99_client_ms": _ms(client, 99.0),
            "client_overhead_p50_ms": _ms(overhead, 50.0),
            "client_overhead_p99_ms": _ms(overhead, 99.0),
            "connects": connect.total,
            "connect_p50_ms": _ms(connect, 50.0),
            "connect_max_ms": _ms(connect, 100.0),
        }


def latency_basis(count: int, count_wire: int) -> str:
    """`wire` when every request was timed at the socket, `client` when none, else `mixed`."""
    if count_wire <= 0:
        return "client"
    return "wire" if count_wire >= count else "mixed"


def add_client_figures(
    operations: MutableMapping[str, dict[str, Any]], client: ClientFigures
) -> None:
    """Add `latency_basis` and the client figures to each operation's summary entry."""
    for name, entry in operations.items():
        extra = client.figures(name)
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
