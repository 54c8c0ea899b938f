"""The reference dataset is deterministic and matches the documented id ranges and values."""

from __future__ import annotations

from capacity.stack import data


def test_same_seed_same_data() -> None:
    first, second = data.generate(), data.generate()
    assert first.customers == second.customers and first.invoices == second.invoices
    assert data.generate(seed=1).customers != first.customers


def test_ids_ranges_and_values() -> None:
    ds = data.generate()
    assert (min(ds.customers), max(ds.customers), len(ds.customers)) == ("C-0001", "C-1000", 1000)
    assert (min(ds.vendors), max(ds.vendors), len(ds.vendors)) == ("V-001", "V-200", 200)
    assert (min(ds.products), max(ds.products), len(ds.products)) == ("P-0001", "P-2000", 2000)
    assert (min(ds.invoices), max(ds.invoices)) == ("INV-000001", "INV-005000")
    assert {"BD", "IN", "US", "DE"} <= {c["country"] for c in ds.customers.values()}
    assert {c["tier"] for c in ds.customers.values()} == {"standard", "gold", "platinum"}
    assert {i["status"] for i in ds.invoices.values()} == {"draft", "posted", "paid"}
    for invoice in ds.invoices.values():
        assert invoice["customerId"] in ds.customers
        assert invoice["total"] == round(sum(line["amount"] for line in invoice["lines"]), 2)
        assert all(line["productId"] in ds.products for line in invoice["lines"])
    indexed = sum(len(ids) for ids in ds.invoices_by_customer.values())
    assert indexed == len(ds.invoices)
