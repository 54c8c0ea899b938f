"""The embedded stack end to end: lifecycle, every service's endpoints, knobs, fault counters.

One stack (on free ports, in a tmp state dir) serves the whole module; the last test stops
it through the CLI and checks nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from capacity import cli
from capacity.errors import StackError
from capacity.stack import supervisor
from capacity.stack.supervisor import StackConfig, StackState

pytestmark = pytest.mark.stack

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """(status, decoded JSON) for one request to the stack."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with _OPENER.open(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    config = StackConfig(
        ports=supervisor.pick_free_ports(),
        state_dir=tmp_path_factory.mktemp("stack"),
        tuning={"rules-engine": {"cpu_ms": 0.25}, "master-data": {"latency_ms": 1.0}},
    )
    state = supervisor.up(config, timeout_s=60)
    try:
        yield state
    finally:
        supervisor.down(config.state_dir)


def url(state: StackState, service: str, path: str = "") -> str:
    return state.services[service].url + path


def gql(state: StackState, query: str, variables: dict | None = None) -> tuple[int, Any]:
    return http("POST", state.graphql_url, {"query": query, "variables": variables})


def stats(state: StackState, service: str) -> dict[str, Any]:
    status, body = http("GET", url(state, service, "/admin/stats"))
    assert status == 200
    return body


@contextlib.contextmanager
def tuned(state: StackState, service: str, **knobs: Any) -> Iterator[None]:
    """Set knobs at run time through the admin API and restore the previous values after."""
    status, before = http("GET", url(state, service, "/admin/tuning"))
    assert status == 200
    status, body = http("POST", url(state, service, "/admin/tuning"), knobs)
    assert status == 200, body
    try:
        yield
    finally:
        assert http("POST", url(state, service, "/admin/tuning"), before)[0] == 200


def test_up_reports_every_service_healthy(stack: StackState) -> None:
    state = supervisor.status(stack.state_dir)
    assert state is not None
    assert set(state.services) == set(supervisor.SERVICES)
    assert all(supervisor.stack_health(state).values())
    pids = supervisor.service_pids(state)
    assert len(set(pids.values())) == len(supervisor.SERVICES)
    assert all(psutil.pid_exists(pid) for pid in pids.values())
    assert supervisor.check_health(state.services["gateway"].health_url)
    assert http("GET", state.services["gateway"].health_url) == (200, {"status": "pass"})


