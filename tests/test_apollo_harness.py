"""The Apollo Federation harness behaves as real Apollo does, and counts what it serves exactly.

These are the facts the toolkit's Apollo features stand on (health, schema files, persisted
queries, error counting), checked against @apollo/gateway 2.14 on @apollo/server 5.5 from
`tests/apollo/` (see its README). The subgraphs and gateways start once per session.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import apollo_fixtures
import psutil
import pytest
from apollo_fixtures import (
    ApolloFederation,
    ApolloHarnessError,
    http_request,
    persisted_query_hash,
    write_apollo_scenario,
)
from graphql import build_schema, parse, validate

from capacity.preflight import fetch_schema, validate_documents
from capacity.scenario import load_scenario

F = TypeVar("F", bound=Callable[..., Any])
CUSTOMERS = "{ customers { id } }"
GET_CUSTOMER = """
query GetCustomer($id: ID!) {
  customer(id: $id) { id name invoices(first: 2) { number customer { id } } }
}"""
GET_INVOICE = """
query GetInvoice($id: ID!) {
  invoice(id: $id) { number total customer { id name } lines { quantity product { id sku } } }
}"""
INTROSPECTION = "{ __schema { queryType { name } } }"
INTROSPECTION_REFUSED = (
    "GraphQL introspection is not allowed by Apollo Server, but the query contained __schema "
    "or __type. To enable introspection, pass introspection: true to ApolloServer in production"
)
CSRF_REFUSED = "This operation has been blocked as a potential Cross-Site Request Forgery (CSRF)."


@pytest.fixture(params=["development", "production"])
def apollo(request: pytest.FixtureRequest) -> ApolloFederation:
    """Each test that takes this runs against both gateways."""
    fixture = "apollo_dev" if request.param == "development" else "apollo_prod"
    federation: ApolloFederation = request.getfixturevalue(fixture)
    return federation


def harness(test: F) -> F:
    """Mark a test that runs against the federation (apollo, stack, a bounded time)."""
    return pytest.mark.apollo(pytest.mark.stack(pytest.mark.timeout(120)(test)))


@harness
def test_federated_query_crosses_both_subgraphs(apollo: ApolloFederation) -> None:
    answer = apollo.post(GET_CUSTOMER, {"id": "C-0078"})
    assert answer.status == 200, answer.text
    assert answer.errors == []
    customer = answer.data["customer"]
    assert customer["id"] == "C-0078" and customer["name"] == "Ayesha Khan"
    assert [i["number"] for i in customer["invoices"]] == ["VX-2025-000965", "VX-2025-000632"]
    assert all(i["customer"]["id"] == "C-0078" for i in customer["invoices"])
    # The other direction: finance's invoice, its customer and products from master-data.
    answer = apollo.post(GET_INVOICE, {"id": "INV-000001"}, operation_name="GetInvoice")
    invoice = answer.data["invoice"]
    assert invoice["number"] == "VX-2025-000001" and invoice["total"] == 223096.89
    assert invoice["customer"] == {"id": "C-0078", "name": "Ayesha Khan"}
    assert [line["product"]["id"] for line in invoice["lines"]] == ["P-0272", "P-0093", "P-0175"]
    assert all(line["product"]["sku"].startswith("SKU-") for line in invoice["lines"])

    master, finance = apollo.stats("master-data"), apollo.stats("finance")
    assert master["resolver_calls"] == {
        "Query.customer": 1,
        "Customer.__resolveReference": 1,
        "Product.__resolveReference": 3,
    }
    assert master["operations"] == 3  # GetInvoice: customer and products in two fetches
    assert finance["resolver_calls"]["Customer.invoices"] == 1
    assert finance["resolver_calls"]["Query.invoice"] == 1
    assert finance["operations"] == 2
    gateway = apollo.stats("gateway")
    assert gateway["operations"] == 2 and gateway["mode"] == apollo.mode
    assert gateway["operations_by_name"] == {"GetCustomer": 1, "GetInvoice": 1}


@harness
def test_every_process_runs_without_telemetry(apollo: ApolloFederation) -> None:
    """Without APOLLO_TELEMETRY_DISABLED the gateway reaches for cloud metadata addresses."""
    for name, pid in apollo.pids.items():
        environ = psutil.Process(pid).environ()
        assert environ.get("APOLLO_TELEMETRY_DISABLED") == "true", name
        expected = "production" if name == "gateway" and apollo.mode == "production" else None
        assert environ.get("NODE_ENV") == expected, name


@harness
def test_mutation_with_variables_and_reset(apollo_dev: ApolloFederation) -> None:
    mutation = """
    mutation CreateInvoice($customerId: ID!, $productId: ID!, $quantity: Int!) {
      createInvoice(input: {customerId: $customerId,
                            lines: [{productId: $productId, quantity: $quantity}]}) {
        id number total customer { name }
      }
    }"""
    answer = apollo_dev.post(
        mutation, {"customerId": "C-0078", "productId": "P-0272", "quantity": 2}
    )
    created = answer.data["createInvoice"]
    assert created["id"] == "INV-001001" and created["number"] == "VX-2025-001001"
    assert created["customer"] == {"name": "Ayesha Khan"}
    assert apollo_dev.post(GET_INVOICE, {"id": "INV-001001"}).data["invoice"] is not None

    refused = apollo_dev.post(
        mutation, {"customerId": "C-9999", "productId": "P-0272", "quantity": 1}
    )
    assert refused.status == 200
    assert refused.errors[0]["message"] == "unknown customer 'C-9999'"
    assert refused.errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert apollo_dev.stats("finance")["resolver_errors"] == {"Mutation.createInvoice": 1}
    assert apollo_dev.stats("finance")["injected_errors_total"] == 0

    apollo_dev.reset()
    assert apollo_dev.post(GET_INVOICE, {"id": "INV-001001"}).data == {"invoice": None}
    assert apollo_dev.stats("finance")["resolver_errors"] == {}


@harness
def test_introspection_on_in_development(apollo_dev: ApolloFederation) -> None:
    answer = apollo_dev.post(INTROSPECTION)
    assert answer.status == 200
    assert answer.data == {"__schema": {"queryType": {"name": "Query"}}}


@harness
def test_introspection_refused_in_production(apollo_prod: ApolloFederation) -> None:
    answer = apollo_prod.post(INTROSPECTION)
    assert answer.status == 400
    assert "data" not in answer.body
    [error] = answer.errors
    assert error["message"] == INTROSPECTION_REFUSED
    assert error["extensions"] == {
        "validationErrorCode": "INTROSPECTION_DISABLED",
        "code": "GRAPHQL_VALIDATION_FAILED",
    }
    assert apollo_prod.post(CUSTOMERS).status == 200


@harness
def test_supergraph_file_is_what_production_runs(apollo_prod: ApolloFederation) -> None:
    sdl = apollo_prod.supergraph_path.read_text(encoding="utf-8")
    assert '@link(url: "https://specs.apollo.dev/join/v0.3", for: EXECUTION)' in sdl
    for name, url in apollo_prod.subgraph_urls.items():
        assert f'@join__graph(name: "{name}", url: "{url}")' in sdl
    assert '@join__type(graph: MASTER_DATA, key: "id")' in sdl
    # graphql-core reads it as it is (the toolkit's schema-file validation can build on it).
    schema = build_schema(sdl)
    assert schema.query_type is not None
    assert sorted(schema.query_type.fields) == [
        "customer", "customers", "invoice", "invoices", "product", "products", "vendor", "vendors"
    ]  # fmt: skip
    assert validate(schema, parse(GET_INVOICE)) == []
    assert validate(schema, parse("{ customer(id: 1) { nope } }"))[0].message == (
        "Cannot query field 'nope' on type 'Customer'. Did you mean 'name'?"
    )


@harness
def test_health_path_answers_400_on_apollo_server_5(apollo: ApolloFederation) -> None:
    """No health route in Apollo Server 4+: the path is one more GraphQL endpoint."""
    url = apollo.gateway_base_url + "/.well-known/apollo/server-health"
    plain = http_request(url)
    assert plain.status == 400
    assert plain.errors[0]["message"].startswith(CSRF_REFUSED)
    assert "apollo-require-preflight" in plain.errors[0]["message"]
    preflight = http_request(url, headers={"apollo-require-preflight": "true"})
    assert preflight.status == 400
    assert preflight.errors[0]["message"] == (
        "GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension."
    )
    probe = http_request(url, method="POST", body={"query": "{__typename}"})
    assert (probe.status, probe.data) == (200, {"__typename": "Query"})


@harness
def test_get_query_needs_the_preflight_header(apollo: ApolloFederation) -> None:
    answer = apollo.get("query One($n: Int) { customers(limit: $n) { id } }", {"n": 2})
    assert answer.status == 200, answer.text
    assert answer.data == {"customers": [{"id": "C-0001"}, {"id": "C-0002"}]}
    plain = http_request(apollo.gateway_url + "?query=%7B__typename%7D")
    assert plain.status == 400 and plain.errors[0]["message"].startswith(CSRF_REFUSED)
    assert apollo.stats("gateway")["http_methods"] == {"GET": 1}


@harness
def test_persisted_query_hash_first_then_registered(apollo: ApolloFederation) -> None:
    # A query no earlier test registered: the APQ cache lives as long as the gateway.
    query = f"query Apq {{ customers(limit: 1) {{ id }} t{uuid.uuid4().hex}: __typename }}"
    apq = {"persistedQuery": {"version": 1, "sha256Hash": persisted_query_hash(query)}}
    first = apollo.post(extensions=apq)
    assert first.status == 200
    [error] = first.errors
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = apollo.post(query, extensions=apq)
    assert registered.status == 200 and registered.data["customers"] == [{"id": "C-0001"}]
    again = apollo.post(extensions=apq)
    assert again.status == 200 and again.data["customers"] == [{"id": "C-0001"}]
    wrong = apollo.post("{ __typename }", extensions=apq)
    assert wrong.status == 400 and wrong.errors[0]["message"] == "provided sha does not match query"
    stats = apollo.stats("gateway")
    assert stats["persisted_queries"] == {"requests": 4, "hits": 1, "registered": 1, "not_found": 1}


@harness
def test_injected_errors_reach_the_client_and_are_counted_exactly(
    apollo: ApolloFederation,
) -> None:
    settings = apollo.set_faults("master-data", 0.25)
    assert settings["fields"] == ["Query.*", "Mutation.*"]
    answers = [apollo.post(CUSTOMERS) for _ in range(20)]
    failed = [i for i, a in enumerate(answers) if a.errors]
    assert failed == [3, 7, 11, 15, 19]  # every 4th call, deterministically
    for index in failed:
        answer = answers[index]
        assert answer.status == 200
        assert answer.body["data"] == {"customers": None}
        [error] = answer.errors
        assert (
            error["message"] == f"injected fault in master-data Query.customers (call {index + 1})"
        )
        assert error["extensions"]["code"] == "INJECTED_FAULT"
        assert error["extensions"]["serviceName"] == "master-data"
    assert all(a.status == 200 and a.data["customers"] for a in answers if not a.errors)

    master = apollo.stats("master-data")
    assert master["resolver_calls"] == {"Query.customers": 20}
    assert master["injected_errors"] == {"Query.customers": 5}
    assert master["operations_with_errors"] == 5
    assert master["error_codes"] == {"INJECTED_FAULT": 5}
    gateway = apollo.stats("gateway")
    assert (gateway["operations"], gateway["operations_with_errors"]) == (20, 5)
    assert apollo.stats("finance")["operations"] == 0


@harness
def test_fault_options(apollo_dev: ApolloFederation) -> None:
    def failing_calls(n: int) -> list[int]:
        return [i for i in range(n) if apollo_dev.post(CUSTOMERS).errors]

    apollo_dev.set_faults("master-data", 0.3, seed=42)
    first = failing_calls(30)
    apollo_dev.set_faults("master-data", 0.3, seed=42)
    assert failing_calls(30) == first and 0 < len(first) < 30
    assert apollo_dev.stats("master-data")["injected_errors_total"] == 2 * len(first)

    # Only the entity resolution fails; `Invoice.customer` is non-null, so the invoice is null.
    apollo_dev.set_faults("master-data", 1.0, fields=["Customer.__resolveReference"], code="DOWN")
    answer = apollo_dev.post(GET_INVOICE, {"id": "INV-000001"})
    assert answer.status == 200 and answer.data == {"invoice": None}
    assert [e["extensions"]["code"] for e in answer.errors] == ["DOWN"]
    assert apollo_dev.stats("master-data")["resolver_calls"]["Product.__resolveReference"] == 3

    apollo_dev.set_faults("finance", 0.0, delay_ms=300)
    started = time.perf_counter()
    assert apollo_dev.post("{ invoices(limit: 1) { id } }").errors == []
    assert time.perf_counter() - started >= 0.3

    with pytest.raises(ApolloHarnessError, match="error_rate must be a number in 0..1, got 2"):
        apollo_dev.set_faults("finance", 2)
    with pytest.raises(ApolloHarnessError, match="unknown key 'rate'"):
        apollo_dev._admin("finance", "POST", "/admin/faults", {"rate": 1})
    apollo_dev.clear_faults()
    assert apollo_dev.stats("finance")["faults"]["error_rate"] == 0


@harness
def test_example_scenario_fits_the_harness(apollo_dev: ApolloFederation, tmp_path: Path) -> None:
    shipped = load_scenario(apollo_fixtures.EXAMPLE_DIR / "apollo-federation.toml")
    assert shipped.targets.embedded_stack is False
    path = write_apollo_scenario(tmp_path, apollo_dev)
    scenario = load_scenario(path)
    assert scenario.targets.gateway_url == apollo_dev.gateway_url
    validate_documents(scenario, fetch_schema(scenario))
    # Every id in the data pool exists in the harness's data.
    rows = scenario.data["erp"].rows
    for column, field in (("customer_id", "customer"), ("invoice_id", "invoice")):
        ids = sorted({row[column] for row in rows})
        query = (
            "{ " + " ".join(f'a{i}: {field}(id: "{v}") {{ id }}' for i, v in enumerate(ids)) + " }"
        )
        answer = apollo_dev.post(query)
        assert answer.errors == [] and None not in answer.data.values(), column
    products = sorted({row["product_id"] for row in rows})
    query = (
        "{ " + " ".join(f'a{i}: product(id: "{v}") {{ id }}' for i, v in enumerate(products)) + " }"
    )
    assert None not in apollo_dev.post(query).data.values()


@harness
def test_processes_stop_on_sigterm_and_when_their_parent_dies(tmp_path: Path) -> None:
    proc = apollo_fixtures.start_node(
        "subgraph.mjs", ["--name", "finance"], name="finance-alone", log_dir=tmp_path
    )
    apollo_fixtures.wait_graphql_ready(proc.info["url"], proc.name)
    proc.stop()
    assert proc.popen.returncode == 0
    assert "finance: stopping (SIGTERM)" in proc.log_tail()

    # A parent killed with SIGKILL cannot clean up: the child notices and exits by itself.
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, str(tmp_path)],
        cwd=Path(__file__).parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert psutil.pid_exists(child_pid)
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child_pid):
        time.sleep(0.1)
    assert not _alive(child_pid), "subgraph outlived its killed parent"
    assert "stopping (parent" in (tmp_path / "orphan.log").read_text(encoding="utf-8")


ORPHAN_PARENT = """
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
import apollo_fixtures
proc = apollo_fixtures.start_node(
    "subgraph.mjs", ["--name", "master-data"], name="orphan", log_dir=Path(sys.argv[1])
)
print(proc.pid, flush=True)
import time
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"CI": "true"}, pytest.fail.Exception),
        ({"CAPACITY_REQUIRE_APOLLO": "1"}, pytest.fail.Exception),
        ({}, pytest.skip.Exception),
    ],
)
def test_missing_node_modules_says_how_to_install(
    env: dict[str, str],
    outcome: type[BaseException],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in ("CI", "CAPACITY_REQUIRE_APOLLO"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(apollo_fixtures, "APOLLO_DIR", tmp_path)
    with pytest.raises(
        outcome, match=r"node_modules is missing; run `npm ci --prefix tests/apollo`"
    ):
        apollo_fixtures.node_binary()
