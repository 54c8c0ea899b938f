"""`[users.http]`, chains and the Temporal workflow keys: what loads, and every bad input
named by file and key (exit 2, one line, from the command line too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SCENARIOS
from test_scenario import bad

from capacity.errors import ConfigError
from capacity.scenario import load_scenario
from capacity.scenario.calls import rules_requests, workflow_args

DATA = '[data.orders]\ncsv = "data/orders.csv"\n[data.customers]\ncsv = "data/customers.csv"\n'
REQUEST = """
[users.http]
[[users.http.requests]]
name = "vat"
method = "POST"
target = "rules_engine"
path = "/evaluate"
body = { ruleSet = "vat", facts = { country = "BD" } }
"""
WORKFLOW = """
[users.workflows]
[[users.workflows.workflows]]
type = "InvoiceApproval"
args = ["INV-000001", "manager"]
"""
CHAIN = """
[users.http]
[[users.http.chains]]
name = "invoice"
[[users.http.chains.steps]]
name = "create"
method = "POST"
target = "master_data"
path = "/invoices"
status = 201
extract = { invoiceId = "/id" }
"""


def test_shipped_services_scenario_loads_every_part() -> None:
    s = load_scenario(SCENARIOS / "services.toml")
    http = s.users["http"]
    vat, customer = http.requests
    assert (vat.name, vat.method, vat.target, vat.path, vat.status) == (
        "http vat-food-bd", "POST", "rules_engine", "/evaluate", (200,)
    )  # fmt: skip
    assert [a.kind for a in vat.variants[0].assertions] == ["equals", "range", "exists"]
    assert customer.path == "/customers/${customers.id}" and customer.weight == 2
    (chain,) = http.chains
    create, post, approval = chain.steps
    assert create.request is not None and create.request.extract == {"invoiceId": ("id",)}
    assert post.request is not None and post.request.path == "/invoices/${chain.invoiceId}/post"
    assert approval.workflow is not None and approval.workflow.options is not None
    assert workflow_args(approval.workflow) == ["${chain.invoiceId}", "manager"]
    assert approval.workflow.options.id_conflict_policy == "fail"
    assert [c.kind for c in approval.workflow.options.calls] == ["signal"]
    (flow,) = s.users["workflows"].workflows
    assert flow.options is not None
    assert [(c.kind, c.handler) for c in flow.options.calls] == [
        ("query", "status"), ("update", "set_priority"), ("signal", "decide")
    ]  # fmt: skip
    assert s.targets.worker_service == "workflow"


def test_old_workflow_form_is_one_argument_with_default_options() -> None:
    (flow, _) = load_scenario(SCENARIOS / "workflows.toml").users["workflows"].workflows
    assert flow.options is None
    assert workflow_args(flow) == [flow.args] and isinstance(flow.args, dict)


def test_rules_form_still_loads_and_becomes_http_requests_with_the_same_bodies() -> None:
    spec = load_scenario(SCENARIOS / "rules.toml").users["rules"]
    requests = rules_requests(spec.rule_sets)
    assert [r.name for r in requests] == [f"rules {rs.rule_set}" for rs in spec.rule_sets]
    for request, rs in zip(requests, spec.rule_sets, strict=True):
        assert (request.method, request.target, request.path) == (
            "POST",
            "rules_engine",
            "/evaluate",
        )
        assert not request.templated and request.weight == rs.weight
        for variant, case in zip(request.variants, rs.cases, strict=True):
            # Byte for byte the body the rules driver sent.
            former = json.dumps({"ruleSet": rs.rule_set, "facts": dict(case.facts)})
            assert json.dumps(variant.body) == former
            expected = {a.tokens[-1]: a.value for a in variant.assertions}
            assert expected == dict(case.expect or {})
            assert all(a.label == "wrong outcome" for a in variant.assertions)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            REQUEST.replace('method = "POST"', 'methd = "POST"'),
            "key 'users.http.requests[0].methd': unknown key",
        ),
        (
            REQUEST.replace('path = "/evaluate"', 'path = "/customers/${nopool.id}"'),
            "key 'users.http.requests[0].path': data pool 'nopool' is not defined",
        ),
        (
            DATA + REQUEST.replace('path = "/evaluate"', 'path = "/c/${customers.nope}"'),
            "key 'users.http.requests[0].path': column 'nope' not in customers.csv",
        ),
        (
            REQUEST + 'assert = [{ equals = "vat" }]\n',
            "key 'users.http.requests[0].assert[0].pointer': is required",
        ),
        (
            REQUEST + 'assert = [{ pointer = "ruleSet", equals = "vat" }]\n',
            "key 'users.http.requests[0].assert[0].pointer': JSON pointer 'ruleSet' must be empty",
        ),
        (
            REQUEST + 'assert = [{ pointer = "/a~2", exists = true }]\n',
            "key 'users.http.requests[0].assert[0].pointer': JSON pointer '/a~2': '~' must be",
        ),
        (
            REQUEST + 'assert = [{ pointer = "/a" }]\n',
            "key 'users.http.requests[0].assert[0].equals': is required (or exists, or min/max)",
        ),
        (
            REQUEST + 'assert = [{ pointer = "/a", equals = 1, min = 0 }]\n',
            "key 'users.http.requests[0].assert[0].min': cannot be combined with equals",
        ),
        (
            REQUEST.replace('target = "rules_engine"', 'target = "billing"'),
            "key 'users.http.requests[0].target': expected one of",
        ),
        (
            REQUEST.replace('target = "rules_engine"', ""),
            "key 'users.http.requests[0].target': is required",
        ),
        (
            REQUEST.replace('target = "rules_engine"', 'base_url = "http://10.9.8.7:80"'),
            "key 'users.http.requests[0].base_url': host '10.9.8.7' is not in targets.allowed",
        ),
        (
            REQUEST + "status = 700\n",
            "key 'users.http.requests[0].status': expected an HTTP status",
        ),
        (
            REQUEST.replace('method = "POST"', 'method = "FETCH"'),
            "key 'users.http.requests[0].method': expected one of GET",
        ),
        (
            REQUEST + 'headers = { "X Bad" = "1" }\n',
            "key 'users.http.requests[0].headers.X Bad': not a valid header name",
        ),
        (
            REQUEST.replace("country = ", 'id = "${chain.invoiceId}", country = '),
            "key 'users.http.requests[0].body.facts.id': '${chain.invoiceId}': chain values exist "
            "only in [[users.http.chains]]",
        ),
        (
            REQUEST.replace('path = "/evaluate"', 'path = "/x/${orders.id"'),
            "key 'users.http.requests[0].path': malformed reference",
        ),
        ("[users.http]\nweight = 1\n", "key 'users.http.requests': at least one request or chain"),
        (
            REQUEST + 'extract = { id = "/id" }\n',
            "key 'users.http.requests[0].extract': unknown key",
        ),
        (
            CHAIN + '[[users.http.chains.steps]]\nname = "post"\ntarget = "master_data"\n'
            'path = "/invoices/${chain.invoiceID}/post"\n',
            "key 'users.http.chains[0].steps[1].path': '${chain.invoiceID}': no earlier step "
            "extracts 'invoiceID' (extracted: invoiceId)",
        ),
        (
            CHAIN.replace('extract = { invoiceId = "/id" }', 'extract = { invoiceId = "id" }'),
            "key 'users.http.chains[0].steps[0].extract.invoiceId': JSON pointer 'id' must be",
        ),
        (
            CHAIN + '[[users.http.chains.steps]]\nworkflow = "InvoiceApproval"\n'
            'wait_result = false\nextract = { decision = "/decision" }\n',
            "key 'users.http.chains[0].steps[1].extract': needs wait_result = true",
        ),
        (
            WORKFLOW + 'id_reuse_policy = "sometimes"\n',
            "key 'users.workflows.workflows[0].id_reuse_policy': expected one of allow_duplicate",
        ),
        (
            WORKFLOW + 'id_conflict_policy = "ignore"\n',
            "key 'users.workflows.workflows[0].id_conflict_policy': expected one of fail",
        ),
        (
            WORKFLOW
            + 'calls = [{ signal = "decide", assert = [{ pointer = "", exists = true }] }]\n',
            "key 'users.workflows.workflows[0].calls[0].assert': a signal has no result",
        ),
        (
            WORKFLOW + 'calls = [{ signal = "decide", update = "set_priority" }]\n',
            "key 'users.workflows.workflows[0].calls[0].update': exactly one of signal, query",
        ),
        (
            WORKFLOW + 'calls = [{ query = "status", delay_s = 1 }]\n',
            "key 'users.workflows.workflows[0].calls[0].delay_s': unknown key",
        ),
        (
            WORKFLOW + 'search_attributes = { "Customer-Id" = "x" }\n',
            "key 'users.workflows.workflows[0].search_attributes.Customer-Id': a search attribute",
        ),
        (
            WORKFLOW + "search_attributes = { CustomerId = { a = 1 } }\n",
            "key 'users.workflows.workflows[0].search_attributes.CustomerId': expected a string",
        ),
        (
            WORKFLOW + 'id = "approval-${orders.nope}"\n' + DATA,
            "key 'users.workflows.workflows[0].id': column 'nope' not in orders.csv",
        ),
        (
            WORKFLOW + 'id = "x-${uuid:int}"\n',
            "key 'users.workflows.workflows[0].id': '${uuid:int}': write '${uuid}' alone",
        ),
        (
            WORKFLOW + "schedule_to_start_per_s = -1\n",
            "schedule_to_start_per_s': must be in [0, 1000], got -1",
        ),
        (
            WORKFLOW.replace('args = ["INV-000001", "manager"]', 'args = "INV-000001"'),
            "key 'users.workflows.workflows[0].args': expected a table (the one argument) or an",
        ),
        (
            '[data.chain]\ncsv = "data/orders.csv"\n' + REQUEST,
            "key 'data.chain': 'chain' is a reserved name",
        ),
    ],
)
def test_bad_input_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = bad(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (REQUEST.replace('method = "POST"', 'verb = "POST"'), "users.http.requests[0].verb"),
        (
            REQUEST.replace('path = "/evaluate"', 'path = "/c/${nopool.id}"'),
            "users.http.requests[0].path",
        ),
        (REQUEST + "assert = [{ exists = true }]\n", "users.http.requests[0].assert[0].pointer"),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, body: str, key: str
) -> None:
    path = bad(tmp_path, body)
    proc = subprocess.run(
        [sys.executable, "-m", "capacity", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("capacity: error: ") and f"key '{key}'" in lines[0]
    assert "Traceback" not in proc.stderr