def test_cli_status_prints_table(stack: StackState, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stack", "status", "--state-dir", str(stack.state_dir)]) == 0
    out = capsys.readouterr().out
    for name in supervisor.SERVICES:
        assert name in out
    assert out.count("healthy") == len(supervisor.SERVICES)


def test_up_again_returns_the_running_stack(stack: StackState) -> None:
    again = supervisor.up(StackConfig(ports=stack.ports, state_dir=stack.state_dir))
    assert supervisor.service_pids(again) == supervisor.service_pids(stack)


def test_tuning_given_at_start_is_applied(stack: StackState) -> None:
    status, knobs = http("GET", url(stack, "rules-engine", "/admin/tuning"))
    assert status == 200
    assert knobs["cpu_ms"] == 0.25
    assert "wrong_outcome_rate" in knobs and "graphql_error_rate" not in knobs


def test_nested_query_fans_out_in_batches(stack: StackState) -> None:
    before = stats(stack, "master-data")["requests"]
    status, body = gql(
        stack,
        """query($id: ID!) { customer(id: $id) { id name country
             invoices(first: 5) { id total customer { id }
               lines { quantity amount product { sku category vendor { id name } } }
               vat { ruleSet rate amount } } } }""",
        {"id": "C-0007"},
    )
    used = stats(stack, "master-data")["requests"] - before
    assert status == 200 and "errors" not in body, body
    customer = body["data"]["customer"]
    invoices = customer["invoices"]
    assert invoices and all(inv["customer"]["id"] == "C-0007" for inv in invoices)
    rest = http("GET", url(stack, "master-data", "/invoices?customerId=C-0007&limit=5"))[1]
    assert [inv["id"] for inv in invoices] == [inv["id"] for inv in rest["items"]]
    assert [inv["total"] for inv in invoices] == [inv["total"] for inv in rest["items"]]
    products = {line["product"]["sku"] for inv in invoices for line in inv["lines"]}
    # customer + invoice page + one products batch + one vendors batch, not one call per item
    assert len(products) > 2 and used <= 5, used
    for inv in invoices:
        main = max(inv["lines"], key=lambda line: line["amount"])
        expected = (
            0.0
            if customer["country"] != "BD"
            else 0.05
            if main["product"]["category"] in ("food", "medicine")
            else 0.15
        )
        assert inv["vat"]["rate"] == expected
        assert inv["vat"]["amount"] == pytest.approx(inv["total"] * expected, abs=0.01)


def test_unknown_ids_resolve_to_null(stack: StackState) -> None:
    status, body = gql(
        stack,
        '{ c: customer(id: "C-9999") { id } v: vendor(id: "V-999") { id } '
        'p: product(id: "P-9999") { id } i: invoice(id: "INV-999999") { id } '
        'known: vendor(id: "V-001") { id rating products(first: 2) { id } } }',
    )
    assert status == 200 and "errors" not in body
    data = body["data"]
    assert data["c"] is None and data["v"] is None and data["p"] is None and data["i"] is None
    assert data["known"]["id"] == "V-001"


def test_filtered_pagination_matches_master_data(stack: StackState) -> None:
    query = """{ customers(filter: {country: "BD", tier: "gold"}, page: {offset: 2, limit: 3}) {
                   total offset limit items { id country tier } } }"""
    status, body = gql(stack, query)
    page = body["data"]["customers"]
    everything = http("GET", url(stack, "master-data", "/customers?country=BD&tier=gold&limit=100"))
    assert status == 200
    assert page["total"] == everything[1]["total"] > 5
    assert (page["offset"], page["limit"], len(page["items"])) == (2, 3, 3)
    assert [c["id"] for c in page["items"]] == [c["id"] for c in everything[1]["items"][2:5]]
    assert all(c["country"] == "BD" and c["tier"] == "gold" for c in page["items"])
    status, body = gql(
        stack,
        '{ products(filter: {maxPrice: 100, category: "food"}, page: {limit: 500}) '
        "{ limit items { unitPrice category } } }",
    )
    products = body["data"]["products"]
    assert products["limit"] == 100
    assert products["items"] and all(
        p["unitPrice"] <= 100 and p["category"] == "food" for p in products["items"]
    )


def test_mutations_create_and_report_not_found(stack: StackState) -> None:
    status, body = gql(
        stack,
        'mutation { createCustomer(input: {name: "Test Co", email: "t@example.com", '
        'country: "BD"}) { id tier } }',
    )
    assert status == 200 and "errors" not in body, body
    new_id = body["data"]["createCustomer"]["id"]
    assert new_id == "C-1001" and body["data"]["createCustomer"]["tier"] == "standard"
    product = http("GET", url(stack, "master-data", "/products/P-0002"))[1]
    status, body = gql(
        stack,
        "mutation($in: InvoiceInput!) { createInvoice(input: $in) { id status total "
        "customer { id } lines { quantity amount } } }",
        {"in": {"customerId": new_id, "lines": [{"productId": "P-0002", "quantity": 3}]}},
    )
    invoice = body["data"]["createInvoice"]
    assert invoice["customer"]["id"] == new_id and invoice["status"] == "draft"
    assert invoice["total"] == pytest.approx(3 * product["unitPrice"], abs=0.01)
    status, body = gql(
        stack,
        'mutation { createInvoice(input: {customerId: "C-9999", '
        'lines: [{productId: "P-0001", quantity: 1}]}) { id } }',
    )
    assert status == 200
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert body["errors"][0]["path"] == ["createInvoice"]


def test_unparsable_requests_get_400(stack: StackState) -> None:
    status, body = http("POST", stack.graphql_url, raw=b"{not json")
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    status, body = gql(stack, "{ customer(id: ")
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    status, body = gql(stack, "{ nosuchfield }")
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_master_data_rest_endpoints(stack: StackState) -> None:
    assert http("GET", url(stack, "master-data", "/customers/C-0001"))[1]["id"] == "C-0001"
    assert http("GET", url(stack, "master-data", "/customers/C-9999"))[0] == 404
    batch = http("GET", url(stack, "master-data", "/products?ids=P-0002,P-0001,P-9999"))[1]
    assert [p["id"] for p in batch["items"]] == ["P-0002", "P-0001"]
    vendors = http("GET", url(stack, "master-data", "/vendors?minRating=4&limit=100"))[1]
    assert vendors["items"] and all(v["rating"] >= 4 for v in vendors["items"])
    assert http("GET", url(stack, "master-data", "/customers?limit=x"))[0] == 400
    assert http("POST", url(stack, "master-data", "/customers"), {"name": ""})[0] == 400


def test_rules_engine_evaluates_over_http(stack: StackState) -> None:
    status, body = http(
        "POST",
        url(stack, "rules-engine", "/evaluate"),
        {"ruleSet": "vat", "facts": {"country": "BD", "category": "food"}},
    )
    assert status == 200
    assert body == {
        "ruleSet": "vat",
        "outcome": {"rate": 0.05, "class": "reduced"},
        "matched": ["reduced-essentials"],
    }
    status, body = http("POST", url(stack, "rules-engine", "/evaluate"), {"ruleSet": "x"})
    assert (status, body) == (404, {"error": "unknown rule set 'x'"})
    names = http("GET", url(stack, "rules-engine", "/rulesets"))[1]["ruleSets"]
    assert names == ["approval-limit", "discount", "vat"]


def test_workflows_complete_via_temporalio_client(stack: StackState) -> None:
    from temporalio.client import Client

    async def run() -> tuple[dict, dict, float]:
        client = await Client.connect(stack.temporal_address, namespace=stack.namespace)
        t0 = time.monotonic()
        po = await client.execute_workflow(
            "PurchaseOrderApproval",
            {"vendorId": "V-001", "amount": 1200000.0, "requestedBy": "rina"},
            id=f"test-po-{uuid.uuid4().hex}",
            task_queue=stack.task_queue,
            execution_timeout=timedelta(seconds=10),
        )
        elapsed_s = time.monotonic() - t0
        posting = await client.execute_workflow(
            "InvoicePosting",
            {"invoiceId": "INV-000011"},
            id=f"test-post-{uuid.uuid4().hex}",
            task_queue=stack.task_queue,
        )
        return po, posting, elapsed_s

    po, posting, elapsed_s = asyncio.run(run())
    assert po["approval"] == "director" and po["status"] == "pending"
    assert elapsed_s < 2.0
    assert posting["status"] == "posted" and posting["invoiceId"] == "INV-000011"
    assert posting["vatRate"] in (0.0, 0.05, 0.15)


def wait_for_workflow(state: StackState, workflow_id: str, timeout_s: float = 5.0) -> Any:
    """Poll `GET /workflows/{id}` until the workflow leaves RUNNING (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, desc = http("GET", url(state, "workflow", f"/workflows/{workflow_id}"))
        assert status == 200, desc
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            return desc
        time.sleep(0.05)


def test_workflow_http_start_and_status(stack: StackState) -> None:
    status, run = http(
        "POST",
        url(stack, "workflow", "/workflows/PurchaseOrderApproval"),
        {"args": {"vendorId": "V-002", "amount": 100.0, "requestedBy": "x"}},
    )
    assert status == 202 and run["type"] == "PurchaseOrderApproval" and run["runId"]
    desc = wait_for_workflow(stack, run["workflowId"])
    assert desc["status"] == "COMPLETED" and desc["result"]["approval"] == "auto"
    assert http("POST", url(stack, "workflow", "/workflows/Nope"), {"args": {}})[0] == 404
    assert http("GET", url(stack, "workflow", "/workflows/no-such-id"))[0] == 404
    status, body = gql(
        stack, 'mutation { postInvoice(id: "INV-000002") { workflowId type status runId } }'
    )
    assert body["data"]["postInvoice"]["type"] == "InvoicePosting"
    desc = wait_for_workflow(stack, body["data"]["postInvoice"]["workflowId"])
    assert desc["status"] == "COMPLETED" and desc["result"]["invoiceId"] == "INV-000002"
    status, body = gql(stack, 'mutation { postInvoice(id: "INV-999999") { runId } }')
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_injected_http_500_is_counted_exactly(stack: StackState) -> None:
    before = stats(stack, "master-data")
    with tuned(stack, "master-data", error_rate=0.5):
        statuses = [http("GET", url(stack, "master-data", "/vendors/V-001")) for _ in range(40)]
        assert http("GET", url(stack, "master-data", "/health"))[0] == 200
    after = stats(stack, "master-data")
    failures = [body for status, body in statuses if status == 500]
    assert 0 < len(failures) < 40
    assert all(body == {"error": "injected"} for body in failures)
    assert after["injected"]["http_500"] - before["injected"]["http_500"] == len(failures)
    assert after["requests"] - before["requests"] == 40


def test_injected_graphql_error_gives_partial_data(stack: StackState) -> None:
    before = stats(stack, "gateway")["injected"]["graphql_error"]
    with tuned(stack, "gateway", graphql_error_rate=1.0):
        results = [
            gql(stack, '{ customer(id: "C-0001") { id } vendor(id: "V-001") { id } }')
            for _ in range(5)
        ]
    assert stats(stack, "gateway")["injected"]["graphql_error"] - before == 5
    for status, body in results:
        assert status == 200
        assert [e["extensions"]["code"] for e in body["errors"]] == ["INJECTED"]
        field = body["errors"][0]["path"][0]
        assert body["data"][field] is None
        other = "vendor" if field == "customer" else "customer"
        assert body["data"][other]["id"]


def test_injected_wrong_outcome_is_counted(stack: StackState) -> None:
    request = {"ruleSet": "approval-limit", "facts": {"amount": 6000000, "role": "staff"}}
    right = http("POST", url(stack, "rules-engine", "/evaluate"), request)[1]["outcome"]
    before = stats(stack, "rules-engine")["injected"]["wrong_outcome"]
    with tuned(stack, "rules-engine", wrong_outcome_rate=1.0):
        wrong = [http("POST", url(stack, "rules-engine", "/evaluate"), request) for _ in range(4)]
    assert stats(stack, "rules-engine")["injected"]["wrong_outcome"] - before == 4
    assert right == {"approval": "board"}
    assert all(status == 200 and body["outcome"] != right for status, body in wrong)


def test_injected_workflow_failures_are_counted(stack: StackState) -> None:
    from temporalio.client import Client, WorkflowFailureError

    async def attempt(client: Client, args: dict) -> str:
        try:
            await client.execute_workflow(
                "PurchaseOrderApproval",
                args,
                id=f"test-fail-{uuid.uuid4().hex}",
                task_queue=stack.task_queue,
            )
        except WorkflowFailureError:
            return "failed"
        return "completed"

    async def run() -> list[str]:
        client = await Client.connect(stack.temporal_address, namespace=stack.namespace)
        args = {"vendorId": "V-001", "amount": 10.0, "requestedBy": "x"}
        outcomes = [await attempt(client, {**args, "fail": True})]
        with tuned(stack, "workflow", workflow_failure_rate=1.0):
            outcomes.append(await attempt(client, args))
        outcomes.append(await attempt(client, args))
        return outcomes

    before = stats(stack, "workflow")["injected"]["workflow_failure"]
    assert asyncio.run(run()) == ["failed", "failed", "completed"]
    assert stats(stack, "workflow")["injected"]["workflow_failure"] - before == 2


@pytest.mark.parametrize(
    ("service", "knobs", "named"),
    [
        ("gateway", {"nope": 1}, "nope"),
        ("master-data", {"cpu_ms": "fast"}, "cpu_ms"),
        ("master-data", {"graphql_error_rate": 0.1}, "graphql_error_rate"),
        ("rules-engine", {"error_rate": 1.5}, "error_rate"),
        ("workflow", {"concurrency": 2.5}, "concurrency"),
        ("gateway", {"latency_dist": "gamma"}, "latency_dist"),
    ],
)
def test_tuning_validation_names_the_knob(
    stack: StackState, service: str, knobs: dict, named: str
) -> None:
    before = http("GET", url(stack, service, "/admin/tuning"))[1]
    status, body = http("POST", url(stack, service, "/admin/tuning"), {"slowdown": 2, **knobs})
    assert status == 400
    assert body["knob"] == named and named in body["error"]
    assert http("GET", url(stack, service, "/admin/tuning"))[1] == before


def _median_ms(target: str, n: int = 5) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert http("GET", target)[0] == 200
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def test_latency_and_slowdown_really_slow_a_service(stack: StackState) -> None:
    target = url(stack, "master-data", "/customers/C-0001")
    with tuned(stack, "master-data", latency_dist="fixed", latency_ms=20.0):
        base_ms = _median_ms(target)
        with tuned(stack, "master-data", slowdown=3.0):
            slow_ms = _median_ms(target)
    assert 20 <= base_ms < 55
    assert slow_ms >= 60 and slow_ms > base_ms + 30


def test_cpu_ms_burns_real_cpu(stack: StackState) -> None:
    proc = psutil.Process(stack.services["rules-engine"].pid)
    target = url(stack, "rules-engine", "/rulesets")
    with tuned(stack, "rules-engine", cpu_ms=25.0):
        cpu0 = sum(proc.cpu_times()[:2])
        elapsed_ms = _median_ms(target, n=8)
        cpu_used_s = sum(proc.cpu_times()[:2]) - cpu0
    assert elapsed_ms >= 25
    assert cpu_used_s >= 8 * 0.025 * 0.9


def test_concurrency_limit_queues_requests(stack: StackState) -> None:
    target = url(stack, "master-data", "/customers/C-0002")

    def burst() -> float:
        threads = [threading.Thread(target=http, args=("GET", target)) for _ in range(4)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    with tuned(stack, "master-data", latency_dist="fixed", latency_ms=50.0):
        parallel_s = burst()
        with tuned(stack, "master-data", concurrency=1):
            queued_s = burst()
    assert queued_s >= 0.2  # four 50 ms requests one at a time
    assert parallel_s < 0.6 * queued_s


def test_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    ports = supervisor.pick_free_ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        config = StackConfig(ports={**ports, "gateway": taken}, state_dir=tmp_path / "s")
        with pytest.raises(
            StackError, match=rf"cannot start gateway on .*: port {taken} is already in use"
        ):
            supervisor.up(config)
    assert not (tmp_path / "s").exists()


def test_failed_start_stops_what_started_and_names_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_command = supervisor._command

    def command(name: str, *args: Any) -> list[str]:
        if name == "gateway":
            return [sys.executable, "-c", "print('boom: cannot start'); raise SystemExit(3)"]
        return real_command(name, *args)

    monkeypatch.setattr(supervisor, "SERVICES", ("postgres", "master-data", "gateway"))
    monkeypatch.setattr(supervisor, "_command", command)
    ports = supervisor.pick_free_ports()
    with pytest.raises(StackError, match=r"^gateway exited with code 3.*gateway\.log.*boom"):
        supervisor.up(StackConfig(ports=ports, state_dir=tmp_path), timeout_s=20)
    assert not supervisor.port_listening("127.0.0.1", ports["master-data"])
    assert not (tmp_path / supervisor.STATE_FILE).exists()


def test_cli_down_leaves_no_process_and_no_port(
    stack: StackState, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = supervisor.service_pids(stack)
    os.kill(pids["rules-engine"], signal.SIGKILL)  # down must cope with an already dead service
    psutil.Process(pids["rules-engine"]).wait(5)
    assert cli.main(["stack", "status", "--state-dir", str(stack.state_dir)]) == 1
    assert "unhealthy" in capsys.readouterr().out
    assert cli.main(["stack", "down", "--state-dir", str(stack.state_dir)]) == 0
    assert "stopped: temporal, postgres, master-data, workflow, gateway" in capsys.readouterr().err
    for pid in pids.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for port in stack.ports.values():
        assert not supervisor.port_listening(stack.host, port)
    assert supervisor.status(stack.state_dir) is None
    assert not (stack.state_dir / supervisor.STATE_FILE).exists()
    assert supervisor.down(stack.state_dir) == []
    assert cli.main(["stack", "status", "--state-dir", str(stack.state_dir)]) == 1
