"""The HTTP driver against the real embedded stack: assertions and statuses counted to the
request that failed them, and a chain that passes each user's own ids along under 20 users."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from conftest import write_scenario
from test_drivers_live import DIRECT, admin, injected, op_totals, run_locust, verdict_exit

from capacity import runfolder
from capacity.stack.supervisor import StackState

pytestmark = pytest.mark.stack

ASSERTIONS = """
[users.http]
wait_s = [0.0, 0.05]

[[users.http.requests]]
name = "vat-checked"
method = "POST"
target = "rules_engine"
path = "/evaluate"
body = { ruleSet = "vat", facts = { country = "BD", category = "food" } }
assert = [
  { pointer = "/outcome/rate", equals = 0.05 },
  { pointer = "/outcome/class", equals = "reduced" },
]

[[users.http.requests]]
name = "customer-wrong"
target = "master_data"
path = "/customers/${customers.id}"
assert = [{ pointer = "/id", equals = "${customers.id}" }, { pointer = "/country", equals = "ZZ" }]

[[users.http.requests]]
name = "customer-status"
target = "master_data"
path = "/customers/${customers.id}"
status = 201

[[users.http.requests]]
name = "customer-missing"
target = "master_data"
path = "/customers/C-9999"
status = 404
assert = [{ pointer = "/error", exists = true }]
"""

CHAIN = """
[users.http]
wait_s = [0.0, 0.1]
timeout_s = 30

[[users.http.chains]]
name = "invoice-approval"

[[users.http.chains.steps]]
name = "create-invoice"
method = "POST"
target = "master_data"
path = "/invoices"
status = 201
extract = { invoiceId = "/id", total = "/total" }

[users.http.chains.steps.body]
customerId = "${orders.customer_id}"
lines = [{ productId = "${orders.product_id}", quantity = "${orders.quantity:int}" }]

[[users.http.chains.steps]]
name = "post-invoice"
method = "POST"
target = "master_data"
path = "/invoices/${chain.invoiceId}/post"
assert = [
  { pointer = "/id", equals = "${chain.invoiceId}" },
  { pointer = "/status", equals = "posted" },
]

[[users.http.chains.steps]]
workflow = "InvoiceApproval"
args = ["${chain.invoiceId}", "manager"]
id = "approval-${chain.invoiceId}"
id_conflict_policy = "fail"
search_attributes = { InvoiceId = "${chain.invoiceId}" }
calls = [{ signal = "decide", args = ["approved-${chain.invoiceId}"] }]
extract = { approvedId = "/invoiceId", decision = "/decision", status = "/invoiceStatus" }

[[users.http.chains.steps]]
name = "check-invoice"
target = "master_data"
path = "/invoices/${chain.approvedId}"
assert = [
  { pointer = "/id", equals = "${chain.invoiceId}" },
  { pointer = "/total", equals = "${chain.total}" },
  { pointer = "/status", equals = "${chain.status}" },
]

