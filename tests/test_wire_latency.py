"""Two figures per operation: the wire latency judged, the client-observed one kept beside.

The recorder puts a request's `wire_time` into `hist` and its client-observed time and
overhead into `hist_client` and `hist_overhead`; the summary reports both with the basis of
each operation's latency, and warns when the client's own time is large against the P95.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import OperationSlo, summarize

from capacity.analysis.wire_stats import OVERHEAD_WARN_SHARE, overhead_warnings
from capacity.recorder import SliceRecorder
from capacity.runfolder.histograms import Counts, percentile_ms

META = {"run_id": "r", "scenario": "s", "status": "complete", "warmup_s": 0.0}


def recorded(requests: list[dict[str, Any]]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    rec = SliceRecorder(out.append, worker="w", clock=lambda: 1000.0)
    for kwargs in requests:
        rec.on_request(**kwargs)
    record = rec.close_slice()
    assert record is not None
    return record


def test_wire_time_is_the_latency_and_client_time_is_kept_beside() -> None:
    record = recorded(
        [
            {"name": "op", "response_time": 11.5, "wire_time": 10.0, "connect_time": 0.5},
            {"name": "op", "response_time": 21.0, "wire_time": 20.0},
            {"name": "op", "response_time": 3.0, "exception": ConnectionRefusedError("no")},
        ]
    )
    op = record["ops"]["op"]
    wire = Counts.decode(op["hist"])
    assert wire.total == 3  # the refused request, client-timed, counts too
    assert percentile_ms(wire, 50.0) == pytest.approx(10.0, rel=1e-3)
    assert percentile_ms(wire, 100.0) == pytest.approx(20.0, rel=1e-3)
    client = Counts.decode(op["hist_client"])
    assert client.total == 2
    assert percentile_ms(client, 100.0) == pytest.approx(21.0, rel=1e-3)
    overhead = Counts.decode(op["hist_overhead"])
    # client minus wire minus connect: 1.0 ms for both
    assert percentile_ms(overhead, 0.0) == pytest.approx(1.0, rel=1e-3)
    assert percentile_ms(overhead, 100.0) == pytest.approx(1.0, rel=1e-3)
    assert Counts.decode(op["hist_connect"]).total == 1


def test_client_observed_driver_records_as_before() -> None:
    op = recorded([{"name": "workflow start X", "response_time": 7.0}])["ops"]["workflow start X"]
    assert {"hist_client", "hist_overhead", "hist_connect"}.isdisjoint(op)
    assert percentile_ms(Counts.decode(op["hist"]), 50.0) == pytest.approx(7.0, rel=1e-3)


def test_summary_judges_the_wire_and_documents_both_figures() -> None:
    requests = [
        {"name": "graphql Q", "response_time": 9.0 + i % 10, "wire_time": 8.0 + i % 10}
        for i in range(100)
    ] + [{"name": "workflow start W", "response_time": 30.0} for _ in range(50)]
    summary = summarize(
        [recorded(requests)],
        None,
        run_meta=META,
        operation_slos=[OperationSlo("graphql *", p95_ms=16.5)],
        service_slos=[],
    )
    q = summary["operations"]["graphql Q"]
    assert (q["latency_basis"], q["count_wire"]) == ("wire", 100)
    assert q["p95_ms"] == pytest.approx(17.0, rel=1e-3)
    assert q["p95_client_ms"] == pytest.approx(18.0, rel=1e-3)
    assert q["client_overhead_p50_ms"] == pytest.approx(1.0, rel=1e-3)
    assert q["client_overhead_p99_ms"] == pytest.approx(1.0, rel=1e-3)
    assert q["connects"] == 0 and q["connect_p50_ms"] is None
    # the SLO is judged on the wire figure: 17 ms against 16.5 fails, client-observed or not
    (slo,) = summary["slos"]
    assert slo["value"] == q["p95_ms"] and slo["passed"] is False
    w = summary["operations"]["workflow start W"]
    assert (w["latency_basis"], w["count_wire"]) == ("client", 0)
    assert w.get("p95_client_ms") is None
    assert summary["warnings"] == []  # 1 ms overhead against a 17 ms P95


def test_mixed_basis_when_some_requests_had_no_wire_figure() -> None:
    requests = [{"name": "op", "response_time": 5.0, "wire_time": 4.0}] * 3 + [
        {"name": "op", "response_time": 5.0, "exception": "refused"}
    ]
    summary = summarize(
        [recorded(requests)], None, run_meta=META, operation_slos=[], service_slos=[]
    )
    op = summary["operations"]["op"]
    assert (op["latency_basis"], op["count"], op["count_wire"]) == ("mixed", 4, 3)


def test_overhead_warning_names_the_operation_and_share() -> None:
    ops = {
        "graphql Fast": {"p95_ms": 4.0, "client_overhead_p99_ms": 2.0, "count_wire": 500},
        "graphql Slow": {"p95_ms": 400.0, "client_overhead_p99_ms": 2.0, "count_wire": 500},
        "graphql Thin": {"p95_ms": 4.0, "client_overhead_p99_ms": 2.0, "count_wire": 10},
        "workflow start W": {"p95_ms": 4.0, "count_wire": 0},
    }
    (warning,) = overhead_warnings(ops)
    assert warning.startswith("graphql Fast: client overhead P99 2 ms is 50% of its P95 4 ms")
    assert f"warned above {OVERHEAD_WARN_SHARE:.0%}" in warning


def test_report_shows_client_overhead_per_operation_and_the_basis() -> None:
    from capacity.report.render import render_html, render_markdown

    requests = [
        {"name": "graphql Q", "response_time": 4.0 + i % 3, "wire_time": 2.0 + i % 3}
        for i in range(100)
    ] + [{"name": "workflow start W", "response_time": 30.0} for _ in range(50)]
    summary = summarize(
        [recorded(requests)], None, run_meta=META, operation_slos=[], service_slos=[]
    )
    assert len(summary["warnings"]) == 1  # 2 ms overhead against a 4 ms P95
    markdown = render_markdown(summary)
    assert "| graphql Q | wire | 5.00 | 6.00 | 6.00 | 2.00 | 2.00 | 0 | – |" in markdown
    assert "| workflow start W | client | – |" in markdown
    assert "Client-observed latency, the load generator's own time included: workflow " in markdown
    assert "**Warning:** graphql Q: client overhead P99 2 ms is 50% of its P95 4 ms" in markdown
    html = render_html(summary, {})
    assert 'id="client-overhead"' in html
    assert '<td>graphql Q</td><td class="text">wire</td><td>5.00</td>' in html
    assert "Locust&#39;s own statistics and web UI show that figure" in html