[[users.http.chains.steps]]
name = "check-decision"
method = "POST"
target = "rules_engine"
path = "/evaluate"
body = { ruleSet = "vat", facts = { note = "${chain.decision}" } }
assert = [{ pointer = "/ruleSet", equals = "vat" }]
"""


def scenario(tmp_path: Path, state: StackState, users: str) -> Path:
    """A scenario of the given user classes against the running stack (data pools included)."""
    base = write_scenario(tmp_path / "s", "services.toml", state)
    head = base.read_text(encoding="utf-8").split("[users.http]")[0]
    path = base.with_name("under-test.toml")
    path.write_text(head + users, encoding="utf-8")
    return path


def test_failed_assertions_and_statuses_are_counted_to_their_request(
    erp_stack: StackState, tmp_path: Path
) -> None:
    path = scenario(tmp_path, erp_stack, ASSERTIONS)
    before = injected(erp_stack, "rules-engine")
    admin(erp_stack, "rules-engine", "tuning", {"wrong_outcome_rate": 0.2})
    try:
        proc = run_locust("erp.py", path, tmp_path / "run", "-u", "6", "-r", "6", "-t", "4s")
    finally:
        admin(erp_stack, "rules-engine", "tuning", {"wrong_outcome_rate": 0.0})
    # A plain locust -f run exits with its verdict's code (no SLOs: failures are not judged).
    assert proc.returncode == verdict_exit(tmp_path / "run")[1], proc.stderr[-2000:]
    totals = op_totals(tmp_path / "run")
    checked, wrong, status, missing = (
        totals[f"http {n}"]
        for n in ("vat-checked", "customer-wrong", "customer-status", "customer-missing")
    )
    assert min(c["count"] for c in (checked, wrong, status, missing)) >= 10, totals
    # The rules engine answered only vat-checked: it failed exactly the injected wrong outcomes
    # (each perturbs one of the two fields it asserts), with the assertion's reason.
    wrong_outcomes = injected(erp_stack, "rules-engine")["wrong_outcome"] - before["wrong_outcome"]
    assert checked["failures"] == wrong_outcomes > 0
    reasons = {k for k in checked if k.startswith("error:")}
    assert all(k.startswith("error:assertion failed: /outcome/") for k in reasons), reasons
    # An assertion that never holds fails every request, naming pointer, expected and got.
    assert wrong["failures"] == wrong["count"]
    assert all(
        "assertion failed: /country expected 'ZZ', got '" in k for k in wrong if "error:" in k
    )
    assert status["failures"] == status["error:HTTP 200, expected 201"] == status["count"]
    # An expected 404 with its error body is a success.
    assert missing["failures"] == 0


def posted_invoices(state: StackState) -> int:
    url = f"{state.services['master-data'].url}/invoices?status=posted&limit=1"
    with DIRECT.open(urllib.request.Request(url), timeout=10) as resp:
        return int(json.loads(resp.read())["total"])


def test_a_chain_passes_each_users_ids_along_under_20_users(
    erp_stack: StackState, tmp_path: Path
) -> None:
    path = scenario(tmp_path, erp_stack, CHAIN)
    posted_before = posted_invoices(erp_stack)
    proc = run_locust(
        "erp.py", path, tmp_path / "run", "-u", "20", "-r", "20", "-t", "6s", "--stop-timeout", "30"
    )
    totals = op_totals(tmp_path / "run")
    verdict, code = verdict_exit(tmp_path / "run")
    assert proc.returncode == code and verdict != "fail", proc.stderr[-3000:]
    chains = totals["chain invoice-approval"]["count"]
    assert chains >= 20, totals
    assert sum(c["failures"] for c in totals.values()) == 0, totals
    # Every chain ran every step once (--stop-timeout lets a started chain finish).
    for op in (
        "http create-invoice",
        "http post-invoice",
        "workflow start InvoiceApproval",
        "workflow signal InvoiceApproval decide",
        "workflow complete InvoiceApproval",
        "http check-invoice",
        "http check-decision",
    ):
        assert totals[op]["count"] == chains, (op, totals)
    # Each invoice was posted exactly once: a second post of one id would have answered 409,
    # a second workflow of one id failed its start (id_conflict_policy = "fail").
    assert posted_invoices(erp_stack) - posted_before == chains


def test_services_locustfile_drives_every_part_of_its_scenario(
    erp_stack: StackState, tmp_path: Path
) -> None:
    path = write_scenario(tmp_path / "s", "services.toml", erp_stack)
    proc = run_locust("services.py", path, tmp_path / "run", "-u", "6", "-r", "6", "-t", "4s")
    verdict, code = verdict_exit(tmp_path / "run")
    assert proc.returncode == code and verdict != "fail", proc.stderr[-3000:]
    totals = op_totals(tmp_path / "run")
    assert {"http", "chain", "workflow"} == {name.split(" ")[0] for name in totals}, totals
    assert sum(c["failures"] for c in totals.values()) == 0, totals
    # HTTP requests are timed at the socket like GraphQL's (a client-observed histogram is
    # kept beside the wire one); a chain, end to end, cannot be.
    timed = {
        name
        for record in runfolder.iter_slices(tmp_path / "run")
        for name, op in record["ops"].items()
        if op.get("hist_client")
    }
    assert {"http get-customer", "http create-invoice"} <= timed, timed
    assert "chain invoice-approval" not in timed
